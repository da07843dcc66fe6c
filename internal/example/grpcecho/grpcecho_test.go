package grpcecho

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestEcho(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer()
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", h, err)
	}
	in, out := []byte("hello"), []byte(nil)
	if err := conn.Invoke(ctx, "/"+Service+"/Unary", &in, &out, grpc.CallContentSubtype("raw")); err != nil || string(out) != "hello" {
		t.Fatalf("Unary: %q, %v", out, err)
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/"+Service+"/Bidi", grpc.CallContentSubtype("raw"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "bb", "ccc"} {
		msg := []byte(m)
		if err := st.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var reply []byte
		if err := st.RecvMsg(&reply); err != nil || string(reply) != m {
			t.Fatalf("Bidi reply %q, %v; want %q", reply, err, m)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var extra []byte
	if err := st.RecvMsg(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
	if _, err := (Codec{}).Marshal("not bytes"); err == nil {
		t.Fatal("the raw codec marshalled a string")
	}
}
