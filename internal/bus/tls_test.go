package bus_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/bussecrets"
)

// pkiForTest writes, with gen-secrets' own code, a CA, a server
// certificate for 127.0.0.1 and a client certificate of site "a" into a
// temporary directory, issued at now.
func pkiForTest(t *testing.T, now time.Time) string {
	t.Helper()
	dir := t.TempDir()
	outs, err := bussecrets.Plan(bussecrets.Config{Hostnames: []string{"127.0.0.1", "localhost"}, CPCs: []string{"a"}, Now: func() time.Time { return now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bussecrets.WriteFiles(dir, outs); err != nil {
		t.Fatal(err)
	}
	return dir
}

func serverFiles(dir string) bus.TLSFiles {
	return bus.TLSFiles{Cert: filepath.Join(dir, "csc/tls/tls.crt"), Key: filepath.Join(dir, "csc/tls/tls.key"), CA: filepath.Join(dir, "csc/tls/ca.crt")}
}

func clientFiles(dir string) bus.TLSFiles {
	return bus.TLSFiles{Cert: filepath.Join(dir, "cpc/a/tls/tls.crt"), Key: filepath.Join(dir, "cpc/a/tls/tls.key"), CA: filepath.Join(dir, "cpc/a/tls/ca.crt")}
}

// TestEmbeddedMTLS runs the embedded server with TLS and a client CA on its
// client and MQTT listeners: only a client that trusts the server's CA,
// presents a certificate of the server's CA and gives its credential
// connects; each refusal says why.
func TestEmbeddedMTLS(t *testing.T) {
	t.Parallel()
	pki, wrong := pkiForTest(t, time.Now()), pkiForTest(t, time.Now())
	tlsCfg, err := bus.ServerTLS(serverFiles(pki))
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), TLS: tlsCfg, MQTTListen: "127.0.0.1:0",
		Auth:  bus.NewAuthenticator(internalToken, newStaticVerifierForTest()),
		Users: usersForTest{"user-a-secret": {account: "acct-a"}}, UserSubjects: func(account string) []string { return []string{"gantry.events." + account + ".>"} },
	}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if !strings.HasPrefix(e.URL(), "tls://") {
		t.Fatalf("URL %s: want tls://, so that agents are told to speak TLS", e.URL())
	}
	// The control plane's own connection is in-process and needs no TLS.
	internal, err := e.Connect("internal")
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	internal.Close()

	good := clientFiles(pki)
	cases := []struct {
		name    string
		files   bus.TLSFiles
		token   string
		wantErr string // "" connects
	}{
		{"right CA, certificate and token", good, tokenA, ""},
		// The server's alert may be lost to the closed socket (TLS 1.3):
		// then the client says the server refused its certificate.
		{"no client certificate", bus.TLSFiles{CA: good.CA}, tokenA, "requires a client certificate|refused this client's certificate: give --nats-tls-cert"},
		{"client certificate of another CA", bus.TLSFiles{CA: good.CA, Cert: clientFiles(wrong).Cert, Key: clientFiles(wrong).Key}, tokenA, "refused this client's certificate"},
		{"server verified against another CA", bus.TLSFiles{CA: clientFiles(wrong).CA, Cert: good.Cert, Key: good.Key}, tokenA, "not signed by a CA this client trusts"},
		{"no CA: system roots", bus.TLSFiles{Cert: good.Cert, Key: good.Key}, tokenA, "give the CA that signed it with --nats-tls-ca"},
		{"a verified certificate alone does not authenticate", good, "", "Authorization Violation"},
		{"a verified certificate with a wrong token", good, "not-a-token", "Authorization Violation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts, err := bus.ClientOptions(tc.files)
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				opts = append(opts, bus.AgentOptions("a", tc.token)...)
			}
			opts = append(opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))
			nc, err := bus.Connect(e.URL(), "test", opts...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				if err := nc.Publish(bus.ReportSubject("a"), []byte("{}")); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatalf("connected; want refused with %q", tc.wantErr)
			}
			if !containsAny(err.Error(), strings.Split(tc.wantErr, "|")) {
				t.Fatalf("error %q: want it to say %q", err, tc.wantErr)
			}
			t.Logf("refused: %v", err)
		})
	}

	// Plaintext to the TLS listener: the client is told TLS is required,
	// and its handshake fails against the system roots.
	if nc, err := nats.Connect(strings.Replace(e.URL(), "tls://", "nats://", 1), bus.AgentOptions("a", tokenA)...); err == nil {
		nc.Close()
		t.Fatal("a plaintext client connected to the TLS listener")
	}

	// MQTT: the same TLS and client CA.
	mqttConnect := func(files bus.TLSFiles) error {
		cfg, err := bus.ClientTLS(files)
		if err != nil {
			return err
		}
		o := mqtt.NewClientOptions().AddBroker("ssl://" + e.MQTTAddr()).SetClientID("tls-test").SetTLSConfig(cfg).
			SetUsername("anyone").SetPassword("user-a-secret").SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false)
		c := mqtt.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return errors.New("MQTT connect timed out")
		}
		if tok.Error() == nil {
			c.Disconnect(100)
		}
		return tok.Error()
	}
	if err := mqttConnect(good); err != nil {
		t.Fatalf("MQTT over mTLS with the right certificate: %v", err)
	}
	if err := mqttConnect(bus.TLSFiles{CA: good.CA}); err == nil {
		t.Fatal("MQTT without a client certificate connected")
	}
	if err := mqttConnect(bus.TLSFiles{CA: good.CA, Cert: clientFiles(wrong).Cert, Key: clientFiles(wrong).Key}); err == nil {
		t.Fatal("MQTT with a client certificate of another CA connected")
	}
	raw, err := tls.Dial("tcp", e.MQTTAddr(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("TLS to MQTT without a certificate: %v; want the server to require one", err)
	}
}

// TestTLSWithoutClientCA: with a certificate and no CA the listener speaks
// TLS and asks for no client certificate; the token still decides.
func TestTLSWithoutClientCA(t *testing.T) {
	t.Parallel()
	pki := pkiForTest(t, time.Now())
	files := serverFiles(pki)
	files.CA = ""
	tlsCfg, err := bus.ServerTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), TLS: tlsCfg, Auth: bus.NewAuthenticator(internalToken, newStaticVerifierForTest())}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	opts, err := bus.ClientOptions(bus.TLSFiles{CA: clientFiles(pki).CA})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(e.URL(), "test", append(opts, bus.AgentOptions("a", tokenA)...)...)
	if err != nil {
		t.Fatalf("TLS without a client certificate: %v", err)
	}
	nc.Close()
	// Asking for TLS from a plaintext server says so.
	plain, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), Auth: bus.NewAuthenticator(internalToken, newStaticVerifierForTest())}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	if nc, err := bus.Connect(plain.URL(), "test", append(opts, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("a TLS client connected to a plaintext server")
	} else if !strings.Contains(err.Error(), "does not speak TLS") {
		t.Fatalf("error %q: want it to say the server does not speak TLS", err)
	}
}

// TestTLSFileErrors: each mistake with the files is refused before anything
// listens, with the flag and file at fault, and never a byte of the key.
func TestTLSFileErrors(t *testing.T) {
	t.Parallel()
	pki := pkiForTest(t, time.Now())
	expired := pkiForTest(t, time.Now().Add(-bussecrets.CertValidity-time.Hour))
	good := serverFiles(pki)
	key, err := os.ReadFile(good.Key)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := clientFiles(pki).Key
	notPEM := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files bus.TLSFiles
		want  string
	}{
		{"key missing", bus.TLSFiles{Cert: good.Cert}, "--nats-tls-cert and --nats-tls-key go together"},
		{"key file absent", bus.TLSFiles{Cert: good.Cert, Key: good.Key + ".nope"}, "reading --nats-tls-key"},
		{"certificate given as the key", bus.TLSFiles{Cert: good.Cert, Key: good.Cert}, "holds no PEM private key"},
		{"key of another certificate", bus.TLSFiles{Cert: good.Cert, Key: otherKey}, "are they a pair?"},
		{"key given as the certificate", bus.TLSFiles{Cert: good.Key, Key: good.Key}, "holds no PEM CERTIFICATE"},
		{"expired certificate", serverFiles(expired), "expired at"},
		{"CA not PEM", bus.TLSFiles{Cert: good.Cert, Key: good.Key, CA: notPEM}, "--nats-tls-ca " + notPEM + " holds no PEM certificate"},
	}
	keyBody := strings.TrimSpace(strings.Split(string(key), "\n")[1])
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := bus.ServerTLS(tc.files)
			if err == nil || !errors.Is(err, bus.ErrTLSConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want ErrTLSConfig saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), keyBody) || strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("the error quotes key material: %v", err)
			}
		})
	}
	if _, err := bus.ClientTLS(bus.TLSFiles{Key: good.Key}); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("a client key without its certificate: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{"127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true, "localhost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "nats.example.com": false} {
		if got := bus.IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
