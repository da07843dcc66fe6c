package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// fuzzLimit is small so that the fuzzer also reaches the 413 path.
const fuzzLimit = 4096

// Seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzDecodeFunction(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.CreateFunctionRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		// Replace every secret value by a marker of the same length that no
		// decoded field can contain (decoding turns invalid UTF-8 into
		// U+FFFD), so the rules see the same lengths and any echo shows.
		for i := range req.Secrets {
			req.Secrets[i].Value = strings.Repeat("\xff", len(req.Secrets[i].Value))
		}
		err = Function(&req)
		wantClientError(t, err)
		if err != nil {
			msg := err.(*problem.Error).Detail
			if strings.Contains(msg, "\xff") || (!bytes.Contains(data, []byte("xff")) && strings.Contains(msg, `\xff`)) {
				t.Fatalf("detail echoes a secret value: %q", msg)
			}
			return
		}
		if req.APIBodyFormat == "" || req.FunctionType == "" {
			t.Fatalf("defaults not applied: %+v", req)
		}
		if req.Health != nil && (req.Health.Protocol == "" || req.Health.Timeout == "" || req.Health.ExpectedStatusCode == 0) {
			t.Fatalf("health defaults not applied: %+v", *req.Health)
		}
		// Function writes only top-level fields and *Health, so this copy
		// is deep enough to see a second pass change anything.
		again := req
		if req.Health != nil {
			h := *req.Health
			again.Health = &h
		}
		if err := Function(&again); err != nil {
			t.Fatalf("a normalised request fails the second time: %v", err)
		}
		if !reflect.DeepEqual(again, req) {
			t.Fatalf("normalising twice changed the request:\n%+v\n%+v", again, req)
		}
	})
}

func FuzzDecodeDeployment(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.DeploymentRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		before := cloneJSON(t, &req)
		err = Deployment(&req)
		wantClientError(t, err)
		if !reflect.DeepEqual(cloneJSON(t, &req), before) {
			t.Fatal("Deployment changed the request")
		}
		if err != nil {
			return
		}
		for i, s := range req.Specs {
			checkSpecInvariants(t, fmt.Sprintf("spec %d", i), s)
		}
	})
}

func FuzzGPUSpecPatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, curMin, curMax, curConc int) {
		var p model.GPUSpecPatch
		err := Decode(bytes.NewReader(data), fuzzLimit, &p)
		wantClientError(t, err)
		if err != nil {
			return
		}
		cur := model.GPUSpec{ID: "spec-1", GPU: "H100", InstanceType: "ON-PREM.GPU.H100_1x",
			MinInstances: curMin, MaxInstances: curMax, Backend: "lab", Clusters: []string{"c1"}}
		if curConc != 0 { // 0 stands for "not set"
			cur.MaxRequestConcurrency = model.Int(curConc)
		}
		got, err := GPUSpecPatch(&p, cur)
		wantClientError(t, err)
		if cur.Clusters[0] != "c1" || cur.MinInstances != curMin || cur.MaxInstances != curMax {
			t.Fatal("GPUSpecPatch changed current")
		}
		if err != nil {
			return
		}
		checkSpecInvariants(t, "patched spec", got)
		want := cur
		if p.MinInstances != nil {
			want.MinInstances = *p.MinInstances
		}
		if p.MaxInstances != nil {
			want.MaxInstances = *p.MaxInstances
		}
		if p.MaxRequestConcurrency != nil {
			want.MaxRequestConcurrency = model.Int(*p.MaxRequestConcurrency)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("GPUSpecPatch = %+v, want %+v", got, want)
		}
	})
}

func FuzzParseISODuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseISODuration(s)
		wantClientError(t, err)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseISODuration(%q) = %v with an error", s, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseISODuration(%q) = %v, negative", s, d)
		}
		// Whatever parses can be written back in seconds and parses the same.
		back := fmt.Sprintf("PT%d.%09dS", d/time.Second, d%time.Second)
		if d2, err := ParseISODuration(back); err != nil || d2 != d {
			t.Fatalf("ParseISODuration(%q) = %v, but %q gives %v, %v", s, d, back, d2, err)
		}
	})
}

func FuzzPollSeconds(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		const def = 60
		n, err := PollSeconds(header, def)
		wantClientError(t, err)
		if err != nil {
			return
		}
		v := strings.TrimSpace(header)
		if v == "" {
			if n != def {
				t.Fatalf("PollSeconds(%q) = %d, want the default %d", header, n, def)
			}
			return
		}
		if n < MinPollSeconds || n > MaxPollSeconds {
			t.Fatalf("PollSeconds(%q) = %d, out of range", header, n)
		}
		if strings.TrimLeft(v, "0") != strconv.Itoa(n) {
			t.Fatalf("PollSeconds(%q) = %d, which is not what the header says", header, n)
		}
	})
}

// checkSpecInvariants fails unless s obeys the rules a valid spec must.
func checkSpecInvariants(t *testing.T, what string, s model.GPUSpec) {
	t.Helper()
	if s.GPU == "" || s.MinInstances < 0 || s.MaxInstances <= 0 || s.MaxInstances < s.MinInstances ||
		s.MaxInstances > MaxSpecInstances || (s.MaxRequestConcurrency != nil && (*s.MaxRequestConcurrency < 1 || *s.MaxRequestConcurrency > MaxRequestConcurrency)) {
		t.Fatalf("%s passed validation but breaks the rules: %+v", what, s)
	}
	if s.InstanceType != "" {
		if m, _, ok := model.ParseInstanceTypeName(s.InstanceType); !ok || m != s.GPU {
			t.Fatalf("%s passed validation with instanceType %q for gpu %q", what, s.InstanceType, s.GPU)
		}
	}
}

// cloneJSON deep-copies v through JSON, which is how requests arrive.
func cloneJSON[T any](t *testing.T, v *T) *T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return out
}

// TestSeedsNamedValidPass keeps the seed corpora meaningful: a body seed whose
// file name starts with "valid_" must decode and validate.
func TestSeedsNamedValidPass(t *testing.T) {
	t.Parallel()
	check := map[string]func(data []byte) error{
		"FuzzDecodeFunction": func(data []byte) error {
			var req model.CreateFunctionRequest
			if err := Decode(bytes.NewReader(data), fuzzLimit, &req); err != nil {
				return err
			}
			return Function(&req)
		},
		"FuzzDecodeDeployment": func(data []byte) error {
			var req model.DeploymentRequest
			if err := Decode(bytes.NewReader(data), fuzzLimit, &req); err != nil {
				return err
			}
			return Deployment(&req)
		},
	}
	for fuzzer, fn := range check {
		names, err := filepath.Glob(filepath.Join("testdata", "fuzz", fuzzer, "valid_*"))
		if err != nil || len(names) == 0 {
			t.Fatalf("no valid_ seeds for %s (%v)", fuzzer, err)
		}
		for _, name := range names {
			t.Run(fuzzer+"/"+filepath.Base(name), func(t *testing.T) {
				raw, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
				if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
					!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
					t.Fatalf("unexpected seed format: %q", raw)
				}
				body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
				if err != nil {
					t.Fatalf("seed literal: %v", err)
				}
				if err := fn([]byte(body)); err != nil {
					t.Errorf("seed is named valid but fails: %v", err)
				}
			})
		}
	}
}
