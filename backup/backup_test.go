package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func sample(t testing.TB, version string) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, version)
	if err != nil {
		t.Fatal(err)
	}
	for i, acc := range []string{"admin", "alice", "bob"} {
		if err := w.AddJSON("meta/accounts/"+acc+".json", map[string]any{"name": acc, "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddJSON("meta/repos/acme%2Fapp.json", map[string]any{"namespace": "acme", "name": "app"}); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("-----KEY-----", 40)
	if err := w.Add("certs/ca-key.pem", int64(len(key)), strings.NewReader(key)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddJSON("config/settings.json", map[string]any{"externalURL": "https://dtr.example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Manifest{DTRVersion: version, Created: time.Unix(1700000000, 0).UTC(), ClusterID: "c1", SourceReplica: "000000000001", EtcdRevision: 42}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	m, err := Verify(bytes.NewReader(sample(t, "0.1.0")))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 6 || m.EtcdRevision != 42 || m.ClusterID != "c1" || m.Format != 1 || m.Images != nil {
		t.Fatalf("manifest: %+v", m)
	}
	if err := CheckVersion(m, "0.1.7"); err != nil {
		t.Fatalf("a patch release must restore: %v", err)
	}
	if err := CheckVersion(m, "0.2.0"); err == nil || !strings.Contains(err.Error(), "Supported versions to restore from: 0.2.x") {
		t.Fatalf("another minor version: %v", err)
	}
	// Members as DTR wrote them: root 0700 directories, 0600 files, uid 0.
	tr := tar.NewReader(bytes.NewReader(sample(t, "0.1.0")))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if (h.Typeflag == tar.TypeDir && h.Mode != 0o700) || (h.Typeflag == tar.TypeReg && h.Mode != 0o600) || h.Uid != 0 {
			t.Fatalf("member %s: mode %o uid %d", h.Name, h.Mode, h.Uid)
		}
	}
}

// rehash rewrites a backup's manifest with fn and re-hashes nothing else, so
// that only the rule under test can catch it.
func rehash(t *testing.T, b []byte, fn func(*Manifest)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		data, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ManifestName) {
			var m Manifest
			json.Unmarshal(data, &m)
			fn(&m)
			m.Seal()
			data, _ = json.Marshal(m)
			h.Size = int64(len(data))
		}
		tw.WriteHeader(h)
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func TestRefusesBadInput(t *testing.T) {
	good := sample(t, "0.1.0")
	flip := func(b []byte, at int) []byte {
		c := append([]byte(nil), b...)
		c[at] ^= 0x20
		return c
	}
	recordAt := bytes.Index(good, []byte(`"name":"alice"`))
	manifestAt := bytes.LastIndex(good, []byte(`"sha256"`)) + 12
	var unrelated bytes.Buffer
	tw := tar.NewWriter(&unrelated)
	tw.WriteHeader(&tar.Header{Name: "etc/hosts", Size: 5, Mode: 0o644})
	tw.Write([]byte("hosts"))
	tw.Close()
	var huge bytes.Buffer
	htw := tar.NewWriter(&huge)
	htw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "dtr-backup-v0.1.0/", Mode: 0o700})
	htw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "dtr-backup-v0.1.0/meta/x.json", Size: MaxMember + 1, Mode: 0o600})
	htw.Flush()
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"a member claiming more than the limit", huge.Bytes(), "members are at most"},
		{"empty stdin", nil, "the stream is empty"},
		{"a tar of unrelated files", unrelated.Bytes(), "this is not a dtr backup"},
		{"flipped byte in a record", flip(good, recordAt), "does not match its sha256"},
		{"flipped byte in the manifest", flip(good, manifestAt), "manifest"},
		{"flipped byte in the manifest's cluster ID", flip(good, bytes.Index(good, []byte(`"clusterID": "c1"`))+len(`"clusterID": "`)), "does not match its checksum"},
		{"not a tar at all", []byte("this is a log line, not a tar\n"), "not a complete tar"},
		{"a file the manifest does not list", rehash(t, good, func(m *Manifest) { m.Files = m.Files[1:] }), "not listed in the manifest"},
		{"a listed file that is missing", rehash(t, good, func(m *Manifest) { m.Files = append(m.Files, File{Path: "meta/x.json"}) }), "missing"},
		{"another format", rehash(t, good, func(m *Manifest) { m.Format = 9 }), "format 9"},
	}
	for _, off := range []int{1, 512, len(good) / 3, len(good) / 2, len(good) - 1024} {
		cases = append(cases, struct {
			name string
			in   []byte
			want string
		}{name: "truncated", in: good[:off], want: "trunc"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.in))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
	// Another minor version, re-hashed so that only the version rule catches it.
	other := rehash(t, sample(t, "0.2.0"), func(*Manifest) {})
	m, err := Verify(bytes.NewReader(other))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(m, "0.1.0"); err == nil {
		t.Fatal("restored a backup of another minor version")
	}
}

// FuzzVerify: the reader never panics, and never accepts a stream whose
// files do not match the hashes of the manifest it returns.
func FuzzVerify(f *testing.F) {
	good := sample(f, "0.1.0")
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		type result struct {
			m   Manifest
			err error
		}
		done := make(chan result, 1)
		go func() {
			m, err := Verify(bytes.NewReader(b))
			done <- result{m, err}
		}()
		var m Manifest
		select {
		case r := <-done:
			if r.err != nil {
				return
			}
			m = r.m
		case <-time.After(5 * time.Second):
			t.Fatalf("Verify did not return within 5 s on %d bytes", len(b))
		}
		// Accepted: recompute every member's hash independently.
		got := map[string]string{}
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			data, _ := io.ReadAll(tr)
			sum := sha256.Sum256(data)
			if _, rest, ok := strings.Cut(h.Name, "/"); ok && h.Typeflag == tar.TypeReg {
				got[rest] = hex.EncodeToString(sum[:])
			}
		}
		for _, f := range m.Files {
			if got[f.Path] != f.SHA256 {
				t.Fatalf("accepted %s with sha256 %s, manifest says %s", f.Path, got[f.Path], f.SHA256)
			}
		}
	})
}
