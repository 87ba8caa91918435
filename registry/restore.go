package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/pki"
)

// MaxRestoreBody bounds an uploaded backup.
const MaxRestoreBody = 16 << 30

// restoreFile is where a received, verified backup waits until its records
// are loaded (then it is deleted: the metadata holds the same secrets).
func restoreFile(dataDir string) string { return filepath.Join(dataDir, "restore", "backup.tar") }

// awaitBackup serves until the installer has sent a backup that verifies:
// /_live answers (Swarm must not restart a waiting replica), /_ping says what
// the replica waits for, and PUT RestorePath takes the backup.
func (r *Replica) awaitBackup(ctx context.Context, ca *pki.CA, hosts []string) error {
	cert, err := interimCert(ca, hosts)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites, Certificates: []tls.Certificate{cert},
		ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}

	done := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	waiting := func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"Healthy": false,
			"Error": "waiting for 'dtr restore' to send the backup"})
	}
	mux := http.NewServeMux()
	// The installer polls this until it is sure it talks to the waiting
	// replica, not to an old one still stopping on the same port.
	mux.HandleFunc("/_live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, http.StatusOK, map[string]any{"Live": true, "Restore": "waiting", "Replica": r.opts.ReplicaID})
	})
	mux.HandleFunc("/_ping", waiting)
	mux.HandleFunc("/health", waiting)
	mux.HandleFunc("PUT "+backup.RestorePath, func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 || !isRestoreClient(req.TLS.VerifiedChains[0][0].Subject.CommonName) {
			writeJSONStatus(w, http.StatusUnauthorized, apiErrors("a backup is accepted only from dtr restore, with a client certificate of the backed-up cluster's CA"))
			return
		}
		if !mu.TryLock() {
			writeJSONStatus(w, http.StatusConflict, apiErrors("a backup is being received already"))
			return
		}
		defer mu.Unlock()
		select {
		case <-done:
			writeJSONStatus(w, http.StatusConflict, apiErrors("a backup was received already"))
			return
		default:
		}
		m, err := r.receiveBackup(http.MaxBytesReader(w, req.Body, MaxRestoreBody))
		if err != nil {
			r.log.WithError(err).Warn("refused a backup")
			writeJSONStatus(w, http.StatusBadRequest, apiErrors(err.Error()))
			return
		}
		r.log.WithFields(map[string]any{"cluster": m.ClusterID, "from": m.SourceReplica, "files": len(m.Files)}).Info("received a verified backup")
		writeJSONStatus(w, http.StatusOK, map[string]any{"clusterID": m.ClusterID, "files": len(m.Files), "revision": m.EtcdRevision})
		once.Do(func() { close(done) })
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, http.StatusServiceUnavailable, apiErrors("this replica waits for 'dtr restore' to send a backup"))
	})
	srv, err := r.startInterim(accessLog(r.log, mux), tlsCfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	r.log.Info("waiting for 'dtr restore' to send the backup")
	select {
	case <-done:
		return nil
	case err := <-srv.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// receiveBackup spools an uploaded backup to the data volume while it
// verifies it; only a complete backup of this minor version is kept.
func (r *Replica) receiveBackup(body io.Reader) (backup.Manifest, error) {
	final := restoreFile(r.opts.DataDir)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return backup.Manifest{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), "receiving-*.tar")
	if err != nil {
		return backup.Manifest{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	m, err := backup.Verify(io.TeeReader(body, tmp))
	if err != nil {
		return m, err
	}
	if err := backup.CheckVersion(m, images.Version); err != nil {
		return m, err
	}
	if err := tmp.Sync(); err != nil {
		return m, err
	}
	if err := tmp.Close(); err != nil {
		return m, err
	}
	return m, os.Rename(tmp.Name(), final)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiErrors(msg string) map[string]any {
	return map[string]any{"errors": []map[string]string{{"code": "RESTORE", "message": msg}}}
}
