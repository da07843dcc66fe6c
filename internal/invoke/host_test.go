package invoke

import "testing"

func TestParseInvocationHost(t *testing.T) {
	const fn, ver = "0b1c2d3e-aaaa-bbbb-cccc-123456789012", "9f8e7d6c-aaaa-bbbb-cccc-123456789012"
	for _, tc := range []struct {
		host        string
		fn, version string
		ok          bool
	}{
		{fn + ".invocation.api.example.com", fn, "", true},
		{fn + ".invocation.localhost:8080", fn, "", true},
		{ver + "." + fn + ".invocation.example.com", fn, ver, true},
		{"api.example.com", "", "", false},
		{"invocation.example.com", "", "", false},
		{fn + ".invocation", "", "", false},
		{"a.b." + fn + ".invocation.example.com", "", "", false},
		{"bad_id!.invocation.example.com", "", "", false},
		{"127.0.0.1:8080", "", "", false},
		{"[::1]:8080", "", "", false},
	} {
		f, v, ok := ParseInvocationHost(tc.host)
		if f != tc.fn || v != tc.version || ok != tc.ok {
			t.Errorf("ParseInvocationHost(%q) = %q, %q, %v", tc.host, f, v, ok)
		}
	}
}

// FuzzParseInvocationHost checks that any Host header parses without panic
// and yields only ids that are safe NATS subject tokens.
func FuzzParseInvocationHost(f *testing.F) {
	for _, s := range []string{"fn.invocation.example.com", "v.fn.invocation.x:1", "[::1]:80", "", ".invocation.", "a..invocation.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		fn, ver, ok := ParseInvocationHost(host)
		if !ok {
			return
		}
		for _, id := range []string{fn, ver} {
			for _, c := range id {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
					t.Fatalf("unsafe id %q from host %q", id, host)
				}
			}
		}
		if fn == "" {
			t.Fatalf("ok without a function id from %q", host)
		}
	})
}
