package registry

import (
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
)

type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (l *loggingWriter) WriteHeader(code int) {
	if l.status == 0 {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *loggingWriter) Write(b []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(b)
	l.bytes += int64(n)
	return n, err
}

// Flush keeps streaming responses (blob downloads, backups) streaming.
func (l *loggingWriter) Flush() {
	if f, ok := l.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (l *loggingWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// accessLog writes one line per request: method, path, status, size, time
// and the authenticated user, never headers, query strings or bodies, which
// may carry credentials. Health checks log at debug level: load balancers
// and the engine ask every few seconds. It also feeds the request metrics
// (metrics.go) and, through done, the audit trail.
func accessLog(log *logrus.Entry, m *replicaMetrics, next http.Handler, done ...func(requestDone)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Handlers may rewrite the URL (a manifest PUT by tag continues by
		// digest): the log names what the client asked for.
		method, path := r.Method, r.URL.Path
		ctx, info := reqinfo.With(r.Context())
		r = r.WithContext(ctx)
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		lw := &loggingWriter{ResponseWriter: w}
		next.ServeHTTP(lw, r)
		took := time.Since(start)
		var in int64
		if body != nil {
			in = body.n
		}
		m.observe(method, path, lw.status, in, lw.bytes, took)
		user := info.User()
		for _, fn := range done {
			fn(requestDone{r: r, method: method, path: path, status: lw.status, user: user, header: lw.Header(), notes: info.Notes()})
		}
		f := logrus.Fields{
			"method": method, "path": path, "status": lw.status, "bytes": lw.bytes,
			"ms": took.Milliseconds(), "remote": r.RemoteAddr,
		}
		if user != "" {
			f["user"] = user
		}
		e := log.WithFields(f)
		if path == "/_ping" || path == "/health" || path == "/_live" {
			e.Debug("request")
		} else {
			e.Info("request")
		}
	})
}

// requestDone is an answered request, as the client sent it.
type requestDone struct {
	r            *http.Request
	method, path string
	status       int
	user         string      // "" when anonymous
	header       http.Header // the response's
	notes        []reqinfo.Note
}
