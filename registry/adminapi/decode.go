package adminapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// decode reads a JSON request body strictly into v (a pointer to a struct):
// the body is one JSON object and nothing after it, no object repeats a key,
// and every key names a field exactly. encoding/json alone is lax in four
// ways that matter for an API that grants rights: Decoder.More reports false
// at a stray '}' or ']', so `{"a":1}}` passed; a top-level null decodes to
// the zero value; of duplicate keys the last wins, so a proxy or log that
// reads the first sees another request than the one applied; and field names
// match case-insensitively, so `{"ISADMIN":true}` set isAdmin. Any of them is
// a 400 INVALID_JSON.
func decode(r io.Reader, v any) error {
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errorf(http.StatusBadRequest, "INVALID_JSON", "reading the request body: %v", err)
	}
	if err := checkStrict(b, reflect.TypeOf(v)); err != nil {
		return errorf(http.StatusBadRequest, "INVALID_JSON", "malformed request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "INVALID_JSON", "malformed request body: %v", err)
	}
	return nil
}

// checkStrict walks the tokens of b against type t and reports the first
// thing encoding/json would have let through.
func checkStrict(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return errors.New("the body is empty; send a JSON object")
	}
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("the body must be a JSON object, not %s", describe(tok))
	}
	if err := walk(dec, tok, t, "", 1); err != nil {
		return err
	}
	if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return fmt.Errorf("data after the JSON object: %s", describe(tok))
		}
		return fmt.Errorf("data after the JSON object: %v", err)
	}
	return nil
}

// maxDepth bounds nesting: no request type nests more than three objects,
// and the walk must not recurse a megabyte of '[' deep.
const maxDepth = 32

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// walk checks the value that starts with tok. t is the Go type it decodes
// into, or nil where any key is allowed (maps of any, interfaces, types with
// their own UnmarshalJSON); duplicate keys are refused everywhere.
func walk(dec *json.Decoder, tok json.Token, t reflect.Type, path string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)) {
		t = nil
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar; its type is encoding/json's to check
	}
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			next, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walk(dec, next, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t != nil && t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t != nil && t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			name := strings.TrimPrefix(path+"."+k, ".")
			if seen[k] {
				return fmt.Errorf("key %q appears twice; send each field once", name)
			}
			seen[k] = true
			ft := elem
			if fields != nil {
				var ok bool
				if ft, ok = fields[k]; !ok {
					for f := range fields {
						if strings.EqualFold(f, k) {
							return fmt.Errorf("unknown field %q: field names are case-sensitive; did you mean %q?", name, f)
						}
					}
					return fmt.Errorf("unknown field %q", name)
				}
			}
			vt, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walk(dec, vt, ft, name, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected %s", describe(tok))
	}
	_, err := dec.Token() // the closing delimiter; Token checks it matches
	return err
}

// jsonFields maps the exact JSON names of a struct's fields (as
// encoding/json names them, embedded structs flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%v", tok)
}
