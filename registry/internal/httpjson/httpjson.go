// Package httpjson writes the replica's JSON answers: one encoder, and one
// error body (contract.APIError) for the admin API, the registry API's own
// routes and the interim listener alike.
package httpjson

import (
	"encoding/json"
	"net/http"

	"github.com/dtr-registry/dtr/contract"
)

// Write answers status with v as JSON; a nil v answers with no body.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// Error answers status with {"errors":[{"code","message"}]}: the admin
// API's error body and Distribution's (which dtr never fills with detail).
// Headers such as Retry-After or WWW-Authenticate are the caller's.
func Error(w http.ResponseWriter, status int, code, message string) {
	Write(w, status, contract.NewAPIError(code, message))
}
