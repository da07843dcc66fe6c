package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Environment variables the client verbs read. Flags win over them; they win
// over the config file.
const (
	EnvServer    = "GANTRY_SERVER"
	EnvToken     = "GANTRY_TOKEN"
	EnvTokenFile = "GANTRY_TOKEN_FILE"
	EnvConfig    = "GANTRY_CONFIG"
	EnvDataDir   = "GANTRY_DATA_DIR"
)

// DefaultServer is where the client verbs look for the API when nothing else
// says: the address `gantry dev` listens on.
const DefaultServer = "http://127.0.0.1:8080"

// AdminTokenFileName is the file in DefaultDataDir where `gantry dev` writes
// the admin token and where the client verbs look for it, so a fresh dev
// install needs no configuration.
const AdminTokenFileName = "admin-token"

// DefaultDataDir is the data directory `gantry dev` uses unless told
// otherwise, and so where the CLI finds the dev admin token: $GANTRY_DATA_DIR,
// else $XDG_DATA_HOME/gantry/dev, else ~/.local/share/gantry/dev. Without a
// home directory it falls back to the system temp directory.
func DefaultDataDir() string {
	if d := os.Getenv(EnvDataDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "gantry", "dev")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "share", "gantry", "dev")
	}
	return filepath.Join(os.TempDir(), "gantry", "dev")
}

// defaultConfigPath is $XDG_CONFIG_HOME/gantry/config.yaml, else
// ~/.config/gantry/config.yaml ("" when neither can be known).
func defaultConfigPath() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "gantry", "config.yaml")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".config", "gantry", "config.yaml")
	}
	return ""
}

// fileConfig is the YAML config file. Unknown keys are an error so a typo
// such as "tokenPath" does not silently fall back to a default.
type fileConfig struct {
	Server    string `json:"server,omitempty"`
	Token     string `json:"token,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`
}

// connFlags are the values of the persistent connection flags.
type connFlags struct {
	server, token, tokenFile, config string
}

// connConfig is where the client verbs send requests and with which
// credential. Token must never be printed; the *Source fields say where a
// value came from, for error messages.
type connConfig struct {
	Server       string
	ServerSource string
	Token        string
	TokenSource  string
}

// resolveConfig applies flag > environment > config file > defaults for the
// server and the token. When needToken is false a missing token is not an
// error (the caller brings its own credential).
func resolveConfig(f connFlags, needToken bool) (connConfig, error) {
	fc, cfgPath, err := loadConfigFile(f.config)
	if err != nil {
		return connConfig{}, err
	}
	var cc connConfig
	cc.Server, cc.ServerSource = first(
		source{f.server, "--server"},
		source{os.Getenv(EnvServer), EnvServer},
		source{fc.Server, "config file " + cfgPath},
		source{DefaultServer, "default"},
	)
	if cc.Server, err = normalizeServer(cc.Server, cc.ServerSource); err != nil {
		return connConfig{}, err
	}

	if f.token != "" && f.tokenFile != "" {
		return connConfig{}, errors.New("use only one of --token and --token-file")
	}
	cfgTokenFile := fc.TokenFile
	if cfgTokenFile != "" {
		cfgTokenFile = expandPath(cfgTokenFile, filepath.Dir(cfgPath))
	}
	// Within each layer an inline token beats a token file; any higher layer
	// beats every lower one.
	candidates := []struct {
		value, source string
		isFile        bool
	}{
		{f.token, "--token", false},
		{f.tokenFile, "--token-file", true},
		{os.Getenv(EnvToken), EnvToken, false},
		{os.Getenv(EnvTokenFile), EnvTokenFile, true},
		{fc.Token, "config file " + cfgPath, false},
		{cfgTokenFile, "tokenFile in config file " + cfgPath, true},
	}
	for _, c := range candidates {
		if c.value == "" {
			continue
		}
		if !c.isFile {
			cc.Token, cc.TokenSource = strings.TrimSpace(c.value), c.source
			return cc, nil
		}
		tok, err := readTokenFile(c.value)
		if err != nil {
			return connConfig{}, fmt.Errorf("token file from %s: %w", c.source, err)
		}
		cc.Token, cc.TokenSource = tok, "token file "+c.value
		return cc, nil
	}

	def := filepath.Join(DefaultDataDir(), AdminTokenFileName)
	tok, err := readTokenFile(def)
	switch {
	case err == nil:
		cc.Token, cc.TokenSource = tok, "token file "+def
	case errors.Is(err, fs.ErrNotExist):
		if needToken {
			return connConfig{}, withHint(
				fmt.Errorf("no API token found: start `gantry dev` or pass --token / set %s; looked in %s", EnvToken, def),
				"`gantry dev` writes its admin token there; --token-file or %s read a token from another file", EnvTokenFile)
		}
	default:
		if needToken {
			return connConfig{}, fmt.Errorf("default token file: %w", err)
		}
	}
	return cc, nil
}

type source struct{ value, name string }

// first returns the first non-empty value and where it came from.
func first(sources ...source) (string, string) {
	for _, s := range sources {
		if s.value != "" {
			return s.value, s.name
		}
	}
	return "", ""
}

// loadConfigFile reads the config file named by path, $GANTRY_CONFIG or the
// default location. A missing default file is an empty config; a missing
// file the user named, or one that does not parse, is an error naming it.
func loadConfigFile(path string) (fileConfig, string, error) {
	explicit, src := path, "--config"
	if explicit == "" {
		explicit, src = os.Getenv(EnvConfig), EnvConfig
	}
	p := explicit
	if p == "" {
		p = defaultConfigPath()
		if p == "" {
			return fileConfig{}, "", nil
		}
	}
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && explicit == "" {
			return fileConfig{}, p, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fileConfig{}, p, fmt.Errorf("config file %s (from %s) does not exist", p, src)
		}
		return fileConfig{}, p, fmt.Errorf("config file %s: %w", p, err)
	}
	var fc fileConfig
	if err := yaml.UnmarshalStrict(data, &fc); err != nil {
		return fileConfig{}, p, withHint(fmt.Errorf("config file %s: %w", p, err),
			"the config file is YAML with the keys server, token and tokenFile")
	}
	return fc, p, nil
}

// readTokenFile returns a token file's content without surrounding space.
func readTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// expandPath resolves ~/ and paths relative to dir, so a config file can
// name a token file next to itself.
func expandPath(p, dir string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if !filepath.IsAbs(p) && dir != "" {
		return filepath.Join(dir, p)
	}
	return p
}

// normalizeServer checks that s is an http(s) URL and drops a trailing slash.
func normalizeServer(s, src string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		err := fmt.Errorf("invalid server URL %q (from %s): want http://host:port or https://host", s, src)
		if !strings.Contains(s, "://") {
			return "", withHint(err, "did you mean http://%s ?", s)
		}
		return "", err
	}
	return strings.TrimRight(s, "/"), nil
}
