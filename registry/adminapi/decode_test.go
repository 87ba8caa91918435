package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeStrict: what encoding/json alone lets through is refused with a
// 400 INVALID_JSON. Each of these decoded without error before (a stray '}'
// is not "more" to json.Decoder.More, null decodes to the zero value, the
// last duplicate wins, and keys match fields case-insensitively).
func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // part of the message
	}{
		{"trailing brace", `{"name":"a"}}`, "after the JSON object"},
		{"trailing bracket", `{"name":"a"}]`, "after the JSON object"},
		{"second object", `{"name":"a"} {}`, "after the JSON object"},
		{"top-level null", `null`, "must be a JSON object"},
		{"top-level array", `[]`, "must be a JSON object"},
		{"top-level string", `"x"`, "must be a JSON object"},
		{"empty body", ``, "empty"},
		{"duplicate key", `{"name":"a","name":"b"}`, "appears twice"},
		{"duplicate key, other case", `{"name":"a","Name":"b"}`, "case-sensitive"},
		{"case-variant admin flag", `{"name":"eve","password":"eve-password","ISADMIN":true}`, `did you mean "isAdmin"`},
		{"case-variant name", `{"Name":"eve"}`, "case-sensitive"},
		{"unknown field", `{"name":"eve","admn":true}`, `unknown field "admn"`},
		{"deep nesting", `{"name":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req CreateAccountRequest
			err := decode(strings.NewReader(tt.body), &req)
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != "INVALID_JSON" {
				t.Fatalf("decode(%q) = %v (%+v), want 400 INVALID_JSON", tt.body, err, req)
			}
			if !strings.Contains(e.Message, tt.want) {
				t.Fatalf("message %q does not say %q", e.Message, tt.want)
			}
		})
	}
}

// TestDecodeStrictNested: the rules hold inside nested objects too.
func TestDecodeStrictNested(t *testing.T) {
	for _, body := range []string{
		`{"storage":{"type":"s3","type":"filesystem"}}`,
		`{"storage":{"type":"s3","S3":{"region":"r","bucket":"b"}}}`,
		`{"storage":{"type":"s3","s3":{"region":"r","bucket":"b","Bucket":"c"}}}`,
		`{"storage":{"type":"s3","s3":{"region":"r","bucket":"b","secure":true,"secure":false}}}`,
	} {
		var req PatchSettingsRequest
		if err := decode(strings.NewReader(body), &req); err == nil {
			t.Errorf("decode(%s) accepted %+v", body, req)
		}
	}
	var ok PatchSettingsRequest
	if err := decode(strings.NewReader(`{"storage":{"type":"s3","s3":{"region":"r","bucket":"b","secure":null}},"logLevel":"info"}`), &ok); err != nil {
		t.Fatalf("a valid nested body: %v", err)
	}
	if ok.Storage == nil || ok.Storage.S3 == nil || ok.Storage.S3.Bucket != "b" || *ok.LogLevel != "info" {
		t.Fatalf("decoded %+v", ok)
	}
	var lvl AccessRequest
	if err := decode(strings.NewReader(`{"accessLevel":"read-write"}`), &lvl); err != nil || lvl.AccessLevel != "read-write" {
		t.Fatalf("access level: %v %+v", err, lvl)
	}
}

// FuzzDecode: the admin API's strict JSON decoding never panics, rejects
// with a 400 error, and what it accepts is one JSON object without duplicate
// keys whose top-level keys are exactly the target's field names, and
// survives a round trip.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"alice","password":"alice-password"}`, `{"name":"acme","isOrg":true}`, `{`, `{"name":1}`,
		`{"name":"a"} {}`, `{"name":"a","extra":true}`, `null`, `[]`, `{"fullName":"\u0000"}`,
		`{"visibility":"public","shortDescription":"x","immutableTags":true}`, `{"accessLevel":"read-write"}`,
		`{"enabled":true,"rules":[{"field":"tag","operator":"sw","values":["dev-"]}]}`, `{"rules":[{"Field":"tag"}]}`,
		`{"storage":{"type":"s3","s3":{"region":"r","bucket":"b"}}}`,
		`{"name":"a"}}`, `{"name":"a"}]`, `{"name":"a","name":"b"}`, `{"ISADMIN":true}`, `{"isadmin":true}`,
		`{"storage":{"type":"s3","s3":{"region":"r","region":"s","bucket":"b"}}}`, `{"newPassword":"x"} null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		targets := []any{&CreateAccountRequest{}, &PatchAccountRequest{}, &CreateRepositoryRequest{}, &PatchRepositoryRequest{}, &AccessRequest{}, &PatchSettingsRequest{}, &ChangePasswordRequest{}, &MemberRequest{}, &CreateTeamRequest{}, &PruningPolicyRequest{}}
		for _, v := range targets {
			err := decode(strings.NewReader(s), v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("decode(%q) into %T: %v is not a 400", s, v, err)
				}
				continue
			}
			checkAccepted(t, s, v)
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("re-encoding %T: %v", v, err)
			}
			w := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := decode(strings.NewReader(string(b)), w); err != nil {
				t.Fatalf("decode of re-encoded %s: %v", b, err)
			}
		}
	})
}

// checkAccepted holds what decode accepted to the rules, checked here
// another way than decode checks them: valid JSON that is an object with
// nothing after it, top-level keys each once and each an exact field name.
func checkAccepted(t *testing.T, s string, v any) {
	t.Helper()
	if !json.Valid([]byte(s)) {
		t.Fatalf("decode accepted invalid JSON %q into %T", s, v)
	}
	if trimmed := bytes.TrimSpace([]byte(s)); len(trimmed) == 0 || trimmed[0] != '{' {
		t.Fatalf("decode accepted %q, which is not an object, into %T", s, v)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &keys); err != nil {
		t.Fatalf("decode accepted %q, which is not an object: %v", s, err)
	}
	names := map[string]bool{}
	rt := reflect.TypeOf(v).Elem()
	for i := range rt.NumField() {
		n, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names[n] = true
	}
	for k := range keys {
		if !names[k] {
			t.Fatalf("decode accepted key %q, not a field name of %T, in %q", k, v, s)
		}
	}
	dec := json.NewDecoder(strings.NewReader(s))
	count := 0
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the key
			t.Fatal(err)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
		count++
	}
	if count != len(keys) {
		t.Fatalf("decode accepted %q with %d top-level keys of which %d distinct", s, count, len(keys))
	}
}
