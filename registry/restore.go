package registry

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
)

// MaxRestoreBody bounds an uploaded backup: with images it is as large as
// the registry.
const MaxRestoreBody = backup.MaxBlob

// restorePhase is what a replica answers while it waits for dtr restore to
// send a backup: /_live says it waits (the installer polls it until it is
// sure it talks to the waiting replica, not to an old one still stopping on
// the same port), and PUT RestorePath takes the backup, from a client
// certificate of the backed-up cluster's CA only. received is closed once a
// backup that verifies is spooled.
func (r *Replica) restorePhase(hosts []string) (p *interimPhase, received <-chan struct{}, err error) {
	tlsCfg, err := interimTLS(r.ca, hosts)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Cert)
	tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.VerifyClientCertIfGiven

	done := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	refuse := func(w http.ResponseWriter, status int, msg string) {
		httpjson.Error(w, status, "RESTORE", msg)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+backup.RestorePath, func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 || !isRestoreClient(req.TLS.VerifiedChains[0][0].Subject.CommonName) {
			refuse(w, http.StatusUnauthorized, "a backup is accepted only from dtr restore, with a client certificate of the backed-up cluster's CA")
			return
		}
		if !mu.TryLock() {
			refuse(w, http.StatusConflict, "a backup is being received already")
			return
		}
		defer mu.Unlock()
		select {
		case <-done:
			refuse(w, http.StatusConflict, "a backup was received already")
			return
		default:
		}
		m, err := r.receiveBackup(req.Context(), http.MaxBytesReader(w, req.Body, MaxRestoreBody))
		if err != nil {
			r.log.WithError(err).Warn("refused a backup")
			refuse(w, http.StatusBadRequest, err.Error())
			return
		}
		r.log.WithFields(map[string]any{"cluster": m.ClusterID, "from": m.SourceReplica, "files": len(m.Files)}).Info("received a verified backup")
		httpjson.Write(w, http.StatusOK, map[string]any{"clusterID": m.ClusterID, "files": len(m.Files), "revision": m.EtcdRevision})
		once.Do(func() { close(done) })
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		refuse(w, http.StatusServiceUnavailable, "this replica waits for 'dtr restore' to send a backup")
	})
	return &interimPhase{
		live:    map[string]any{"Restore": "waiting", "Replica": r.opts.ReplicaID},
		waiting: "waiting for 'dtr restore' to send the backup",
		other:   mux,
		tls:     tlsCfg,
	}, done, nil
}

// receiveBackup spools an uploaded backup's records to the data volume and
// writes its blobs into the storage's staging area, verifying it all in
// one pass; only a complete backup of this minor version is kept, and the
// staging area of one refused is removed.
func (r *Replica) receiveBackup(ctx context.Context, body io.Reader) (m backup.Manifest, err error) {
	final := r.disk.restoreSpool()
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return backup.Manifest{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), "receiving-*.tar")
	if err != nil {
		return backup.Manifest{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	st := &stager{ctx: ctx, r: r}
	defer func() {
		if err != nil {
			st.discard()
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	spool := tar.NewWriter(bw)
	m, err = backup.VerifyStream(body, backup.VerifyOptions{Copy: spool, Member: st.member, Blob: st.blob})
	if err != nil {
		return m, err
	}
	if err := backup.CheckVersion(m, images.Version); err != nil {
		return m, err
	}
	if err := spool.Close(); err != nil {
		return m, err
	}
	if err := bw.Flush(); err != nil {
		return m, err
	}
	if err := tmp.Sync(); err != nil {
		return m, err
	}
	if err := tmp.Close(); err != nil {
		return m, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return m, err
	}
	r.received.Store(&m)
	return m, nil
}
