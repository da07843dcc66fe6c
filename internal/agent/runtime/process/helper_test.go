package process

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest"
	"github.com/gantry-dev/gantry/internal/model"
)

// helperEnv selects a helper mode when the test binary is started as a
// function by the runtime under test.
const helperEnv = "GANTRY_PROCESS_TEST_HELPER"

// TestMain lets the test binary double as the function the tests run: with
// helperEnv set it behaves as that helper, and with runtimetest.ProgramEnv
// as the conformance suite's program, and exits instead of running tests.
func TestMain(m *testing.M) {
	runtimetest.MaybeRunProgram()
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// runHelper implements the helper modes:
//
//	serve      HTTP on 127.0.0.1:$PORT: /health 200, /env JSON env, /args JSON
//	           argv, /pid, /crash exits 1, /sick makes /health 500, /spawn
//	           starts a grandchild in "sleep" mode and returns its pid.
//	unhealthy  like serve, but /health answers 500 from the start.
//	exit       writes "boom: bad config" to stderr and exits 3.
//	sleep      does nothing until killed.
//	agent      runs a Runtime with one "sleep" instance, prints that
//	           instance's pid on stdout, then waits to be killed.
//
// GANTRY_TEST_IGNORE_TERM=1 makes serve ignore SIGTERM.
// GANTRY_TEST_LISTEN_PORT=N makes serve ignore $PORT and listen on N, like a
// function that binds its inferencePort.
func runHelper(mode string) int {
	switch mode {
	case "exit":
		fmt.Println("starting up")
		fmt.Fprintln(os.Stderr, "loading config")
		fmt.Fprintln(os.Stderr, "boom: bad config")
		return 3
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "agent":
		return agentHelper()
	case "serve", "unhealthy":
		return serveHelper(mode == "unhealthy")
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		return 2
	}
}

func agentHelper() int {
	r, err := New(Config{Dir: os.Getenv("GANTRY_TEST_AGENT_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	spec := runtime.Spec{
		InstanceID: "child",
		Image:      model.ProcessImagePrefix + exe,
		Env:        []model.EnvVar{{Key: helperEnv, Value: "sleep"}},
	}
	if err := r.Start(context.Background(), spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for pidOf(r, "child") == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(pidOf(r, "child"))
	for {
		time.Sleep(time.Hour)
	}
}

func serveHelper(sick bool) int {
	if os.Getenv("GANTRY_TEST_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	var unhealthy atomic.Bool
	unhealthy.Store(sick)
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		writeJSON(w, env)
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, os.Args[1:]) })
	mux.HandleFunc("GET /pid", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, os.Getpid()) })
	mux.HandleFunc("GET /sick", func(w http.ResponseWriter, _ *http.Request) {
		unhealthy.Store(true)
		writeJSON(w, "sick")
	})
	mux.HandleFunc("GET /crash", func(http.ResponseWriter, *http.Request) {
		fmt.Fprintln(os.Stderr, "crashing on request")
		os.Exit(1)
	})
	mux.HandleFunc("GET /spawn", func(w http.ResponseWriter, _ *http.Request) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		go func() { _ = cmd.Wait() }()
		writeJSON(w, cmd.Process.Pid)
	})
	port := os.Getenv("PORT")
	if p := os.Getenv("GANTRY_TEST_LISTEN_PORT"); p != "" {
		port = p
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "listening on", ln.Addr(), "pid", strconv.Itoa(os.Getpid()))
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
	}
	return 1
}
