package controlplane

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/bus"
)

// TestBusTLSOnlyLoopbackPlaintext: without TLS files, a NATS or MQTT
// listener beyond loopback is refused with what to do, unless
// NATSInsecure, which warns; loopback needs nothing; TLS files are loaded
// and their errors returned.
func TestBusTLSOnlyLoopbackPlaintext(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		listen    string
		mqtt      string
		insecure  bool
		files     bus.TLSFiles
		wantErr   string
		wantWarns bool
	}{
		{name: "loopback", listen: "127.0.0.1:4222", mqtt: "127.0.0.1:1883"},
		{name: "localhost", listen: "localhost:4222", mqtt: "[::1]:1883"},
		{name: "every interface", listen: "0.0.0.0:4222", wantErr: "NATS on 0.0.0.0:4222 would listen beyond loopback without TLS"},
		{name: "empty host", listen: ":4222", wantErr: "--nats-insecure"},
		{name: "MQTT beyond loopback", listen: "127.0.0.1:4222", mqtt: "0.0.0.0:1883", wantErr: "MQTT on 0.0.0.0:1883"},
		{name: "insecure on purpose", listen: "0.0.0.0:4222", mqtt: "10.1.2.3:1883", insecure: true, wantWarns: true},
		{name: "TLS files are loaded", listen: "0.0.0.0:4222", files: bus.TLSFiles{Cert: "/nonexistent/tls.crt", Key: "/nonexistent/tls.key"}, wantErr: "reading --nats-tls-cert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil)), cfg: Config{NATSListen: tc.listen, NATSInsecure: tc.insecure,
				NATSTLS: tc.files, Events: Events{MQTTListen: tc.mqtt}}}
			host, _, err := splitHostPort(tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := s.busTLS(host)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v: want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg != nil {
				t.Fatalf("busTLS = %v, %v; want plaintext", cfg, err)
			}
			if warned := strings.Contains(logs.String(), "PLAINTEXT"); warned != tc.wantWarns {
				t.Fatalf("warned %v, want %v: %s", warned, tc.wantWarns, logs.String())
			}
		})
	}
}
