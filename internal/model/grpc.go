package model

import "strings"

// GRPCInferenceURL is the inferenceUrl by which NVCF marks a function that
// serves gRPC on its inferencePort.
const GRPCInferenceURL = "/grpc"

// ServesGRPC reports whether a function answers gRPC on its inference port:
// NVCF marks such a function with inferenceUrl "/grpc", and a gRPC health
// check says the same, since NVCF has a gRPC function serve its health on
// that port. Gantry's gRPC listener calls only these functions, and the
// agent calls their instances over HTTP/2 without TLS (h2c).
func ServesGRPC(inferenceURL, healthProtocol string) bool {
	return inferenceURL == GRPCInferenceURL || strings.EqualFold(healthProtocol, "grpc")
}

// ServesGRPC reports whether the function serves gRPC (see the package
// function of that name).
func (f Function) ServesGRPC() bool {
	protocol := ""
	if f.Health != nil {
		protocol = f.Health.Protocol
	}
	return ServesGRPC(f.InferenceURL, protocol)
}

// ServesGRPC reports whether the instance's function serves gRPC.
func (d DesiredInstance) ServesGRPC() bool { return ServesGRPC(d.InferenceURL, d.Health.Protocol) }
