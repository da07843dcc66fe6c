package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"

	"github.com/gantry-dev/gantry/internal/problem"
)

// DefaultBodyLimit is the body size Decode allows when given a limit <= 0. A
// management body is small; the largest legitimate one is a function with a
// few dozen 32 KiB secrets.
const DefaultBodyLimit = 1 << 20

// Decode reads one JSON object from r into v, which must be a non-nil pointer
// to a struct. It reads at most limit bytes (DefaultBodyLimit when limit <= 0)
// and fails with 413 when the body is longer, so a handler never buffers an
// unbounded body; an *http.MaxBytesError from an http.MaxBytesReader wrapped
// around r is also reported as 413.
//
// Unknown fields are accepted and ignored: NVCF clients and SDKs send fields
// Gantry does not model (and fields newer than this server), and refusing them
// would break the promise that existing clients work unchanged. Field names
// match case-insensitively, as encoding/json does.
//
// On error v may be partly filled and must not be used. Every error is a
// *problem.Error, except when v is not a pointer, which is a programming error
// the API layer should report as a 500.
func Decode(r io.Reader, limit int64, v any) error {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	if r == nil {
		return problem.BadRequest("request body is empty; send a JSON object")
	}
	readLimit := limit
	if readLimit < math.MaxInt64 {
		readLimit++ // one byte more than allowed tells "exactly at the limit" from "over it"
	}
	data, err := io.ReadAll(io.LimitReader(r, readLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return problem.BadRequest("request body could not be read completely; send it again")
	}
	if int64(len(data)) > limit {
		return tooLarge(limit)
	}
	body := bytes.TrimLeft(data, " \t\r\n")
	if len(body) == 0 {
		return problem.BadRequest("request body is empty; send a JSON object")
	}
	if body[0] != '{' && json.Valid(body) {
		// Decoding null into a struct succeeds and decoding an array fails
		// with a type error naming no field; say what is wrong for both.
		return problem.BadRequest("request body must be a JSON object ({...}), got %s", jsonValueKind(body[0]))
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return decodeError(err, len(data))
	}
	rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")
	if len(rest) > 0 {
		return problem.BadRequest("request body has more data after the JSON object, at byte offset %d; send exactly one JSON object",
			int64(len(data)-len(rest)))
	}
	return nil
}

// tooLarge is the 413 for a body over limit bytes.
func tooLarge(limit int64) error {
	return problem.Errorf(http.StatusRequestEntityTooLarge,
		"request body is larger than the limit of %s; send a smaller body", byteSize(limit))
}

// byteSize renders n bytes for a message: exact, plus a unit when round.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d bytes (%d MiB)", n, n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d bytes (%d KiB)", n, n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// decodeError turns an encoding/json error into a 400 that names the place
// and what was expected. It never repeats string values from the body, which
// could be secrets.
func decodeError(err error, size int) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		inv *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the bad one included; report the
		// bad byte's zero-based offset, as the trailing-data message does.
		return problem.BadRequest("request body is not valid JSON: %s at byte offset %d", syn.Error(), max(syn.Offset-1, 0))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return problem.BadRequest("request body is not valid JSON: it ends after %d bytes, before the JSON object is complete", size)
	case errors.As(err, &typ):
		got := typ.Value
		if typ.Field == "" {
			return problem.BadRequest("request body must be a JSON object ({...}), got %s", got)
		}
		return problem.BadRequest("field %s must be %s, got %s", typ.Field, jsonTypeName(typ.Type), got)
	case errors.As(err, &inv):
		return fmt.Errorf("validate: decode target: %w", err)
	}
	return problem.BadRequest("request body could not be decoded as the expected JSON object")
}

// jsonValueKind names the JSON value that starts with byte c.
func jsonValueKind(c byte) string {
	switch c {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// jsonTypeName says which JSON value decodes into Go type t.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "a JSON value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer from %d to %d", minInt(t.Bits()), maxInt(t.Bits()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a JSON value"
}

func maxInt(bits int) int64 { return math.MaxInt64 >> (64 - bits) }
func minInt(bits int) int64 { return -maxInt(bits) - 1 }
