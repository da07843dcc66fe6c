package validate

import (
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
)

// Artifact limits. NVCF documents none; these keep a function's record and
// its agents' work bounded.
const (
	// MaxArtifacts is the most models, and the most resources, a function
	// may name.
	MaxArtifacts = 32
	// MaxArtifactNameLen is the longest model or resource name, in bytes.
	MaxArtifactNameLen = 128
	// MaxArtifactURILen is the longest model or resource uri, in bytes.
	MaxArtifactURILen = 4096
)

// ArtifactChecksumPrefix starts the fragment of an artifact uri that names
// the SHA-256 of its content (https://host/m.bin#sha256=<64 hex digits>).
// The agent checks what it downloads against it, and a cache that already
// holds that content needs no download at all. A fragment never reaches the
// server, so the uri stays the one the host knows.
const ArtifactChecksumPrefix = "sha256="

const artifactNameRule = "use 1-128 characters of letters, digits, '.', '_' and '-', not starting with '.' " +
	"(it names the artifact's directory, e.g. /config/models/<name>)"

// checkArtifacts checks a function's models or resources (field is
// "models" or "resources"). Gantry's agents fetch each uri before the
// instance starts, so the uri must be one an agent can fetch: an http or
// https URL. Messages name a uri only by RedactURL, never with its query or
// user information, which often hold credentials (a presigned URL's
// signature, a token).
func checkArtifacts(p *problems, field string, list []model.Artifact) {
	if len(list) > MaxArtifacts {
		p.addf("%s has %d entries: at most %d are allowed", field, len(list), MaxArtifacts)
		return
	}
	seen := make(map[string]int, len(list))
	for i, a := range list {
		at := func(sub string) string { return field + "[" + strconv.Itoa(i) + "]." + sub }
		switch {
		case a.Name == "":
			p.addf("%s is required: %s", at("name"), artifactNameRule)
		case len(a.Name) > MaxArtifactNameLen || a.Name[0] == '.' ||
			!allBytes(a.Name, func(c byte) bool { return isLetter(c) || isDigit(c) || c == '.' || c == '_' || c == '-' }):
			p.addf("%s %s is invalid: %s", at("name"), quote(a.Name), artifactNameRule)
		default:
			if j, dup := seen[a.Name]; dup {
				p.addf("%s %s repeats %s[%d]: each name may appear once in %s", at("name"), quote(a.Name), field, j, field)
			} else {
				seen[a.Name] = i
			}
		}
		switch {
		case a.Version == "":
			p.addf("%s is required: give the artifact's version, e.g. \"1.0\"", at("version"))
		case len(a.Version) > MaxArtifactNameLen || hasSpaceOrControl(a.Version):
			p.addf("%s %s is invalid: use at most 128 characters without spaces or control characters", at("version"), quote(a.Version))
		}
		checkArtifactURI(p, at("uri"), a.URI)
	}
}

func checkArtifactURI(p *problems, field, uri string) {
	const how = `give an http or https URL the agents can download, e.g. "https://models.example.com/resnet50.onnx" ` +
		`(optionally ending in "#sha256=<hex digest>" to have the content checked)`
	if uri == "" {
		p.addf("%s is required: %s", field, how)
		return
	}
	if len(uri) > MaxArtifactURILen {
		p.addf("%s is %d bytes long: at most %d are allowed", field, len(uri), MaxArtifactURILen)
		return
	}
	if hasSpaceOrControl(uri) {
		p.addf("%s is invalid: it must not contain spaces or control characters (percent-encode them)", field)
		return
	}
	u, err := url.Parse(uri)
	if err != nil {
		p.addf("%s is not a valid URL: %s", field, how)
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "ngc":
		p.addf("%s %s is not supported: Gantry's agents do not pull from the NGC model registry yet; "+
			"host the model's files at an https URL and give that URL as uri", field, quote(RedactURL(uri)))
		return
	case "file":
		// An agent reading its own host's files for whoever may create a
		// function would hand them the agent's credentials.
		p.addf("%s %s is refused: agents never read their own host's files for a function; %s", field, quote(RedactURL(uri)), how)
		return
	case "":
		p.addf("%s %s has no scheme: %s", field, quote(RedactURL(uri)), how)
		return
	default:
		p.addf("%s scheme %s is not supported: %s", field, quote(u.Scheme), how)
		return
	}
	if u.Host == "" || u.Hostname() == "" {
		p.addf("%s %s has no host: %s", field, quote(RedactURL(uri)), how)
		return
	}
	if u.Fragment != "" {
		if _, ok := ArtifactChecksum(uri); !ok {
			p.addf("%s fragment is invalid: the only fragment Gantry reads is \"#sha256=\" and 64 hexadecimal digits; remove it or fix the digest",
				field)
		}
	}
}

// ArtifactChecksum returns the lower-case hex SHA-256 an artifact uri's
// fragment names (#sha256=<hex>), and whether it names one.
func ArtifactChecksum(uri string) (string, bool) {
	_, frag, found := strings.Cut(uri, "#")
	if !found {
		return "", false
	}
	hexDigest, ok := strings.CutPrefix(frag, ArtifactChecksumPrefix)
	if !ok || len(hexDigest) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(hexDigest); err != nil {
		return "", false
	}
	return strings.ToLower(hexDigest), true
}

// RedactURL renders a URL for messages and logs without the parts that
// often carry credentials: the user information, the query and the
// fragment go; scheme, host and path stay, so a reader can still tell which
// file of which host failed. What does not parse as a URL is replaced
// whole.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return "(an unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
