// Package bussecrets generates, idempotently, every secret of the event bus
// between the central site (CSC, the hub: gantry server) and the GPU sites
// (CPCs, one agent each): a CA, the hub's server certificate, one client
// certificate per CPC, and NKeys (an operator, an account, one user per
// CPC). `gantry bus gen-secrets` runs it.
//
// What exists is never rewritten: a run loads each output, checks it (a
// certificate against the CA and its key, a public key against its seed)
// and generates only what is missing, so a second run changes nothing and a
// new CPC id adds only that site's outputs, signed by the same CA. Outputs
// are files (Layout) or Kubernetes Secret manifests holding the same bytes.
package bussecrets

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// Layout, as paths under the output directory (files) or keys of the
// manifests' Secrets (kubernetes; see manifests.go):
//
//	ca/ca.crt, ca/ca.key                   the CA (keep ca.key offline; it issues new sites)
//	csc/tls/{ca.crt,tls.crt,tls.key}       the hub's server certificate (--nats-tls-*)
//	csc/nkeys/operator/{seed,pubkey}       the operator NKey
//	csc/nkeys/account/{seed,pubkey}        the account NKey
//	cpc/<id>/tls/{ca.crt,tls.crt,tls.key}  the site's client (leaf) certificate
//	cpc/<id>/nkeys/user/{seed,pubkey}      the site's user NKey
const (
	caCert = "ca/ca.crt"
	caKey  = "ca/ca.key"
)

// Validity of what is issued. A certificate past its time is replaced by
// removing its directory (or manifest) and running again.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
)

// Errors.
var (
	// ErrInvalid: an existing output is damaged, incomplete or does not
	// match the rest (or the request); the message names it and what to
	// remove.
	ErrInvalid = errors.New("bussecrets: invalid")
	// ErrUsage: the request itself is wrong (a bad CPC id, no hostname for
	// a new server certificate).
	ErrUsage = errors.New("bussecrets: usage")
)

// Config is what to generate.
type Config struct {
	// Hostnames are the SANs of the hub's server certificate (DNS names or
	// IPs): the host agents dial, as in their NATS URL and the route in
	// front of the hub. Needed when that certificate is issued; when it
	// exists and Hostnames are given, they must be the ones it has.
	Hostnames []string
	// CPCs are the GPU sites' ids, each given its own outputs.
	CPCs []string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Output is one path of the layout and its bytes.
type Output struct {
	Path    string
	Data    []byte
	Private bool // a key or seed: mode 0600, never printed
}

// unit is outputs that are made together (a key and its certificate, a seed
// and its public key): all present, or all generated.
type unit struct {
	paths []string
	gen   func() (map[string][]byte, error)
	check func(have map[string][]byte) error
}

// Plan computes, from what exists (have: path -> bytes), the outputs to add.
// It returns them in layout order; nothing in have is among them.
func Plan(cfg Config, have map[string][]byte) ([]Output, error) {
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	for _, id := range cfg.CPCs {
		if !validID(id) {
			return nil, fmt.Errorf("%w: --cpc %q: use lower-case letters, digits and '-' (it names a directory and a Kubernetes manifest)", ErrUsage, id)
		}
	}
	hosts := slices.Clone(cfg.Hostnames)
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, " /*,") {
			return nil, fmt.Errorf("%w: --hostname %q is not a host name or IP", ErrUsage, h)
		}
	}
	g := &generator{now: now(), have: have, out: map[string][]byte{}}
	var units []unit
	units = append(units, g.caUnit())
	units = append(units, g.certUnit("csc/tls", "gantry-nats", hosts, true))
	units = append(units, g.copyCA("csc/tls/ca.crt"))
	units = append(units, g.nkeyUnit("csc/nkeys/operator", nkeys.PrefixByteOperator))
	units = append(units, g.nkeyUnit("csc/nkeys/account", nkeys.PrefixByteAccount))
	for _, id := range dedupe(cfg.CPCs) {
		units = append(units, g.certUnit("cpc/"+id+"/tls", id, nil, false))
		units = append(units, g.copyCA("cpc/"+id+"/tls/ca.crt"))
		units = append(units, g.nkeyUnit("cpc/"+id+"/nkeys/user", nkeys.PrefixByteUser))
	}
	var outs []Output
	for _, u := range units {
		var present, missing []string
		for _, p := range u.paths {
			if _, ok := g.get(p); ok {
				present = append(present, p)
			} else {
				missing = append(missing, p)
			}
		}
		switch {
		case len(missing) == 0:
			if err := u.check(have); err != nil {
				return nil, err
			}
		case len(present) > 0:
			return nil, fmt.Errorf("%w: %s exists without %s: remove %s to generate them again",
				ErrInvalid, strings.Join(present, ", "), strings.Join(missing, ", "), strings.Join(present, ", "))
		default:
			made, err := u.gen()
			if err != nil {
				return nil, err
			}
			for _, p := range u.paths {
				g.out[p] = made[p]
				outs = append(outs, Output{Path: p, Data: made[p], Private: isPrivate(p)})
			}
		}
	}
	return outs, nil
}

// isPrivate reports whether the layout path p holds a private key or seed.
func isPrivate(p string) bool { return strings.HasSuffix(p, ".key") || strings.HasSuffix(p, "/seed") }

type generator struct {
	now  time.Time
	have map[string][]byte
	out  map[string][]byte // generated in this run
	ca   *x509.Certificate
	caK  crypto.Signer
}

func (g *generator) get(p string) ([]byte, bool) {
	if b, ok := g.have[p]; ok {
		return b, true
	}
	b, ok := g.out[p]
	return b, ok
}

func (g *generator) caUnit() unit {
	return unit{
		paths: []string{caCert, caKey},
		gen: func() (map[string][]byte, error) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			tmpl := &x509.Certificate{
				Subject:               pkix.Name{CommonName: "Gantry bus CA", Organization: []string{"Gantry"}},
				NotBefore:             g.now.Add(-5 * time.Minute),
				NotAfter:              g.now.Add(CAValidity),
				KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
				BasicConstraintsValid: true,
				IsCA:                  true,
				MaxPathLenZero:        true,
			}
			der, err := sign(tmpl, tmpl, key.Public(), key)
			if err != nil {
				return nil, err
			}
			if g.ca, err = x509.ParseCertificate(der); err != nil {
				return nil, err
			}
			g.caK = key
			keyPEM, err := encodeKey(key)
			if err != nil {
				return nil, err
			}
			return map[string][]byte{caCert: pemBlock("CERTIFICATE", der), caKey: keyPEM}, nil
		},
		check: func(have map[string][]byte) error {
			cert, key, err := parsePair(have[caCert], have[caKey])
			if err != nil {
				return fmt.Errorf("%w: %s and %s: %v", ErrInvalid, caCert, caKey, err)
			}
			if !cert.IsCA {
				return fmt.Errorf("%w: %s is not a CA certificate", ErrInvalid, caCert)
			}
			if g.now.After(cert.NotAfter) {
				return fmt.Errorf("%w: the CA in %s expired at %s: remove the output directory and start again (every certificate needs reissuing)", ErrInvalid, caCert, cert.NotAfter.UTC().Format(time.RFC3339))
			}
			g.ca, g.caK = cert, key
			return nil
		},
	}
}

// certUnit is the certificate and key in dir: the hub's server certificate
// (server true, SANs hosts) or a site's client certificate (CN id).
func (g *generator) certUnit(dir, cn string, hosts []string, server bool) unit {
	crt, key := dir+"/tls.crt", dir+"/tls.key"
	return unit{
		paths: []string{crt, key},
		gen: func() (map[string][]byte, error) {
			if server && len(hosts) == 0 {
				return nil, fmt.Errorf("%w: the hub's server certificate needs its host names: give --hostname (the host in the agents' NATS URL; repeat it for each name)", ErrUsage)
			}
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			tmpl := &x509.Certificate{
				Subject:               pkix.Name{CommonName: cn, Organization: []string{"Gantry"}},
				NotBefore:             g.now.Add(-5 * time.Minute),
				NotAfter:              g.now.Add(CertValidity),
				KeyUsage:              x509.KeyUsageDigitalSignature,
				BasicConstraintsValid: true,
			}
			if server {
				// Server and client: hub nodes dial each other's routes with it.
				tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
				for _, h := range hosts {
					if ip := net.ParseIP(h); ip != nil {
						tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
					} else {
						tmpl.DNSNames = append(tmpl.DNSNames, h)
					}
				}
				tmpl.Subject.CommonName = hosts[0]
			} else {
				tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
				tmpl.Subject.OrganizationalUnit = []string{"cpc"}
			}
			der, err := sign(tmpl, g.ca, k.Public(), g.caK)
			if err != nil {
				return nil, err
			}
			keyPEM, err := encodeKey(k)
			if err != nil {
				return nil, err
			}
			return map[string][]byte{crt: pemBlock("CERTIFICATE", der), key: keyPEM}, nil
		},
		check: func(have map[string][]byte) error {
			cert, _, err := parsePair(have[crt], have[key])
			if err != nil {
				return fmt.Errorf("%w: %s and %s: %v", ErrInvalid, crt, key, err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(g.ca)
			usage := x509.ExtKeyUsageClientAuth
			if server {
				usage = x509.ExtKeyUsageServerAuth
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: g.now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				return fmt.Errorf("%w: %s does not verify against %s (%v): remove %s/ to issue it again", ErrInvalid, crt, caCert, err, dir)
			}
			if server && len(hosts) > 0 {
				if got := SANs(cert); !sameSet(got, hosts) {
					return fmt.Errorf("%w: %s was issued for %s, not %s: remove %s/ to issue it for the new names (and restart the server with it)",
						ErrInvalid, crt, strings.Join(got, ","), strings.Join(hosts, ","), dir)
				}
			}
			return nil
		},
	}
}

// copyCA is a copy of the CA certificate beside a site's certificate, so
// that each site's outputs are complete on their own.
func (g *generator) copyCA(p string) unit {
	return unit{
		paths: []string{p},
		gen: func() (map[string][]byte, error) {
			b, _ := g.get(caCert)
			return map[string][]byte{p: b}, nil
		},
		check: func(have map[string][]byte) error {
			b, _ := g.get(caCert)
			if !bytes.Equal(have[p], b) {
				return fmt.Errorf("%w: %s is not the CA in %s: remove %s to copy it again", ErrInvalid, p, caCert, p)
			}
			return nil
		},
	}
}

func (g *generator) nkeyUnit(dir string, prefix nkeys.PrefixByte) unit {
	seedP, pubP := dir+"/seed", dir+"/pubkey"
	return unit{
		paths: []string{seedP, pubP},
		gen: func() (map[string][]byte, error) {
			kp, err := nkeys.CreatePair(prefix)
			if err != nil {
				return nil, err
			}
			defer kp.Wipe()
			seed, err := kp.Seed()
			if err != nil {
				return nil, err
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return nil, err
			}
			// Seed returns the pair's own buffer, which Wipe zeroes.
			return map[string][]byte{seedP: bytes.Clone(seed), pubP: []byte(pub)}, nil
		},
		check: func(have map[string][]byte) error {
			kp, err := nkeys.FromSeed(bytes.TrimSpace(have[seedP]))
			if err != nil {
				return fmt.Errorf("%w: %s is not an NKey seed: remove %s/ to generate it again", ErrInvalid, seedP, dir)
			}
			defer kp.Wipe()
			pub, err := kp.PublicKey()
			if err != nil || pub != string(bytes.TrimSpace(have[pubP])) {
				return fmt.Errorf("%w: %s is not the public key of %s: remove %s/ to generate it again", ErrInvalid, pubP, seedP, dir)
			}
			if nkeys.Prefix(pub) != prefix {
				return fmt.Errorf("%w: %s is not a %s key", ErrInvalid, seedP, prefix)
			}
			return nil
		},
	}
}

func sign(tmpl, parent *x509.Certificate, pub any, key crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// parsePair parses a PEM certificate and PKCS#8 key and checks that they
// belong together. Its errors never quote the key.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %v", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, errors.New("no PEM PRIVATE KEY (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, errors.New("the key does not parse as PKCS#8")
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("the key cannot sign")
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the key is not the certificate's")
	}
	return cert, signer, nil
}

// SANs lists a certificate's DNS names and IPs, as given to --hostname.
func SANs(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func sameSet(a, b []string) bool {
	norm := func(s []string) []string {
		out := make([]string, 0, len(s))
		for _, v := range s {
			if ip := net.ParseIP(v); ip != nil {
				v = ip.String()
			}
			out = append(out, strings.ToLower(v))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func dedupe(ids []string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// validID reports whether id can name a directory, a Secret and a subject
// token: a lower-case DNS label.
func validID(id string) bool {
	if id == "" || len(id) > 63 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-':
		default:
			return false
		}
	}
	return true
}
