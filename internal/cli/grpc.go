package cli

import (
	"net"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/internal/controlplane"
)

// addGRPCFlags adds the gRPC invocation listener's flags, shared by gantry
// dev and gantry server, which differ in the host they listen on.
func addGRPCFlags(f *pflag.FlagSet, g *controlplane.GRPC, host string) {
	f.StringVar(&g.Listen, "grpc-listen", net.JoinHostPort(host, strconv.Itoa(controlplane.DefaultGRPCPort)),
		"gRPC invocation address (host:port; NVCF's self-hosted port is 10081); empty serves no gRPC")
	f.StringVar(&g.CertFile, "grpc-tls-cert-file", "", "certificate (PEM) to serve gRPC over TLS, with --grpc-tls-key-file; without them gRPC is h2c (HTTP/2 without TLS)")
	f.StringVar(&g.KeyFile, "grpc-tls-key-file", "", "private key (PEM) of --grpc-tls-cert-file")
}

// grpcEndpoint describes the gRPC listener for a banner.
func grpcEndpoint(addr string, tls bool) string {
	switch {
	case addr == "":
		return "off (--grpc-listen)"
	case tls:
		return addr + " (TLS)"
	}
	return addr + " (h2c; metadata function-id, authorization)"
}
