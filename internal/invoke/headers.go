package invoke

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
)

// hopHeaders are not forwarded to functions: they describe this connection,
// carry the caller's credential, or are ours to set.
var hopHeaders = map[string]bool{
	"Authorization": true, "Connection": true, "Keep-Alive": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Host": true, "Nvcf-Poll-Seconds": true, "Function-Id": true, "Function-Version-Id": true,
}

// stripped reports whether a caller header must not reach the function:
// hop-by-hop ones, and our own control headers, which a caller must not spoof.
func stripped(name string) bool {
	return hopHeaders[name] || strings.HasPrefix(name, "Gantry-") || strings.HasPrefix(name, "Nvcf-")
}

// setNVCFHeaders sets the NVCF-* headers that describe the call and its
// caller, as NVCF sets them (callers cannot spoof them: theirs are
// stripped). The worker adds those that describe where the call runs
// (backend, instance type, region, env, the request's directories).
func setNVCFHeaders(hdr nats.Header, p auth.Principal, e catalog.Entry, reqID string) {
	f := e.Function
	hdr.Set("NVCF-REQID", reqID)
	hdr.Set("NVCF-NCAID", p.Account)
	hdr.Set("NVCF-SUB", p.Subject)
	hdr.Set("NVCF-FUNCTION-ID", f.ID)
	hdr.Set("NVCF-FUNCTION-NAME", f.Name)
	hdr.Set("NVCF-FUNCTION-VERSION-ID", f.VersionID)
	hdr.Set("NVCF-MAX-RESPONSE-SIZE-BYTES", strconv.Itoa(bus.MaxResponseBody))
}

// answerHeader sets the caller's response header from the function's answer
// (minus our control and hop-by-hop headers) and the NVCF ones, and returns
// the status to write: the function's, or 502 when the worker had none.
func answerHeader(h, from http.Header, status int, reqID string) int {
	for k, vs := range from {
		if !strings.HasPrefix(k, "Gantry-") && !hopHeaders[k] {
			h[k] = vs
		}
	}
	nvcfStatus := statusFulfilled
	if from.Get(bus.HeaderError) != "" || status == 0 {
		nvcfStatus = statusErrored
	}
	if status == 0 {
		status = http.StatusBadGateway
	}
	// Canonical keys set directly: Header.Set would canonicalize (and
	// allocate) them on every call; the fixed values are shared.
	h["Nvcf-Reqid"] = []string{reqID}
	if nvcfStatus == statusFulfilled {
		h["Nvcf-Status"] = fulfilledValue
	} else {
		h["Nvcf-Status"] = []string{nvcfStatus}
	}
	h["Access-Control-Expose-Headers"] = exposeValue
	return status
}

// The answer header's fixed values, shared by every answer (net/http only
// reads them).
var (
	fulfilledValue = []string{statusFulfilled}
	exposeValue    = []string{"NVCF-REQID, NVCF-STATUS"}
)
