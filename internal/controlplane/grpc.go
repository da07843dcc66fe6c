package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultGRPCPort is where NVCF's self-hosted gateway takes gRPC calls.
const DefaultGRPCPort = 10081

// GRPC configures the gRPC invocation listener, NVCF's gRPC endpoint:
// clients call their function's own service there with function-id
// metadata (docs/api.md, "gRPC invocation").
type GRPC struct {
	// Listen is its address (host:port; port 0: random); empty serves no
	// gRPC.
	Listen string
	// CertFile and KeyFile, both or neither, serve it over TLS (HTTP/2
	// negotiated by ALPN); without them it speaks h2c, HTTP/2 without TLS,
	// as NVCF's self-hosted port 10081 does.
	CertFile, KeyFile string
}

func (c GRPC) validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("controlplane: gRPC over TLS needs both a certificate and a key file (--grpc-tls-cert-file, --grpc-tls-key-file)")
	}
	if c.CertFile != "" && c.Listen == "" {
		return errors.New("controlplane: gRPC TLS files were given but no gRPC listen address")
	}
	return nil
}

// grpcListener is the running gRPC listener.
type grpcListener struct {
	srv *http.Server
	l   net.Listener
}

// startGRPC opens the gRPC listener, when configured. Every request there
// is a gRPC call, so the handler is the gateway's alone: no API route, no
// problem bodies.
func (s *Server) startGRPC() error {
	c := s.cfg.GRPC
	if c.Listen == "" {
		return nil
	}
	var tlsConfig *tls.Config
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return fmt.Errorf("controlplane: gRPC TLS: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("controlplane: gRPC listen on %s: %w (pick another address with --grpc-listen, or --grpc-listen '' to serve no gRPC)", c.Listen, err)
	}
	var protocols http.Protocols
	if tlsConfig != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           s.gateway.GRPC(),
		Protocols:         &protocols,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		// NVCF keeps an idle gRPC connection 30 s.
		IdleTimeout: 30 * time.Second,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.grpc = &grpcListener{srv: srv, l: l}
	go func() {
		var err error
		if tlsConfig != nil {
			err = srv.ServeTLS(l, "", "")
		} else {
			err = srv.Serve(l)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("controlplane: gRPC server stopped", "err", err)
		}
	}()
	return nil
}

// GRPCAddr is the gRPC listener's address (host:port), or "" when it
// serves no gRPC.
func (s *Server) GRPCAddr() string {
	if s.grpc == nil {
		return ""
	}
	return s.grpc.l.Addr().String()
}

// GRPCTLS reports whether the gRPC listener serves TLS.
func (s *Server) GRPCTLS() bool { return s.cfg.GRPC.CertFile != "" }

// close stops taking gRPC calls and lets those in flight end (the gateway,
// closed first, has already ended their streams).
func (g *grpcListener) close() {
	if g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
}
