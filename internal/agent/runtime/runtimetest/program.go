package runtimetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// Environment of the program. ProgramEnv marks a process as the program and
// names its directory; the others set how it behaves.
const (
	// ProgramEnv holds the program's directory, where it records what
	// happens to it (see Events) and where the suite leaves it signals.
	ProgramEnv = "GANTRY_RUNTIMETEST_PROGRAM"
	// ListenHostEnv is the address the program listens on (default
	// 127.0.0.1). A simulated kubelet sets the pod's IP there, which a
	// container would get from its network namespace.
	ListenHostEnv = "GANTRY_RUNTIMETEST_HOST"

	crashEnv      = "GANTRY_RUNTIMETEST_CRASH"
	gatedEnv      = "GANTRY_RUNTIMETEST_GATED"
	ignoreTermEnv = "GANTRY_RUNTIMETEST_IGNORE_TERM"

	// releaseFile, created in the program's directory, makes a gated
	// program healthy.
	releaseFile = "release"
	eventsFile  = "events"
)

// Lines the program prints, which the suite looks for in its logs and
// status reasons.
const (
	stdoutLine = "runtimetest: hello on stdout"
	stderrLine = "runtimetest: hello on stderr"
	crashLine  = "runtimetest: boom, bad config"
	crashCode  = 3
)

// Program says how the instance's program behaves. Its Env goes into the
// instance's containerEnvironment, so every runtime hands it over the same
// way it hands over a function's own variables.
type Program struct {
	// Dir is where the program records its events. Required.
	Dir string
	// CrashTimes makes the first N starts print crashLine to stderr and
	// exit with crashCode before serving; -1 makes every start do so.
	CrashTimes int
	// Gated makes /health answer 503 until the suite releases it.
	Gated bool
	// IgnoreTerm makes the program note SIGTERM and keep running.
	IgnoreTerm bool
}

// Env returns the variables that make an instance run p. They include
// GORACE with atexit_sleep_ms=0: a race-enabled program otherwise sleeps a
// second in os.Exit, which every drained stop would wait for.
func (p Program) Env() []model.EnvVar {
	env := []model.EnvVar{
		{Key: ProgramEnv, Value: p.Dir},
		{Key: "GORACE", Value: strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")},
	}
	if p.CrashTimes != 0 {
		env = append(env, model.EnvVar{Key: crashEnv, Value: strconv.Itoa(p.CrashTimes)})
	}
	if p.Gated {
		env = append(env, model.EnvVar{Key: gatedEnv, Value: "1"})
	}
	if p.IgnoreTerm {
		env = append(env, model.EnvVar{Key: ignoreTermEnv, Value: "1"})
	}
	return env
}

// MaybeRunProgram makes a test binary double as the program instances run:
// when ProgramEnv is set it runs the program and exits, and otherwise
// returns at once. Call it first thing in TestMain, before flags are parsed
// (the instance's containerArgs are not test flags).
func MaybeRunProgram() {
	dir := os.Getenv(ProgramEnv)
	if dir == "" {
		return
	}
	os.Exit(runProgram(dir))
}

// Event is one line of a program's record.
type Event struct {
	Kind string // start, term, exit, unhealthy, slow
	PID  int
	At   time.Time
	Arg  string // exit: the exit code
}

// Events reads what the programs of one directory recorded, in order.
func Events(dir string) ([]Event, error) {
	b, err := os.ReadFile(filepath.Join(dir, eventsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtimetest: %w", err)
	}
	var out []Event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		e := Event{Kind: f[0], PID: pid, At: time.Unix(0, ns)}
		if len(f) > 3 {
			e.Arg = f[3]
		}
		out = append(out, e)
	}
	return out, nil
}

// record appends one event; one write of a line under O_APPEND, so lines
// of overlapping processes do not interleave.
func record(dir, kind string, arg ...string) {
	f, err := os.OpenFile(filepath.Join(dir, eventsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runtimetest:", err)
		return
	}
	defer f.Close()
	line := fmt.Sprintf("%s %d %d %s", kind, os.Getpid(), time.Now().UnixNano(), strings.Join(arg, " "))
	_, _ = f.WriteString(strings.TrimSpace(line) + "\n")
}

// runProgram is the program: it records its start, crashes if told to,
// then serves HTTP on $PORT:
//
//	/health  200, or 503 while gated and not released, or 500 once sick
//	/env     its environment as a JSON object
//	/args    its arguments as a JSON array
//	/sick    makes /health answer 500 from now on
//	/crash   exits with code 1
//	/slow    answers only once the program got SIGTERM: a request in flight
//
// On SIGTERM it stops accepting connections, lets the requests in flight
// finish, records its exit and exits 0 (unless told to ignore SIGTERM).
func runProgram(dir string) int {
	starts := 0
	if evs, err := Events(dir); err == nil {
		for _, e := range evs {
			if e.Kind == "start" {
				starts++
			}
		}
	}
	record(dir, "start")
	fmt.Println(stdoutLine)
	fmt.Fprintln(os.Stderr, stderrLine)
	if n, _ := strconv.Atoi(os.Getenv(crashEnv)); n < 0 || starts < n {
		fmt.Fprintln(os.Stderr, crashLine)
		record(dir, "exit", strconv.Itoa(crashCode))
		return crashCode
	}

	termed := make(chan struct{})
	var termOnce sync.Once
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)

	var sick sync.Map // "sick" -> true once /sick was called
	gated := os.Getenv(gatedEnv) == "1"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if _, ok := sick.Load("sick"); ok {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		if gated {
			if _, err := os.Stat(filepath.Join(dir, releaseFile)); err != nil {
				record(dir, "unhealthy")
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		writeJSON(w, env)
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, os.Args[1:]) })
	mux.HandleFunc("GET /sick", func(w http.ResponseWriter, _ *http.Request) {
		sick.Store("sick", true)
		writeJSON(w, "sick")
	})
	mux.HandleFunc("GET /crash", func(http.ResponseWriter, *http.Request) {
		fmt.Fprintln(os.Stderr, "runtimetest: crashing on request")
		record(dir, "exit", "1")
		os.Exit(1)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
		record(dir, "slow")
		<-termed
		_, _ = w.Write([]byte("drained"))
	})

	host := os.Getenv(ListenHostEnv)
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "runtimetest: listen:", err)
		record(dir, "exit", "1")
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for {
		select {
		case err := <-served:
			fmt.Fprintln(os.Stderr, "runtimetest: serve:", err)
			record(dir, "exit", "1")
			return 1
		case <-sigs:
			record(dir, "term")
			if os.Getenv(ignoreTermEnv) == "1" {
				continue
			}
			termOnce.Do(func() { close(termed) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			record(dir, "exit", "0")
			return 0
		}
	}
}
