package controlplane_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/bussecrets"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestExternalNATSOverMTLS: with --nats-url, the --nats-tls-* files are the
// server's client side: it starts against an external NATS that requires
// mTLS when given the CA and a client certificate, and says what is missing
// when not.
func TestExternalNATSOverMTLS(t *testing.T) {
	t.Parallel()
	pki := t.TempDir()
	outs, err := bussecrets.Plan(bussecrets.Config{Hostnames: []string{"127.0.0.1"}, CPCs: []string{"hub-client"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bussecrets.WriteFiles(pki, outs); err != nil {
		t.Fatal(err)
	}
	p := func(rel string) string { return filepath.Join(pki, filepath.FromSlash(rel)) }
	srvTLS, err := bus.ServerTLS(bus.TLSFiles{Cert: p("csc/tls/tls.crt"), Key: p("csc/tls/tls.key"), CA: p("ca/ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	external, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), TLS: srvTLS}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { external.Close() })
	etcd := testutil.StartEtcdEndpoint(t)
	start := func(files bus.TLSFiles) error {
		s, err := controlplane.New(controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
			EtcdEndpoints: []string{etcd}, NATSURL: external.URL(), NATSTLS: files})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		defer s.Close()
		return s.Start(ctx)
	}
	if err := start(bus.TLSFiles{CA: p("ca/ca.crt"), Cert: p("cpc/hub-client/tls/tls.crt"), Key: p("cpc/hub-client/tls/tls.key")}); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	// With TLS 1.3 the server's refusal can arrive as its alert or, when the
	// client writes first, as a closed connection; either answer must say
	// to give a client certificate (bus's TestTLS accepts both too).
	if err := start(bus.TLSFiles{CA: p("ca/ca.crt")}); err == nil || !strings.Contains(err.Error(), "give --nats-tls-cert and --nats-tls-key") {
		t.Fatalf("without a client certificate: %v", err)
	}
}
