package bus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// LeaseGrant is a worker's answer to a gateway's ask on LeaseSubject: one of
// its slots, held by that gateway until released or no longer renewed, and
// what the gateway needs to call the instance on it directly.
type LeaseGrant struct {
	// ID names the lease in LeaseControl messages.
	ID string `json:"id"`
	// Control is the worker's subject for LeaseControl requests.
	Control string `json:"control"`
	// Endpoint is the instance's base URL (scheme://host:port).
	Endpoint string `json:"endpoint"`
	// Header holds the NVCF-* request headers that describe where the call
	// runs (backend, instance type, region, env).
	Header map[string]string `json:"header,omitempty"`
	// AssetDir and LargeOutputDir are the instance's bases of the
	// per-request NVCF-ASSET-DIR and NVCF-LARGE-OUTPUT-DIR.
	AssetDir       string `json:"assetDir,omitempty"`
	LargeOutputDir string `json:"largeOutputDir,omitempty"`
	// GRPC says the instance serves gRPC: gRPC calls go to it over h2c.
	GRPC bool `json:"grpc,omitempty"`
}

// LeaseControl is what a gateway sends a worker's Control subject: the
// leases it still holds (a request; the worker answers LeaseDrop), or those
// it gives back (no answer).
type LeaseControl struct {
	Renew   []string `json:"renew,omitempty"`
	Release []string `json:"release,omitempty"`
}

// LeaseDrop answers a renewal: the leases of it the worker no longer
// honours (expired, or never its own), and those it wants back once their
// call ends (its instance is stopping, or queued calls wait for a slot).
type LeaseDrop struct {
	Unknown []string `json:"unknown,omitempty"`
	Revoked []string `json:"revoked,omitempty"`
	// Control names the worker when it revokes leases unasked, on the
	// holder's LeaseRevokeSubject.
	Control string `json:"control,omitempty"`
}

// LeaseRevokeSubject is where a worker tells the gateway that asked for a
// lease on reply (a subject of its ReplyPrefix) that it wants leases back
// (a LeaseDrop naming its Control): at once, not at the next renewal.
func LeaseRevokeSubject(reply string) string {
	i := strings.LastIndexByte(reply, '.')
	return reply[:i+1] + "revoke"
}

// StoreAnswer keeps a function's answer to a polled (202) call for the
// status route: inline in the results bucket up to MaxResponseBody, else
// streamed into LargeBucket under a fresh random name (so that a call run
// twice never meets its earlier attempt's object) with the record naming it.
// header carries HeaderStatus and the function's response headers.
func StoreAnswer(ctx context.Context, js jetstream.JetStream, reqID, account string, header http.Header, body io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(body, MaxResponseBody+1))
	if err != nil {
		return fmt.Errorf("bus: reading the answer to %s: %w", reqID, err)
	}
	status, _ := strconv.Atoi(header.Get(HeaderStatus))
	res := Result{Account: account, Status: status, Header: header, Body: b}
	if len(b) > MaxResponseBody {
		obs, err := js.ObjectStore(ctx, LargeBucket)
		if err != nil {
			return fmt.Errorf("bus: large results store: %w", err)
		}
		// Agents store answers too: no ModTime, which they may not read.
		info, err := putObject(ctx, js, obs, nuid.Next(), io.MultiReader(bytes.NewReader(b), body), false)
		if err != nil {
			return fmt.Errorf("bus: storing the large answer to %s: %w", reqID, err)
		}
		res.Body, res.Large, res.Size = nil, info.Name, int64(info.Size)
	}
	// The record is one small message: it gets its own bound, not what
	// is left of the hour a large answer may take.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, ResultSubject(reqID), res.Encode()); err != nil {
		return fmt.Errorf("bus: storing the answer to %s: %w", reqID, err)
	}
	return nil
}
