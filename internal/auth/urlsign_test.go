package auth

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestURLSignerBindsEveryPart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := NewURLSigner(bytes.Repeat([]byte{7}, 32))
	s.now = clock.Now
	exp := clock.Now().Add(time.Hour)
	sig := s.Sign("asset-upload", exp, "acct", "a1")
	if err := s.Verify(sig, "asset-upload", exp, "acct", "a1"); err != nil {
		t.Fatalf("own signature: %v", err)
	}
	for name, check := range map[string]func() error{
		"other purpose": func() error { return s.Verify(sig, "asset-fetch", exp, "acct", "a1") },
		"other account": func() error { return s.Verify(sig, "asset-upload", exp, "acct2", "a1") },
		"other asset":   func() error { return s.Verify(sig, "asset-upload", exp, "acct", "a2") },
		"parts shifted": func() error { return s.Verify(sig, "asset-upload", exp, "acc", "ta1") },
		"later expiry":  func() error { return s.Verify(sig, "asset-upload", exp.Add(time.Second), "acct", "a1") },
		"not base64":    func() error { return s.Verify("!!", "asset-upload", exp, "acct", "a1") },
		"other key": func() error {
			return NewURLSigner(bytes.Repeat([]byte{8}, 32)).Verify(sig, "asset-upload", exp, "acct", "a1")
		},
	} {
		if err := check(); !errors.Is(err, ErrURLSignature) {
			t.Errorf("%s: %v, want ErrURLSignature", name, err)
		}
	}
	clock.Advance(time.Hour)
	if err := s.Verify(sig, "asset-upload", exp, "acct", "a1"); !errors.Is(err, ErrURLExpired) {
		t.Fatalf("at expiry: %v, want ErrURLExpired", err)
	}
}

// TestLoadURLSignerOneKeyForAllReplicas: replicas starting at once all end
// with the key one of them stored, and a restart reads it back.
func TestLoadURLSignerOneKeyForAllReplicas(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	sealer := testutil.NewKeySealer(t)
	signers := make([]*URLSigner, 4)
	var wg sync.WaitGroup
	for i := range signers {
		wg.Go(func() {
			s, err := LoadURLSigner(ctx, st, sealer)
			if err != nil {
				t.Error(err)
				return
			}
			signers[i] = s
		})
	}
	wg.Wait()
	again, err := LoadURLSigner(ctx, st, sealer)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute)
	sig := again.Sign("p", exp, "x")
	for i, s := range signers {
		if s == nil || s.Verify(sig, "p", exp, "x") != nil {
			t.Fatalf("replica %d has another key", i)
		}
	}
	if _, err := LoadURLSigner(ctx, st, testutil.NewKeySealer(t)); err == nil {
		t.Fatal("another sealer opened the key")
	}
}
