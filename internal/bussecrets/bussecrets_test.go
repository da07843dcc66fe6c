package bussecrets_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/gantry-dev/gantry/internal/bussecrets"
)

// snapshot is every file under dir: its bytes, mode and mtime.
type fileState struct {
	data  string
	mode  fs.FileMode
	mtime time.Time
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fileState{mode: info.Mode(), mtime: info.ModTime()}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			st.data = string(b)
		}
		out[filepath.ToSlash(rel)] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run is one gen-secrets run on the files output.
func run(t *testing.T, dir string, cfg bussecrets.Config) []bussecrets.Output {
	t.Helper()
	have, err := bussecrets.ReadFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := bussecrets.Plan(cfg, have)
	if err != nil {
		t.Fatal(err)
	}
	if err := bussecrets.WriteFiles(dir, outs); err != nil {
		t.Fatal(err)
	}
	return outs
}

func paths(outs []bussecrets.Output) []string {
	var ps []string
	for _, o := range outs {
		ps = append(ps, o.Path)
	}
	slices.Sort(ps)
	return ps
}

// TestIdempotentFiles: a second run writes nothing and leaves every file's
// bytes, mode and mtime as they were; a new CPC id adds exactly that site's
// files; the modes are 0600 for keys and seeds and 0700 for directories.
func TestIdempotentFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	cfg := bussecrets.Config{Hostnames: []string{"nats.example.com", "10.0.0.7"}, CPCs: []string{"site-a", "site-b"}}
	first := run(t, dir, cfg)
	if len(first) != 19 {
		t.Fatalf("first run wrote %d outputs: %v", len(first), paths(first))
	}
	before := snapshot(t, dir)
	for p, st := range before {
		switch {
		case st.mode.IsDir():
			if st.mode.Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", p, st.mode.Perm())
			}
		case strings.HasSuffix(p, ".key") || strings.HasSuffix(p, "/seed"):
			if st.mode.Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, st.mode.Perm())
			}
		case st.mode.Perm()&0o022 != 0:
			t.Errorf("%s: mode %v is writable by others", p, st.mode.Perm())
		}
	}

	// Again, with and without the hostnames: nothing changes.
	for _, again := range []bussecrets.Config{cfg, {CPCs: cfg.CPCs}, {}} {
		if outs := run(t, dir, again); len(outs) != 0 {
			t.Fatalf("a second run (%+v) wrote %v", again, paths(outs))
		}
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Fatal("a second run changed files (bytes, modes or mtimes)")
	}

	// A new site: only its five files.
	added := run(t, dir, bussecrets.Config{CPCs: []string{"site-a", "site-c"}})
	want := []string{"cpc/site-c/nkeys/user/pubkey", "cpc/site-c/nkeys/user/seed", "cpc/site-c/tls/ca.crt", "cpc/site-c/tls/tls.crt", "cpc/site-c/tls/tls.key"}
	if got := paths(added); !slices.Equal(got, want) {
		t.Fatalf("a new CPC id wrote %v, want %v", got, want)
	}
	after := snapshot(t, dir)
	for p, st := range before {
		if p == "cpc" {
			continue // the directory gained site-c
		}
		if after[p] != st {
			t.Errorf("%s changed when site-c was added", p)
		}
	}
	checkIssued(t, dir, cfg.Hostnames, []string{"site-a", "site-b", "site-c"})
}

// checkIssued verifies what was issued: certificates chain to the CA with
// the right use and names, every key is its certificate's, every NKey its
// kind and its pubkey's.
func checkIssued(t *testing.T, dir string, hosts, cpcs []string) {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	parse := func(p string) *x509.Certificate {
		blk, _ := pem.Decode(read(p))
		if blk == nil {
			t.Fatalf("%s: no PEM", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return c
	}
	ca := parse("ca/ca.crt")
	if !ca.IsCA {
		t.Fatal("ca/ca.crt is no CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	srv := parse("csc/tls/tls.crt")
	for _, h := range hosts {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	if err := srv.VerifyHostname("other.example.com"); err == nil {
		t.Error("the server certificate names a host it was not asked for")
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: hosts[0], KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate does not verify: %v", err)
	}
	checkNKey(t, read("csc/nkeys/operator/seed"), read("csc/nkeys/operator/pubkey"), nkeys.PrefixByteOperator)
	checkNKey(t, read("csc/nkeys/account/seed"), read("csc/nkeys/account/pubkey"), nkeys.PrefixByteAccount)
	users := map[string]bool{}
	for _, id := range cpcs {
		c := parse("cpc/" + id + "/tls/tls.crt")
		if c.Subject.CommonName != id {
			t.Errorf("cpc %s: CN %q", id, c.Subject.CommonName)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("cpc %s: client certificate does not verify: %v", id, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("cpc %s: a client certificate serves as a server's", id)
		}
		if string(read("cpc/"+id+"/tls/ca.crt")) != string(read("ca/ca.crt")) {
			t.Errorf("cpc %s: ca.crt is not the CA", id)
		}
		pub := read("cpc/" + id + "/nkeys/user/pubkey")
		checkNKey(t, read("cpc/"+id+"/nkeys/user/seed"), pub, nkeys.PrefixByteUser)
		if users[string(pub)] {
			t.Errorf("cpc %s shares a user key", id)
		}
		users[string(pub)] = true
	}
}

func checkNKey(t *testing.T, seed, pub []byte, want nkeys.PrefixByte) {
	t.Helper()
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	p, _ := kp.PublicKey()
	if p != string(pub) || nkeys.Prefix(p) != want {
		t.Fatalf("pubkey %s of kind %v: want the seed's (%s) of kind %v", pub, nkeys.Prefix(p), p, want)
	}
}

// TestIdempotentManifests: the kubernetes output holds the same kinds of
// bytes, runs twice to the same manifests, and a new site adds its
// manifest only.
func TestIdempotentManifests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := bussecrets.Namespaces{Hub: "gantry", Agent: "gantry-agent"}
	gen := func(cfg bussecrets.Config) []string {
		t.Helper()
		have, err := bussecrets.ReadManifests(dir, ns)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := bussecrets.Plan(cfg, have)
		if err != nil {
			t.Fatal(err)
		}
		files, err := bussecrets.WriteManifests(dir, ns, cfg.CPCs, have, outs)
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	cfg := bussecrets.Config{Hostnames: []string{"127.0.0.1"}, CPCs: []string{"a"}}
	if got := gen(cfg); !slices.Equal(got, []string{"ca.yaml", "cpc-a.yaml", "csc.yaml"}) {
		t.Fatalf("first run wrote %v", got)
	}
	before := snapshot(t, dir)
	if got := gen(cfg); len(got) != 0 {
		t.Fatalf("second run wrote %v", got)
	}
	if !maps.Equal(before, snapshot(t, dir)) {
		t.Fatal("a second run changed the manifests")
	}
	if got := gen(bussecrets.Config{CPCs: []string{"a", "b"}}); !slices.Equal(got, []string{"cpc-b.yaml"}) {
		t.Fatalf("a new CPC id wrote %v", got)
	}
	after := snapshot(t, dir)
	for p, st := range before {
		if p != "." && after[p] != st {
			t.Errorf("%s changed when b was added", p)
		}
	}
	for p, st := range after {
		if p != "." && st.mode.Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, st.mode.Perm())
		}
	}
	// The manifests read back to the layout, and b is signed by the same CA.
	have, err := bussecrets.ReadManifests(dir, ns)
	if err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	var outs []bussecrets.Output
	for p, b := range have {
		outs = append(outs, bussecrets.Output{Path: p, Data: b})
	}
	if err := bussecrets.WriteFiles(files, outs); err != nil {
		t.Fatal(err)
	}
	checkIssued(t, files, cfg.Hostnames, []string{"a", "b"})
	b, _ := os.ReadFile(filepath.Join(dir, "cpc-b.yaml"))
	for _, want := range []string{"name: " + bussecrets.SecretAgentTLS, "name: " + bussecrets.SecretAgentNKey, "namespace: gantry-agent", "type: kubernetes.io/tls"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("cpc-b.yaml lacks %q", want)
		}
	}
}

// TestRefusals: damaged or mismatched outputs and bad requests are refused
// with what to remove, and nothing is written.
func TestRefusals(t *testing.T) {
	t.Parallel()
	base := bussecrets.Config{Hostnames: []string{"127.0.0.1"}, CPCs: []string{"a"}}
	cases := []struct {
		name   string
		damage func(dir string) error
		cfg    bussecrets.Config
		want   error
		say    string
	}{
		{"a key without its certificate", func(d string) error { return os.Remove(filepath.Join(d, "cpc/a/tls/tls.crt")) }, base, bussecrets.ErrInvalid, "remove cpc/a/tls/tls.key"},
		{"a certificate of another CA", func(d string) error {
			other := t.TempDir()
			run(t, other, base)
			for _, f := range []string{"tls.crt", "tls.key"} {
				b, _ := os.ReadFile(filepath.Join(other, "cpc/a/tls", f))
				if err := os.WriteFile(filepath.Join(d, "cpc/a/tls", f), b, 0o600); err != nil {
					return err
				}
			}
			return nil
		}, base, bussecrets.ErrInvalid, "does not verify against ca/ca.crt"},
		{"a pubkey not of its seed", func(d string) error {
			return os.WriteFile(filepath.Join(d, "csc/nkeys/account/pubkey"), []byte("ABAD"), 0o644)
		}, base, bussecrets.ErrInvalid, "is not the public key of csc/nkeys/account/seed"},
		{"other hostnames", nil, bussecrets.Config{Hostnames: []string{"nats.example.com"}}, bussecrets.ErrInvalid, "was issued for 127.0.0.1, not nats.example.com"},
		{"a bad CPC id", nil, bussecrets.Config{CPCs: []string{"../x"}}, bussecrets.ErrUsage, "--cpc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			run(t, dir, base)
			if tc.damage != nil {
				if err := tc.damage(dir); err != nil {
					t.Fatal(err)
				}
			}
			have, err := bussecrets.ReadFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := bussecrets.Plan(tc.cfg, have)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("error %v: want %v saying %q", err, tc.want, tc.say)
			}
			if outs != nil {
				t.Fatalf("outputs %v with an error", paths(outs))
			}
		})
	}
	// A new server certificate needs host names.
	if _, err := bussecrets.Plan(bussecrets.Config{}, nil); !errors.Is(err, bussecrets.ErrUsage) || !strings.Contains(err.Error(), "--hostname") {
		t.Fatalf("no hostnames: %v", err)
	}
}
