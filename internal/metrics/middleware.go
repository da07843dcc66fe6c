package metrics

import (
	"net/http"
	"time"
)

// Target names the function an HTTP request invokes; ok is false for
// requests that are no invocation.
type Target func(r *http.Request) (fnID, versionID string, ok bool)

// Middleware observes the invocations next serves (those target names):
// in flight, status, duration and time to first byte. Other requests pass
// untouched. The wrapped writer unwraps for http.ResponseController.
func (m *Metrics) Middleware(next http.Handler, target Target) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fnID, versionID, ok := target(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		m.inFlight.Inc()
		rw := &recorder{ResponseWriter: w, start: time.Now()}
		defer func() {
			m.inFlight.Dec()
			took := time.Since(rw.start)
			if rw.code == 0 {
				rw.code, rw.first = http.StatusOK, took
			}
			m.Observe(fnID, versionID, rw.code, took, rw.first)
			switch rw.code {
			case http.StatusUnauthorized:
				m.AuthFailure("unauthenticated")
			case http.StatusForbidden:
				m.AuthFailure("forbidden")
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

type recorder struct {
	http.ResponseWriter
	start time.Time
	first time.Duration
	code  int
}

func (rw *recorder) WriteHeader(code int) {
	if rw.code == 0 && code >= 200 {
		rw.code, rw.first = code, time.Since(rw.start)
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.code == 0 {
		rw.code, rw.first = http.StatusOK, time.Since(rw.start)
	}
	return rw.ResponseWriter.Write(b)
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
