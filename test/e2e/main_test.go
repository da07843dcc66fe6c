// Package e2e runs Gantry end to end: the whole platform in-process on the
// real embedded etcd and nats-server (this file's suites), and the built
// binary as a subprocess driven exactly as the README says (binary_test.go).
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

// e2eParallel is how many parallel tests run at once unless -parallel says
// otherwise. Its default, GOMAXPROCS, is two on CI, but these tests spend
// most of their time waiting on processes, heartbeats and polls rather than
// on the CPU (the package used about a quarter of two cores running two at
// a time). Tests that time latencies or measure this process's memory do
// not call t.Parallel, so nothing runs beside them.
const e2eParallel = 4

// defaultParallel sets -test.parallel to e2eParallel when the command line
// left it unset.
func defaultParallel() {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(max(e2eParallel, runtime.GOMAXPROCS(0))))
	}
}

// helperEnv makes the test binary act as a function process instead of
// running tests, so tests need no separately built function.
const helperEnv = "GANTRY_E2E_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		// Every process the tests start (function instances are this
		// binary, and the gantry binary is built with -race too) inherits
		// this: a race-enabled program otherwise sleeps a second in
		// os.Exit, so each instance stopped, each CLI command and each
		// gantry process shut down would cost a second of nothing.
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		defaultParallel()
		code := m.Run()
		removeGantry()
		os.Exit(code)
	case "echo":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := echo.Run(ctx, ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "env":
		// Serves /health, and answers any other path with the value of the
		// environment variable named in the Env-Name header.
		mux := http.NewServeMux()
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, os.Getenv(r.Header.Get("Env-Name")))
		})
		if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
			os.Exit(1)
		}
	case "stream":
		serveStream()
	case "grpc":
		serveGRPC()
	case "assets":
		serveAssets()
	case "models":
		serveModels()
	case "exit":
		fmt.Fprintln(os.Stderr, "boom: bad config")
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode")
		os.Exit(2)
	}
}
