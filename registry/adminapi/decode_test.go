package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode: the admin API's strict JSON decoding never panics, rejects
// with a 400 error, and what it accepts survives a round trip.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"alice","password":"alice-password"}`, `{"name":"acme","isOrg":true}`, `{`, `{"name":1}`,
		`{"name":"a"} {}`, `{"name":"a","extra":true}`, `null`, `[]`, `{"fullName":"\u0000"}`,
		`{"visibility":"public","shortDescription":"x","immutableTags":true}`, `{"accessLevel":"read-write"}`,
		`{"storage":{"type":"s3","s3":{"region":"r","bucket":"b"}}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		targets := []any{&CreateAccountRequest{}, &PatchAccountRequest{}, &CreateRepositoryRequest{}, &PatchRepositoryRequest{}, &AccessRequest{}, &PatchSettingsRequest{}, &ChangePasswordRequest{}}
		for _, v := range targets {
			err := decode(strings.NewReader(s), v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("decode(%q) into %T: %v is not a 400", s, v, err)
				}
				continue
			}
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
