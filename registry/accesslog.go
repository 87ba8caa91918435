package registry

import (
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
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

// accessLog writes one line per request: method, path, status, size and
// time, never headers, query strings or bodies, which may carry credentials.
// Health checks log at debug level: load balancers and the engine ask every
// few seconds.
func accessLog(log *logrus.Entry, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		lw := &loggingWriter{ResponseWriter: w}
		next.ServeHTTP(lw, r)
		e := log.WithFields(logrus.Fields{
			"method": r.Method, "path": r.URL.Path, "status": lw.status, "bytes": lw.bytes,
			"ms": time.Since(start).Milliseconds(), "remote": r.RemoteAddr,
		})
		if r.URL.Path == "/_ping" || r.URL.Path == "/health" || r.URL.Path == "/_live" {
			e.Debug("request")
		} else {
			e.Info("request")
		}
	})
}
