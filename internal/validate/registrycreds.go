package validate

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// registryHostRE is a registry host as image references name it: DNS
// labels separated by dots, optionally a port. No scheme, path or user.
var registryHostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$`)

// artifactTypes are NVCF's ArtifactTypeEnum values.
var artifactTypes = map[string]bool{model.ArtifactContainer: true, model.ArtifactHelm: true,
	model.ArtifactModel: true, model.ArtifactResource: true}

const artifactRule = "use CONTAINER, HELM, MODEL or RESOURCE"

// RegistryCredential checks the body of POST /v2/nvcf/registry-credentials
// and lowercases the hostname. Errors name the field, never the secret.
func RegistryCredential(req *model.RegistryCredentialRequest) error {
	if req == nil {
		return problem.BadRequest("a registry credential body is required")
	}
	var p problems
	req.RegistryHostname = strings.ToLower(strings.TrimSpace(req.RegistryHostname))
	switch {
	case req.RegistryHostname == "":
		p.addf("registryHostname is required, e.g. nvcr.io or registry.example.com:5000")
	case len(req.RegistryHostname) > 253 || !registryHostRE.MatchString(req.RegistryHostname):
		p.addf("registryHostname %q is not a registry host: give a hostname with an optional port, no scheme or path (e.g. registry.example.com:5000)", truncate(req.RegistryHostname))
	}
	if req.Secret == nil {
		p.addf(`secret is required: {"name":"credentials","value":"<base64 of username:password>"}`)
	} else {
		checkRegistrySecret(&p, req.Secret)
	}
	if len(req.ArtifactTypes) == 0 {
		p.addf("artifactTypes must list at least one type: %s", artifactRule)
	}
	checkArtifactTypes(&p, "artifactTypes", req.ArtifactTypes)
	for i, t := range req.Tags {
		if t == "" || len(t) > 128 {
			p.addf("tags[%d] must be 1-128 characters", i)
		}
	}
	if len(req.Description) > 256 {
		p.addf("description is %d characters, the limit is 256", len(req.Description))
	}
	return p.err()
}

// RegistryCredentialUpdate checks the body of PATCH
// /v2/nvcf/registry-credentials/{id}.
func RegistryCredentialUpdate(req *model.RegistryCredentialUpdate) error {
	if req == nil || (req.Secret == nil && len(req.ArtifactTypeEnums) == 0) {
		return problem.BadRequest("give a new secret, artifactTypeEnums to add, or both")
	}
	var p problems
	if req.Secret != nil {
		checkRegistrySecret(&p, req.Secret)
	}
	checkArtifactTypes(&p, "artifactTypeEnums", req.ArtifactTypeEnums)
	return p.err()
}

// checkRegistrySecret requires base64 of "username:password", the form a
// docker config's "auth" field holds. It reports shape, never content.
func checkRegistrySecret(p *problems, s *model.RegistrySecret) {
	if s.Name == "" {
		p.addf(`secret.name is required (nvcf-cli sends "credentials")`)
	}
	if s.Value == "" {
		p.addf("secret.value is required: base64 of username:password")
		return
	}
	if len(s.Value) > MaxSecretValueLen {
		p.addf("secret.value is %d bytes, the limit is %d", len(s.Value), MaxSecretValueLen)
		return
	}
	raw, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil {
		p.addf("secret.value is not standard base64; encode username:password")
		return
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		p.addf("secret.value does not decode to username:password with both parts non-empty")
	}
}

func checkArtifactTypes(p *problems, field string, types []string) {
	for i, t := range types {
		if !artifactTypes[t] {
			p.addf("%s[%d] %q is not an artifact type: %s", field, i, truncate(t), artifactRule)
		}
	}
}

// truncate keeps echoed input short.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
