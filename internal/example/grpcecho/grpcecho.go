// Package grpcecho is Gantry's built-in example gRPC function: a grpc-go
// server, as NVCF's gRPC functions are, serving grpc.health.v1 and
// gantry.example.Echo, a service of raw bytes (content subtype "raw"), so
// that a fresh install, the benchmarks and anyone trying gRPC invocation
// have a gRPC function without protoc or a container image. Deploy it with
// inferenceUrl /grpc, NVCF's mark of a gRPC function.
package grpcecho

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Service is the echo service's full name; its methods are /<Service>/Unary
// (answers the request as it came) and /<Service>/Bidi (answers each
// message of a bidirectional stream as it comes).
const Service = "gantry.example.Echo"

// DefaultAddr is where Run listens when neither an address nor $PORT is
// given: NVCF's gRPC examples serve on 8001.
const DefaultAddr = "127.0.0.1:8001"

// Codec passes messages through as bytes (*[]byte on both sides). It is
// registered under its name, "raw": a client calls with
// grpc.CallContentSubtype("raw").
type Codec struct{}

// Marshal returns the bytes *v holds.
func (Codec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("grpcecho: the raw codec marshals *[]byte, not %T", v)
	}
	return *b, nil
}

// Unmarshal copies data into *v.
func (Codec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("grpcecho: the raw codec unmarshals into *[]byte, not %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Name is the codec's content subtype.
func (Codec) Name() string { return "raw" }

func init() { encoding.RegisterCodec(Codec{}) }

var desc = grpc.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Unary",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return &in, nil
		}}},
	Streams: []grpc.StreamDesc{{StreamName: "Bidi", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			var m []byte
			for {
				if err := s.RecvMsg(&m); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := s.SendMsg(&m); err != nil {
					return err
				}
			}
		}}},
}

// NewServer is a gRPC server with the health and echo services.
func NewServer() *grpc.Server {
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	s.RegisterService(&desc, struct{}{})
	return s
}

// Run serves on addr (default ":"+$PORT, the port the process runtime
// gives each instance, else DefaultAddr) until ctx ends.
func Run(ctx context.Context, addr string) error {
	if addr == "" {
		addr = DefaultAddr
		if port := os.Getenv("PORT"); port != "" {
			addr = ":" + port
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("grpcecho: %w", err)
	}
	s := NewServer()
	stop := context.AfterFunc(ctx, s.Stop)
	defer stop()
	if err := s.Serve(l); err != nil && ctx.Err() == nil {
		return fmt.Errorf("grpcecho: %w", err)
	}
	return nil
}
