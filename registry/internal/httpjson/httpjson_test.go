package httpjson

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/dtr-registry/dtr/contract"
)

// TestErrorBody: the body is the one the installer decodes (contract.APIError)
// and, byte for byte, the one Distribution's clients read.
func TestErrorBody(t *testing.T) {
	rec := httptest.NewRecorder()
	Error(rec, 404, "NAME_UNKNOWN", "repository <x> & co")
	want := `{"errors":[{"code":"NAME_UNKNOWN","message":"repository \u003cx\u003e \u0026 co"}]}` + "\n"
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != want {
		t.Fatalf("Error: %d %q %q; want 404 application/json %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(), want)
	}
	var e contract.APIError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "NAME_UNKNOWN" {
		t.Fatalf("decoded as contract.APIError: %+v %v", e, err)
	}
}

func TestWriteNilHasNoBody(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, 201, nil)
	if rec.Code != 201 || rec.Body.Len() != 0 {
		t.Fatalf("Write(nil): %d %q", rec.Code, rec.Body.String())
	}
}
