package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/web"
)

// TargetAuthAddedP50 is what checking an API key may add to the p50 of a
// request.
const TargetAuthAddedP50 = 20 * time.Microsecond

// AuthConfig configures RunAuth. Zero values take the defaults named.
type AuthConfig struct {
	// Requests is the timed requests per path per round (default 20000).
	Requests int
	// Warmup is the unmeasured requests per path before each round
	// (default 2000).
	Warmup int
	// Rounds repeats the measurement (default 3); medians are reported.
	Rounds int
	// Calls is the direct Authenticate calls timed per round (default
	// 200000).
	Calls int
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *AuthConfig) defaults() {
	if c.Requests <= 0 {
		c.Requests = 20000
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = 2000
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Calls <= 0 {
		c.Calls = 200000
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// AuthRound is one round's measurements.
type AuthRound struct {
	Plain   Summary `json:"plain"`
	Guarded Summary `json:"guarded"`
	// AddedP50 is Guarded.P50 - Plain.P50.
	AddedP50 time.Duration `json:"addedP50Ns"`
	// AuthenticateNs is the mean cost of one direct Authenticate call on a
	// cache hit.
	AuthenticateNs float64 `json:"authenticateNsPerOp"`
}

// AuthResult is what RunAuth measured.
type AuthResult struct {
	Requests int         `json:"requests"`
	Rounds   []AuthRound `json:"rounds"`
	// The medians over rounds.
	PlainP50       time.Duration `json:"plainP50Ns"`
	GuardedP50     time.Duration `json:"guardedP50Ns"`
	AddedP50       time.Duration `json:"addedP50Ns"`
	AuthenticateNs float64       `json:"authenticateNsPerOp"`
	Errors         int           `json:"errors"`
	FirstError     string        `json:"firstError,omitempty"`
	Targets        []Target      `json:"targets"`
}

// RunAuth measures what API key authentication adds to a request. It
// starts an embedded etcd in a temporary directory, creates an API key
// there, and serves one trivial handler on loopback twice: as is, and
// behind web.Guard with the API key service as its authenticator, as the
// real routes are. One client sends requests over one keep-alive
// connection, one at a time, alternating the two paths so that drift on
// the machine hits both alike; every request carries the key, so the only
// difference is the guard. It also times Authenticate called directly.
// Failed requests are counted in Errors; the caller decides what they mean.
func RunAuth(ctx context.Context, cfg AuthConfig) (*AuthResult, error) {
	cfg.defaults()
	dir, err := os.MkdirTemp("", "gantry-bench-auth-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	e, err := store.StartEmbedded(dir, time.Minute)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	keys := auth.NewAPIKeys(store.New(e.Client(), ""), auth.APIKeysConfig{})
	_, value, err := keys.Create(ctx, store.APIKey{Account: "bench", Description: "gantry bench auth"})
	if err != nil {
		return nil, err
	}

	ok := []byte("ok\n")
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(ok) })
	mux := http.NewServeMux()
	mux.Handle("/plain", plain)
	mux.Handle("/guarded", web.Guard{Auth: keys}.Route(auth.ScopeInvokeFunction,
		func(w http.ResponseWriter, r *http.Request, _ auth.Principal) error {
			plain.ServeHTTP(w, r)
			return nil
		}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(cfg.Progress, "Serving /plain and /guarded (web.Guard + API key) on %s; etcd in %s\n", base, dir)

	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	res := &AuthResult{Requests: cfg.Requests}
	send := func(path string) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+value)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s answered %s", path, resp.Status)
		}
		return d, err
	}
	fail := func(err error) {
		res.Errors++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
	}

	direct, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/guarded", nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	direct.Header.Set("Authorization", "Bearer "+value)
	for round := 1; round <= cfg.Rounds; round++ {
		for range cfg.Warmup {
			for _, p := range []string{"/plain", "/guarded"} {
				if _, err := send(p); err != nil {
					fail(err)
				}
			}
		}
		plainLat := make([]time.Duration, 0, cfg.Requests)
		guardedLat := make([]time.Duration, 0, cfg.Requests)
		began := time.Now()
		for range cfg.Requests {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if d, err := send("/plain"); err != nil {
				fail(err)
			} else {
				plainLat = append(plainLat, d)
			}
			if d, err := send("/guarded"); err != nil {
				fail(err)
			} else {
				guardedLat = append(guardedLat, d)
			}
		}
		elapsed := time.Since(began)
		r := AuthRound{Plain: Summarize(plainLat, elapsed), Guarded: Summarize(guardedLat, elapsed)}
		r.AddedP50 = r.Guarded.P50 - r.Plain.P50

		start := time.Now()
		for range cfg.Calls {
			if _, err := keys.Authenticate(direct); err != nil {
				return nil, fmt.Errorf("bench: authenticate: %w", err)
			}
		}
		r.AuthenticateNs = float64(time.Since(start).Nanoseconds()) / float64(cfg.Calls)
		res.Rounds = append(res.Rounds, r)
		fmt.Fprintf(cfg.Progress, "  round %d/%d  plain p50 %.1fµs  guarded p50 %.1fµs  added %.1fµs  Authenticate %.0f ns/op\n",
			round, cfg.Rounds, micros(r.Plain.P50), micros(r.Guarded.P50), micros(r.AddedP50), r.AuthenticateNs)
	}

	var plainP50, guardedP50, added []time.Duration
	var ns []float64
	for _, r := range res.Rounds {
		plainP50 = append(plainP50, r.Plain.P50)
		guardedP50 = append(guardedP50, r.Guarded.P50)
		added = append(added, r.AddedP50)
		ns = append(ns, r.AuthenticateNs)
	}
	res.PlainP50, res.GuardedP50, res.AddedP50 = Median(plainP50), Median(guardedP50), Median(added)
	res.AuthenticateNs = Median(ns)
	res.Targets = []Target{{
		Name: "added p50 of API key authentication",
		Want: fmt.Sprintf("< %.0f µs", micros(TargetAuthAddedP50)),
		Got:  fmt.Sprintf("%.1f µs", micros(res.AddedP50)),
		Pass: res.AddedP50 < TargetAuthAddedP50 && res.Errors == 0,
	}}
	return res, nil
}

// micros renders d in microseconds.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
