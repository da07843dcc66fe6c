package bus

import (
	"encoding/json"
	"net/http"
)

// Result is what the results bucket holds for a request whose caller stopped
// waiting: first a pending marker written by the gateway, then the
// function's answer written by the worker. Account guards who may read it.
type Result struct {
	Account string      `json:"account"`
	Pending bool        `json:"pending,omitempty"`
	Status  int         `json:"status,omitempty"`
	Header  http.Header `json:"header,omitempty"`
	Body    []byte      `json:"body,omitempty"`
	// Large names the object in LargeBucket that holds a body too large
	// for the record (Size bytes); Body is then empty.
	Large string `json:"large,omitempty"`
	Size  int64  `json:"size,omitempty"`
	// A pending marker also says which function version the call is for
	// and, when it waits in the work queue, its stream sequence there, so
	// its queue position can be told.
	Function string `json:"function,omitempty"`
	Version  string `json:"version,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
}

// Encode serialises r for the bucket.
func (r Result) Encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// DecodeResult parses a bucket value.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	err := json.Unmarshal(b, &r)
	return r, err
}
