package bus

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// TLSFiles names the PEM files of one side of a TLS connection to NATS. On
// the embedded server's listeners Cert and Key are the server's certificate
// and key, and CA, when set, is the bundle client certificates must chain
// to (mTLS). On a client (an agent, or the control plane on an external
// NATS) CA is the bundle the server's certificate must chain to (empty: the
// system roots) and Cert and Key, when set, its client certificate.
type TLSFiles struct {
	Cert, Key, CA string
}

// IsZero reports whether no file is named.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// ErrTLSConfig prefixes every problem with the TLS files, so that callers
// can tell a configuration mistake from a network failure.
var ErrTLSConfig = errors.New("bus: TLS")

// ServerTLS builds the tls.Config of the embedded server's listeners from f:
// its certificate (required, and not expired) and, with f.CA, verification
// of every client's certificate against that CA. Errors name the flag and
// file at fault and never quote the files' contents.
func ServerTLS(f TLSFiles) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("%w: --nats-tls-cert and --nats-tls-key go together (the server's certificate and its private key)", ErrTLSConfig)
	}
	cert, err := loadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS builds a client's tls.Config from f: the roots from f.CA (nil
// means the system's) and, with f.Cert and f.Key, the client certificate
// to present.
func ClientTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := loadKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, fmt.Errorf("%w: --nats-tls-cert and --nats-tls-key go together (the client certificate and its private key)", ErrTLSConfig)
	}
	return cfg, nil
}

// ClientOptions are the connect options that make a client speak TLS per
// f; none when f is zero (a tls:// URL then still gets TLS, against the
// system roots).
func ClientOptions(f TLSFiles) ([]nats.Option, error) {
	if f.IsZero() {
		return nil, nil
	}
	cfg, err := ClientTLS(f)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.Secure(cfg)}, nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: reading --nats-tls-cert: %w", ErrTLSConfig, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: reading --nats-tls-key: %w", ErrTLSConfig, err)
	}
	if !hasPEM(certPEM, "CERTIFICATE") {
		return tls.Certificate{}, fmt.Errorf("%w: --nats-tls-cert %s holds no PEM CERTIFICATE block", ErrTLSConfig, certFile)
	}
	if !hasPEM(keyPEM, "PRIVATE KEY") {
		return tls.Certificate{}, fmt.Errorf("%w: --nats-tls-key %s holds no PEM private key (is it the certificate? give the key file)", ErrTLSConfig, keyFile)
	}
	// tls.X509KeyPair's errors describe, never quote, what it was given.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: --nats-tls-cert %s and --nats-tls-key %s: %v (are they a pair?)", ErrTLSConfig, certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: --nats-tls-cert %s: %v", ErrTLSConfig, certFile, err)
		}
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%w: the certificate in --nats-tls-cert %s expired at %s: issue a new one (gantry bus gen-secrets issues a missing one: remove the old pair first)",
			ErrTLSConfig, certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("%w: the certificate in --nats-tls-cert %s is not valid before %s: check this machine's clock",
			ErrTLSConfig, certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: reading --nats-tls-ca: %w", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: --nats-tls-ca %s holds no PEM certificate", ErrTLSConfig, file)
	}
	return pool, nil
}

func hasPEM(b []byte, typeSuffix string) bool {
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return false
		}
		if strings.HasSuffix(blk.Type, typeSuffix) {
			return true
		}
	}
}

// tlsHint says what to do about a failed connection's TLS error, or ""
// when err is not one.
func tlsHint(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a CA this client trusts: give the CA that signed it with --nats-tls-ca"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate has expired (or this machine's clock is wrong): the server needs a new one"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate does not name the host in the URL (%s): use a URL with a name it has, or issue it with that name (gantry bus gen-secrets --hostname)", hostname.Host)
	case strings.Contains(msg, "tls: certificate required"):
		return "the server requires a client certificate: give --nats-tls-cert and --nats-tls-key"
	case strings.Contains(msg, "tls: unknown certificate authority"), strings.Contains(msg, "tls: bad certificate"):
		return "the server refused this client's certificate: it is not signed by the CA the server trusts (its --nats-tls-ca)"
	case strings.Contains(msg, "tls: expired certificate"):
		return "the server refused this client's certificate as expired: issue a new one"
	case strings.Contains(msg, "connection closed by remote after TLS handshake"):
		// TLS 1.3: the server checks the client's certificate after the
		// client has finished; its alert may be lost to the closed socket.
		return "the server closed the connection right after the TLS handshake: it refused this client's certificate: give --nats-tls-cert and --nats-tls-key if none was given, else one signed by the CA the server trusts (its --nats-tls-ca)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"), errors.Is(err, nats.ErrSecureConnWanted):
		return "the server does not speak TLS there: drop the --nats-tls-* flags, or point at a server with TLS"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the server requires TLS: connect with a tls:// URL, and --nats-tls-ca if its CA is not a system one"
	}
	return ""
}

// IsLoopback reports whether host (a listen address's host part) accepts
// connections from this machine only: a loopback IP or "localhost". An
// empty host, 0.0.0.0 and :: listen on every interface.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
