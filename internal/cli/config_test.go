package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// isolate points every location the config reads at fresh temp dirs and
// clears the GANTRY_* variables. It returns the home directory.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_DATA_HOME", "")
	for _, k := range []string{EnvServer, EnvToken, EnvTokenFile, EnvConfig, EnvDataDir} {
		t.Setenv(k, "")
	}
	return home
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultDataDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want func(home string) string
	}{
		{"home", nil, func(h string) string { return filepath.Join(h, ".local/share/gantry/dev") }},
		{"xdg", map[string]string{"XDG_DATA_HOME": "/xdg"}, func(string) string { return "/xdg/gantry/dev" }},
		{"gantry data dir wins", map[string]string{"XDG_DATA_HOME": "/xdg", EnvDataDir: "/data"}, func(string) string { return "/data" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := isolate(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := DefaultDataDir(); got != tc.want(home) {
				t.Errorf("DefaultDataDir() = %q, want %q", got, tc.want(home))
			}
		})
	}
}

func TestResolveConfig(t *testing.T) {
	type setup struct {
		home, dir string // dir is a scratch directory
	}
	tests := []struct {
		name       string
		prepare    func(t *testing.T, s setup) connFlags
		needToken  bool
		wantServer string
		wantToken  string
		wantSource string
		wantErr    []string
	}{
		{
			name: "defaults find the dev admin token",
			prepare: func(t *testing.T, s setup) connFlags {
				writeFile(t, filepath.Join(s.home, ".local/share/gantry/dev/admin-token"), "dev-token\n")
				return connFlags{}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "dev-token", wantSource: "token file",
		},
		{
			name: "GANTRY_DATA_DIR moves the default token file",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvDataDir, s.dir)
				writeFile(t, filepath.Join(s.dir, AdminTokenFileName), "data-dir-token")
				return connFlags{}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "data-dir-token",
		},
		{
			name:      "no token anywhere says how to get one",
			prepare:   func(*testing.T, setup) connFlags { return connFlags{} },
			needToken: true,
			wantErr:   []string{"no API token found: start `gantry dev` or pass --token / set GANTRY_TOKEN; looked in ", "admin-token"},
		},
		{
			name:       "no token is fine when not needed",
			prepare:    func(*testing.T, setup) connFlags { return connFlags{} },
			wantServer: DefaultServer,
		},
		{
			name: "XDG config file supplies server and token",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv("XDG_CONFIG_HOME", s.dir)
				writeFile(t, filepath.Join(s.dir, "gantry/config.yaml"), "server: http://cfg:1/\ntoken: cfg-token\n")
				return connFlags{}
			},
			needToken: true, wantServer: "http://cfg:1", wantToken: "cfg-token", wantSource: "config file",
		},
		{
			name: "config tokenFile is relative to the config file",
			prepare: func(t *testing.T, s setup) connFlags {
				writeFile(t, filepath.Join(s.dir, "tok"), "file-token")
				return connFlags{config: writeFile(t, filepath.Join(s.dir, "c.yaml"), "tokenFile: tok\n")}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "file-token",
		},
		{
			name: "env beats config file",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvServer, "http://env:2")
				t.Setenv(EnvToken, "env-token")
				t.Setenv(EnvConfig, writeFile(t, filepath.Join(s.dir, "c.yaml"), "server: http://cfg:1\ntoken: cfg-token\n"))
				return connFlags{}
			},
			needToken: true, wantServer: "http://env:2", wantToken: "env-token", wantSource: EnvToken,
		},
		{
			name: "flags beat env",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvServer, "http://env:2")
				t.Setenv(EnvToken, "env-token")
				return connFlags{server: "https://flag:3", token: "flag-token"}
			},
			needToken: true, wantServer: "https://flag:3", wantToken: "flag-token", wantSource: "--token",
		},
		{
			name: "--token-file beats GANTRY_TOKEN",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvToken, "env-token")
				return connFlags{tokenFile: writeFile(t, filepath.Join(s.dir, "t"), "  flag-file-token \n")}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "flag-file-token",
		},
		{
			name: "GANTRY_TOKEN beats GANTRY_TOKEN_FILE",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvToken, "env-token")
				t.Setenv(EnvTokenFile, writeFile(t, filepath.Join(s.dir, "t"), "env-file-token"))
				return connFlags{}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "env-token",
		},
		{
			name: "GANTRY_TOKEN_FILE beats the config file",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvTokenFile, writeFile(t, filepath.Join(s.dir, "t"), "env-file-token"))
				return connFlags{config: writeFile(t, filepath.Join(s.dir, "c.yaml"), "token: cfg-token\n")}
			},
			needToken: true, wantServer: DefaultServer, wantToken: "env-file-token",
		},
		{
			name: "--token and --token-file together",
			prepare: func(*testing.T, setup) connFlags {
				return connFlags{token: "a", tokenFile: "b"}
			},
			wantErr: []string{"only one of --token and --token-file"},
		},
		{
			name:    "named token file missing",
			prepare: func(_ *testing.T, s setup) connFlags { return connFlags{tokenFile: filepath.Join(s.dir, "nope")} },
			wantErr: []string{"token file from --token-file", "nope"},
		},
		{
			name: "empty token file",
			prepare: func(t *testing.T, s setup) connFlags {
				return connFlags{tokenFile: writeFile(t, filepath.Join(s.dir, "empty"), "\n")}
			},
			wantErr: []string{"empty"},
		},
		{
			name:    "named config file missing",
			prepare: func(_ *testing.T, s setup) connFlags { return connFlags{config: filepath.Join(s.dir, "missing.yaml")} },
			wantErr: []string{"missing.yaml (from --config) does not exist"},
		},
		{
			name: "GANTRY_CONFIG file missing",
			prepare: func(t *testing.T, s setup) connFlags {
				t.Setenv(EnvConfig, filepath.Join(s.dir, "gone.yaml"))
				return connFlags{}
			},
			wantErr: []string{"gone.yaml (from GANTRY_CONFIG) does not exist"},
		},
		{
			name: "bad config file is named",
			prepare: func(t *testing.T, s setup) connFlags {
				return connFlags{config: writeFile(t, filepath.Join(s.dir, "bad.yaml"), "server: [unclosed\n")}
			},
			wantErr: []string{"config file ", "bad.yaml"},
		},
		{
			name: "unknown config key is an error",
			prepare: func(t *testing.T, s setup) connFlags {
				return connFlags{config: writeFile(t, filepath.Join(s.dir, "typo.yaml"), "tokenPath: x\n")}
			},
			wantErr: []string{"typo.yaml", "tokenPath"},
		},
		{
			name:    "bad server URL names its source",
			prepare: func(t *testing.T, s setup) connFlags { t.Setenv(EnvServer, "ftp://x"); return connFlags{} },
			wantErr: []string{`invalid server URL "ftp://x" (from GANTRY_SERVER)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := isolate(t)
			flags := tc.prepare(t, setup{home: home, dir: t.TempDir()})
			cc, err := resolveConfig(flags, tc.needToken)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; resolved server %q", cc.Server)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cc.Server != tc.wantServer || cc.Token != tc.wantToken {
				t.Errorf("resolved server %q token %q, want %q %q", cc.Server, cc.Token, tc.wantServer, tc.wantToken)
			}
			if !strings.Contains(cc.TokenSource, tc.wantSource) {
				t.Errorf("token source %q lacks %q", cc.TokenSource, tc.wantSource)
			}
		})
	}
}

// TestZeroConfigAgainstDevServer is the promise to `gantry dev` users: with
// the admin token in the default data dir and only --server pointing at the
// fake, the verbs just work.
func TestZeroConfigAgainstDevServer(t *testing.T) {
	home := isolate(t)
	f := newFakeAPI(t)
	f.addFunction("fn-1", "v-1", "echo", time.Minute)
	writeFile(t, filepath.Join(home, ".local/share/gantry/dev", AdminTokenFileName), f.token+"\n")
	t.Setenv(EnvServer, f.srv.URL)
	r := runCLI(t, "", "function", "list")
	r.check(t, 0, []string{"fn-1"}, nil)
}
