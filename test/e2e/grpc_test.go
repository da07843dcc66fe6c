package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	_ "github.com/gantry-dev/gantry/internal/example/grpcecho" // registers the raw codec
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// The "grpc" helper mode is a real grpc-go server on $PORT, as NVCF's gRPC
// functions are: the standard health service, and gantry.test.Echo, a
// hand-written service of raw bytes (content subtype "raw", grpcecho's
// codec, so no protoc):
//
//	Unary  answers "echo:" + the request, with trailers saying which
//	       function id and how many authorization values it was sent
//	Fail   answers status AlreadyExists "the function says no"
//	Greet  sends its headers, then waits for one message and echoes it
//	Bidi   echoes each message as it comes; a stream its caller cancels
//	       appends "cancelled <unix ns>" to the file named in $GRPC_LOG
const grpcLogEnv = "GRPC_LOG"

const echoService = "gantry.test.Echo"

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			md, _ := metadata.FromIncomingContext(ctx)
			fn := md.Get("nvcf-function-id")
			_ = grpc.SetTrailer(ctx, metadata.Pairs("seen-function-id", strings.Join(fn, ","),
				"seen-authorization", strconv.Itoa(len(md.Get("authorization")))))
			out := append([]byte("echo:"), in...)
			return &out, nil
		}},
		{MethodName: "Fail", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.AlreadyExists, "the function says no")
		}},
	},
	Streams: []grpc.StreamDesc{{StreamName: "Greet", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			// Headers first, then wait for the caller, who may wait
			// for them.
			if err := s.SendHeader(metadata.Pairs("greeting", "hello")); err != nil {
				return err
			}
			var m []byte
			if err := s.RecvMsg(&m); err != nil {
				return err
			}
			return s.SendMsg(&m)
		}}, {StreamName: "Bidi", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var m []byte
				err := s.RecvMsg(&m)
				if err == nil {
					err = s.SendMsg(&m)
				}
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if s.Context().Err() != nil {
						appendLine(os.Getenv(grpcLogEnv), fmt.Sprintf("cancelled %d", time.Now().UnixNano()))
					}
					return err
				}
			}
		}}},
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func serveGRPC() {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	srv.RegisterService(&echoDesc, struct{}{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// grpcFunction is the "grpc" helper as NVCF declares a gRPC function:
// inferenceUrl /grpc and a gRPC health check on the inference port.
func grpcFunction(t testing.TB, name, logPath string) model.CreateFunctionRequest {
	req := selfFunction(t, name, "grpc")
	req.InferenceURL = model.GRPCInferenceURL
	req.Health = &model.Health{Protocol: "gRPC", Timeout: "PT5S"}
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: grpcLogEnv, Value: logPath})
	return req
}

// startGRPCPlatform starts a platform with a gRPC listener and one
// deployed gRPC function, and returns an API key (NVCF's default scopes).
func startGRPCPlatform(t *testing.T, edit func(*dev.Config)) (p *platform, fn model.Function, key, logPath string) {
	t.Helper()
	p = startPlatformWith(t, t.TempDir(), func(c *dev.Config) {
		c.GRPC.Listen = "127.0.0.1:0"
		if edit != nil {
			edit(c)
		}
	})
	ctx := testutil.Context(t)
	logPath = filepath.Join(t.TempDir(), "grpc.log")
	fn, err := p.c.CreateFunction(ctx, grpcFunction(t, "grpc-echo", logPath))
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	p.deploy(t, fn, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: &one}, model.StatusActive)
	k, err := p.c.CreateAPIKey(ctx, model.APIKeyRequest{Description: "grpc"}, client.KeyIssuer{})
	if err != nil {
		t.Fatal(err)
	}
	return p, fn, k.Value, logPath
}

// callCtx is ctx with NVCF's gRPC metadata; empty values are left out.
func callCtx(ctx context.Context, fnID, versionID, key string) context.Context {
	var kv []string
	if fnID != "" {
		kv = append(kv, "function-id", fnID)
	}
	if versionID != "" {
		kv = append(kv, "function-version-id", versionID)
	}
	if key != "" {
		kv = append(kv, "authorization", "Bearer "+key)
	}
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
}

func unary(ctx context.Context, conn *grpc.ClientConn, method, msg string, opts ...grpc.CallOption) (string, error) {
	in, out := []byte(msg), []byte(nil)
	err := conn.Invoke(ctx, "/"+echoService+"/"+method, &in, &out, append(opts, grpc.CallContentSubtype("raw"))...)
	return string(out), err
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wantCode(t *testing.T, err error, want codes.Code, detail string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want || !strings.Contains(st.Message(), detail) {
		t.Fatalf("status %v %q, want %v containing %q", st.Code(), st.Message(), want, detail)
	}
}

// TestGRPCInvocation calls a real grpc-go function with a real grpc-go
// client through the gateway's gRPC listener, as NVCF's gRPC clients do:
// unary, a proto service (health), the function's own error status, a
// 1,000-message bidi stream, a call queued behind a busy slot, a stream the
// caller cancels, and every refusal as the status it is.
//
// Not parallel: beside other tests, "a caller whose end trails the answer"
// has hung (no answer for minutes).
func TestGRPCInvocation(t *testing.T) {
	for _, cp := range callPaths {
		t.Run(cp.name, func(t *testing.T) { testGRPCInvocation(t, cp.edit) })
	}
}

func testGRPCInvocation(t *testing.T, edit func(*dev.Config)) {
	p, fn, key, logPath := startGRPCPlatform(t, edit)
	ctx := testutil.Context(t)
	conn := dial(t, p.GRPCAddr(), insecure.NewCredentials())
	call := callCtx(ctx, fn.ID, "", key)

	t.Run("unary", func(t *testing.T) {
		var trailer metadata.MD
		out, err := unary(call, conn, "Unary", "hello", grpc.Trailer(&trailer))
		if err != nil || out != "echo:hello" {
			t.Fatalf("Unary: %q, %v", out, err)
		}
		if got := trailer.Get("seen-function-id"); len(got) != 1 || got[0] != fn.ID {
			t.Errorf("the function saw NVCF-FUNCTION-ID %v, want %s (trailers %v)", got, fn.ID, trailer)
		}
		if got := trailer.Get("seen-authorization"); len(got) != 1 || got[0] != "0" {
			t.Errorf("the caller's authorization reached the function: %v", got)
		}
		// With the version named too.
		if out, err := unary(callCtx(ctx, fn.ID, fn.VersionID, key), conn, "Unary", "v"); err != nil || out != "echo:v" {
			t.Fatalf("Unary with function-version-id: %q, %v", out, err)
		}
	})

	t.Run("a proto service", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(call, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("grpc.health.v1.Health/Check through the gateway: %v, %v", resp, err)
		}
	})

	t.Run("the function's own status", func(t *testing.T) {
		_, err := unary(call, conn, "Fail", "x")
		wantCode(t, err, codes.AlreadyExists, "the function says no")
	})

	t.Run("bidi 1000 messages", func(t *testing.T) {
		s, err := conn.NewStream(call, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/"+echoService+"/Bidi", grpc.CallContentSubtype("raw"))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		for i := range 1000 {
			// Message i+1 goes only once reply i is in: the path must
			// carry every frame as it is sent, both ways.
			msg := []byte("message " + strconv.Itoa(i))
			if err := s.SendMsg(&msg); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			var reply []byte
			if err := s.RecvMsg(&reply); err != nil || string(reply) != string(msg) {
				t.Fatalf("reply %d: %q, %v", i, reply, err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var extra []byte
		if err := s.RecvMsg(&extra); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last reply: %q, %v; want the stream's clean end", extra, err)
		}
		t.Logf("1000 round trips in %s", time.Since(began))
	})

	t.Run("headers before any message", func(t *testing.T) {
		// The function sends its headers and waits for the caller, who
		// waits for those headers before it sends: the gateway must not
		// hold them back for a message.
		hctx, cancel := context.WithTimeout(call, 10*time.Second)
		defer cancel()
		s, err := conn.NewStream(hctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/"+echoService+"/Greet", grpc.CallContentSubtype("raw"))
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := s.Header()
		if err != nil || len(hdr.Get("greeting")) != 1 || hdr.Get("greeting")[0] != "hello" {
			t.Fatalf("headers %v, %v", hdr, err)
		}
		msg := []byte("after the headers")
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var reply []byte
		if err := s.RecvMsg(&reply); err != nil || string(reply) != string(msg) {
			t.Fatalf("reply %q, %v", reply, err)
		}
	})

	t.Run("queued behind a busy slot", func(t *testing.T) {
		// The one slot is held by an open stream: the next call waits in
		// the work queue, its messages following once a worker takes it.
		// It is a Greet, whose caller sends only once it has the headers.
		s, err := conn.NewStream(call, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/"+echoService+"/Bidi", grpc.CallContentSubtype("raw"))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("holding")
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(&msg); err != nil {
			t.Fatal(err)
		}
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			qctx, cancel := context.WithTimeout(call, 30*time.Second)
			defer cancel()
			g, err := conn.NewStream(qctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
				"/"+echoService+"/Greet", grpc.CallContentSubtype("raw"))
			if err == nil {
				_, err = g.Header()
			}
			msg := []byte("queued")
			if err == nil {
				err = g.SendMsg(&msg)
			}
			var reply []byte
			if err == nil {
				err = g.RecvMsg(&reply)
			}
			done <- result{string(reply), err}
		}()
		testutil.WaitFor(t, 10*time.Second, func() error {
			resp, err := http.DefaultClient.Do(newRequest(t, http.MethodGet,
				p.URL()+"/v2/nvcf/queues/functions/"+fn.ID+"/versions/"+fn.VersionID, p.AdminToken()))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var q model.QueueResponse
			if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
				return err
			}
			if len(q.Queues) == 0 || q.Queues[0].QueueDepth == 0 {
				return fmt.Errorf("queues %+v: the call is not queued yet", q.Queues)
			}
			return nil
		})
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(&msg); !errors.Is(err, io.EOF) {
			t.Fatalf("holding stream: %v", err)
		}
		if r := <-done; r.err != nil || r.out != "queued" {
			t.Fatalf("the queued call: %q, %v", r.out, r.err)
		}
	})

	t.Run("cancel mid-stream", func(t *testing.T) {
		cctx, cancel := context.WithCancel(call)
		defer cancel()
		s, err := conn.NewStream(cctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/"+echoService+"/Bidi", grpc.CallContentSubtype("raw"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := []byte(strconv.Itoa(i))
			if err := s.SendMsg(&msg); err != nil {
				t.Fatal(err)
			}
			if err := s.RecvMsg(&msg); err != nil {
				t.Fatal(err)
			}
		}
		cancelled := time.Now()
		cancel()
		var msg []byte
		wantCode(t, s.RecvMsg(&msg), codes.Canceled, "")
		var seen time.Time
		testutil.WaitFor(t, 10*time.Second, func() error {
			b, _ := os.ReadFile(logPath)
			for line := range strings.Lines(string(b)) {
				if ns, ok := strings.CutPrefix(strings.TrimSpace(line), "cancelled "); ok {
					n, _ := strconv.ParseInt(ns, 10, 64)
					seen = time.Unix(0, n)
					return nil
				}
			}
			return errors.New("the function has not seen its stream cancelled")
		})
		if d := seen.Sub(cancelled); d > time.Second {
			t.Fatalf("the function saw the cancel %s after the caller, want within 1s", d)
		}
		// The slot is free again: nothing hangs.
		if out, err := unary(call, conn, "Unary", "after"); err != nil || out != "echo:after" {
			t.Fatalf("a call after the cancel: %q, %v", out, err)
		}
	})

	t.Run("a caller whose end trails the answer", func(t *testing.T) {
		// A raw HTTP/2 gRPC call that sends its message but holds its end
		// of the stream open: the function answers the unary call anyway,
		// and the answer must free the one slot at once, not when the
		// caller's end comes (here: never) or a keepalive gives up.
		var h2c http.Protocols
		h2c.SetUnencryptedHTTP2(true)
		hc := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
		t.Cleanup(hc.CloseIdleConnections)
		body, hold := io.Pipe()
		t.Cleanup(func() { hold.Close() })
		// Bounded, so that an answer that never comes fails here and
		// says so instead of hanging the package until its timeout.
		within, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(within, http.MethodPost, "http://"+p.GRPCAddr()+"/"+echoService+"/Unary", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc+raw")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Function-Id", fn.ID)
		req.Header.Set("Authorization", "Bearer "+key)
		go func() { _, _ = hold.Write([]byte{0, 0, 0, 0, 4, 'h', 'e', 'l', 'd'}) }() // one length-prefixed message
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("no answer while the caller's end is open: %v", err)
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !strings.HasSuffix(string(answer), "echo:held") || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("answer %q, %v, trailers %v", answer, err, resp.Trailer)
		}
		quick, cancel := context.WithTimeout(call, 5*time.Second)
		defer cancel()
		if out, err := unary(quick, conn, "Unary", "next"); err != nil || out != "echo:next" {
			t.Fatalf("the next call, with the held stream's end still open: %q, %v", out, err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		admin := p.c
		narrow, err := admin.CreateAPIKey(ctx, model.APIKeyRequest{Description: "no invoke",
			Authorizations: &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{{Scopes: []string{"list_functions"}}}}},
			client.KeyIssuer{})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := admin.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := client.New(p.URL(), tok.Value).CreateFunction(ctx, grpcFunction(t, "theirs", logPath))
		if err != nil {
			t.Fatal(err)
		}
		httpFn, err := admin.CreateFunction(ctx, selfFunction(t, "plain-http", "echo"))
		if err != nil {
			t.Fatal(err)
		}
		idle, err := admin.CreateFunction(ctx, grpcFunction(t, "not-deployed", logPath))
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			ctx    context.Context
			code   codes.Code
			detail string
		}{
			{"wrong key", callCtx(ctx, fn.ID, "", "nvapi-not-a-key"), codes.Unauthenticated, "not accepted"},
			{"no key", callCtx(ctx, fn.ID, "", ""), codes.Unauthenticated, "missing credential"},
			{"key without invoke_function", callCtx(ctx, fn.ID, "", narrow.Value), codes.PermissionDenied, "invoke_function"},
			{"no function-id", callCtx(ctx, "", "", key), codes.InvalidArgument, "missing function-id"},
			{"malformed function-id", callCtx(ctx, "../etc", "", key), codes.InvalidArgument, "function-id"},
			{"malformed function-version-id", callCtx(ctx, fn.ID, "v 1", key), codes.InvalidArgument, "function-version-id"},
			{"unknown function", callCtx(ctx, "no-such-function", "", key), codes.NotFound, "not found"},
			{"another account's function", callCtx(ctx, theirs.ID, "", key), codes.NotFound, "not found"},
			{"a function that does not serve gRPC", callCtx(ctx, httpFn.ID, "", key), codes.FailedPrecondition, "does not serve gRPC"},
			{"not deployed", callCtx(ctx, idle.ID, "", key), codes.Unavailable, "not deployed"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := unary(tc.ctx, conn, "Unary", "x")
				wantCode(t, err, tc.code, tc.detail)
			})
		}
	})
}

// TestGRPCOverTLS serves the gRPC listener with a certificate: the same
// call over TLS, HTTP/2 negotiated by ALPN.
func TestGRPCOverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t)
	p, fn, key, _ := startGRPCPlatform(t, func(c *dev.Config) {
		c.GRPC.CertFile, c.GRPC.KeyFile = certFile, keyFile
	})
	conn := dial(t, p.GRPCAddr(), credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	out, err := unary(callCtx(testutil.Context(t), fn.ID, "", key), conn, "Unary", "over tls")
	if err != nil || out != "echo:over tls" {
		t.Fatalf("Unary over TLS: %q, %v", out, err)
	}
	plain := dial(t, p.GRPCAddr(), insecure.NewCredentials())
	if _, err := unary(callCtx(testutil.Context(t), fn.ID, "", key), plain, "Unary", "x"); status.Code(err) != codes.Unavailable {
		t.Fatalf("h2c to the TLS listener: %v, want Unavailable (no connection)", err)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns a pool that trusts it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
