package cli

import (
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenSecretsPrintsNoSecret runs gantry bus gen-secrets for both outputs,
// twice and with a new site: it says what it wrote, and neither stdout nor
// stderr holds a byte of any key, seed or their encodings.
func TestGenSecretsPrintsNoSecret(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"files", "kubernetes"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "bus")
			var printed strings.Builder
			first := runCLI(t, "", "bus", "gen-secrets", "--out", dir, "--hostname", "127.0.0.1", "--cpc", "site-a", "-o", format)
			first.check(t, 0, []string{"wrote "}, nil)
			again := runCLI(t, "", "bus", "gen-secrets", "--out", dir, "--cpc", "site-a", "-o", format)
			again.check(t, 0, []string{"nothing to write"}, nil)
			added := runCLI(t, "", "bus", "gen-secrets", "--out", dir, "--cpc", "site-a,site-b", "-o", format)
			added.check(t, 0, []string{"wrote ", "kept "}, nil)
			if strings.Contains(added.stdout, "site-a") {
				t.Errorf("adding site-b wrote site-a's outputs:\n%s", added.stdout)
			}
			for _, r := range []result{first, again, added} {
				printed.WriteString(r.stdout + r.stderr)
			}
			secrets := 0
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				for _, chunk := range secretChunks(b) {
					secrets++
					for _, enc := range []string{chunk, base64.StdEncoding.EncodeToString([]byte(chunk))[:16]} {
						if strings.Contains(printed.String(), enc) {
							t.Errorf("the output shows part of %s", p)
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if secrets == 0 {
				t.Fatal("found no secrets to look for")
			}
			if strings.Contains(printed.String(), "PRIVATE KEY") {
				t.Errorf("the output looks like it holds a key or seed:\n%s", printed.String())
			}
		})
	}
}

// secretChunks picks, from a file, strings that only a key or seed holds:
// the first line of a PEM private key's body, an NKey seed (S...), and for
// manifests the base64 values of keys named *.key or *seed.
func secretChunks(b []byte) []string {
	var out []string
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "-----BEGIN") && strings.Contains(l, "PRIVATE KEY") && i+1 < len(lines):
			out = append(out, lines[i+1][:24])
		case len(l) > 50 && l[0] == 'S' && !strings.Contains(l, " "):
			out = append(out, l[:24])
		case strings.Contains(l, ".key: ") || strings.Contains(l, "seed: "):
			_, v, _ := strings.Cut(l, ": ")
			if len(v) > 24 {
				out = append(out, v[:24])
			}
			if raw, err := base64.StdEncoding.DecodeString(v); err == nil {
				out = append(out, secretChunks(raw)...)
			}
		}
	}
	return out
}
