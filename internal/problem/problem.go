// Package problem writes RFC 9457 problem details, the one error shape every
// Gantry HTTP endpoint returns. Handlers return *Error values; the API layer
// turns anything else into a generic 500 whose body never carries the
// internal error text (it could hold a secret).
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem body.
const ContentType = "application/problem+json"

// Error is an API error with the HTTP status and the message a user sees.
type Error struct {
	Status int
	// Detail says what went wrong and, where possible, what to do next.
	Detail string
	// RetryAfter, when positive, is sent as a Retry-After header in seconds.
	RetryAfter int
	// Headers are extra response headers, e.g. NVCF-REQID on invocation errors.
	Headers map[string]string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
}

// Errorf builds an *Error with a formatted detail.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Detail: fmt.Sprintf(format, args...)}
}

// BadRequest, NotFound, Conflict and friends are shorthands for common statuses.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// NotFound builds a 404 problem.
func NotFound(format string, args ...any) *Error { return Errorf(http.StatusNotFound, format, args...) }

// Conflict builds a 409 problem.
func Conflict(format string, args ...any) *Error { return Errorf(http.StatusConflict, format, args...) }

// Unavailable builds a 503 problem with a Retry-After hint.
func Unavailable(retryAfter int, format string, args ...any) *Error {
	e := Errorf(http.StatusServiceUnavailable, format, args...)
	e.RetryAfter = retryAfter
	return e
}

// Body is the JSON document of RFC 9457, with NVCF's requestId extension.
type Body struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// TypeURI returns the problem type URI for a status, stable for clients to
// branch on.
func TypeURI(status int) string {
	return "urn:gantry:problem:" + strconv.Itoa(status)
}

// Write sends err as a problem body. Errors that are not *Error become a 500
// with a generic detail; the caller is expected to have logged them.
func Write(w http.ResponseWriter, r *http.Request, requestID string, err error) {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = &Error{Status: http.StatusInternalServerError,
			Detail: "internal error; the server log has the details under this requestId"}
	}
	h := w.Header()
	for k, v := range pe.Headers {
		h.Set(k, v)
	}
	if pe.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(pe.RetryAfter))
	}
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(pe.Status)
	b := Body{
		Type:      TypeURI(pe.Status),
		Title:     http.StatusText(pe.Status),
		Status:    pe.Status,
		Detail:    pe.Detail,
		RequestID: requestID,
	}
	if r != nil {
		b.Instance = r.URL.Path
	}
	_ = json.NewEncoder(w).Encode(b)
}
