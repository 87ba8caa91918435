package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dtr-registry/dtr/contract"
)

// apiError is the admin API's refusal, with its status and message.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// recorder is the response of an in-process admin API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// api calls the admin API as the session's account: method on path (under
// /api/v0), in as the JSON body, out decoded from a 2xx answer. A refusal
// comes back as *apiError with the API's own message, which names the
// reason and the fix.
func (s *session) api(method, path string, in, out any) error {
	if s.token == "" {
		tok, err := s.c.cfg.IssueAPIToken(s.acc)
		if err != nil {
			return fmt.Errorf("issuing the console's admin API token: %w", err)
		}
		s.token = tok
	}
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(s.r.Context(), method, "/api/v0"+path, body)
	if err != nil {
		return err
	}
	req.Host, req.TLS, req.RemoteAddr = s.r.Host, s.r.TLS, s.r.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+s.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	s.c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if s.c.cfg.APICalled != nil {
		s.c.cfg.APICalled(req, rec.status, s.acc.Name)
	}
	if rec.status >= 300 {
		var e contract.APIError
		ae := &apiError{Status: rec.status, Message: strings.TrimSpace(rec.body.String())}
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && len(e.Errors) > 0 {
			ae.Code, ae.Message = e.Errors[0].Code, e.Errors[0].Message
		}
		return ae
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decoding the admin API's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}
