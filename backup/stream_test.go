package backup

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// memSink keeps a blob's bytes and whether it was committed or cancelled.
type memSink struct {
	bytes.Buffer
	committed, cancelled bool
}

func (s *memSink) Commit() error { s.committed = true; return nil }
func (s *memSink) Cancel()       { s.cancelled = true }

// TestVerifyStreamStagesBlobs: VerifyStream hands each blob's bytes to the
// sink in the same pass that hashes them, commits only matching ones,
// cancels the one that does not match, spools everything else, and that
// spool verifies only as one whose blobs are elsewhere.
func TestVerifyStreamStagesBlobs(t *testing.T) {
	f := newImageFixture()
	b := f.backup(t, true)
	sinks := map[string]*memSink{}
	var spool bytes.Buffer
	tw := tar.NewWriter(&spool)
	var settings bytes.Buffer
	m, err := VerifyStream(bytes.NewReader(b), VerifyOptions{
		Copy: tw,
		Member: func(p string) io.Writer {
			if p == "meta/accounts/admin.json" {
				return &settings
			}
			return nil
		},
		Blob: func(d string, size int64) (BlobSink, error) {
			s := &memSink{}
			sinks[d] = s
			return s, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(settings.String(), `"name":"admin"`) {
		t.Fatalf("the member hook got %q", settings.String())
	}
	if len(sinks) != len(f.ix.Blobs) {
		t.Fatalf("%d blobs staged of %d", len(sinks), len(f.ix.Blobs))
	}
	for d, s := range sinks {
		if !s.committed || s.cancelled || !bytes.Equal(s.Bytes(), f.blobs[d]) {
			t.Fatalf("blob %s: committed %v cancelled %v, %d bytes", d, s.committed, s.cancelled, s.Len())
		}
	}
	if spool.Len() >= len(b)-400000 {
		t.Fatalf("the spool holds %d bytes of a %d-byte backup", spool.Len(), len(b))
	}
	if _, err := Verify(bytes.NewReader(spool.Bytes())); err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("the spool verified as a whole backup: %v", err)
	}
	sm, err := VerifyStream(bytes.NewReader(spool.Bytes()), VerifyOptions{BlobsElsewhere: true})
	if err != nil {
		t.Fatalf("the spool as one whose blobs are elsewhere: %v", err)
	}
	if sm.Checksum != m.Checksum || !sm.Images.Included {
		t.Fatalf("the spool's manifest: %+v", sm)
	}
	// BlobsElsewhere does not excuse a damaged record of the spool.
	bad := append([]byte(nil), spool.Bytes()...)
	i := bytes.Index(bad, []byte(`"name":"admin"`))
	if i < 0 {
		t.Fatal("no record in the spool")
	}
	bad[i+len(`"name":"a`)] ^= 0x20
	if _, err := VerifyStream(bytes.NewReader(bad), VerifyOptions{BlobsElsewhere: true}); err == nil {
		t.Fatal("a damaged spool verified")
	}

	// A flipped byte in a blob: that blob's sink is cancelled, not committed.
	big := ""
	for d, data := range f.blobs {
		if len(data) > 100000 {
			big = d
		}
	}
	flipped := rewrite(t, b, func(name string, data []byte) ([]byte, bool) {
		if strings.HasSuffix(name, strings.TrimPrefix(big, "sha256:")) {
			data = append([]byte(nil), data...)
			data[len(data)/2] ^= 1
		}
		return data, true
	})
	sinks = map[string]*memSink{}
	_, err = VerifyStream(bytes.NewReader(flipped), VerifyOptions{Blob: func(d string, size int64) (BlobSink, error) {
		s := &memSink{}
		sinks[d] = s
		return s, nil
	}})
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("a flipped byte in a blob: %v", err)
	}
	if s := sinks[big]; s == nil || s.committed || !s.cancelled {
		t.Fatalf("the damaged blob's sink: %+v", s)
	}
	// A sink that fails is the caller's error, not damage.
	boom := errors.New("disk full")
	_, err = VerifyStream(bytes.NewReader(b), VerifyOptions{Blob: func(string, int64) (BlobSink, error) { return failSink{boom}, nil }})
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("a failing sink: %v", err)
	}
}

type failSink struct{ err error }

func (f failSink) Write([]byte) (int, error) { return 0, f.err }
func (failSink) Commit() error               { return nil }
func (failSink) Cancel()                     {}
