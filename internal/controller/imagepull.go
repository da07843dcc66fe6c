package controller

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// dockerHub is the registry of an image reference that names no host.
const dockerHub = "docker.io"

// imageRegistry returns the registry host of a container image reference
// as docker and the kubelet read it: the first path component is a host
// when it contains '.' or ':', is "localhost", or has an upper-case letter
// (repository paths are lower case); otherwise the image is on Docker Hub,
// whose old name index.docker.io is docker.io too. It returns "" for
// what is no registry image, such as process:// executables.
func imageRegistry(image string) string {
	image = strings.TrimSpace(image)
	if image == "" || strings.Contains(image, "://") {
		return ""
	}
	first, _, found := strings.Cut(image, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first) {
		return dockerHub
	}
	if first == "index.docker.io" {
		return dockerHub
	}
	return first
}

// sameRegistry reports whether a credential's registryHostname serves the
// registry host of an image. Hosts compare without case and with their
// port; Docker Hub answers to its other names.
func sameRegistry(credHost, imageHost string) bool {
	hub := func(h string) string {
		switch h = strings.ToLower(h); h {
		case "index.docker.io", "registry-1.docker.io":
			return dockerHub
		default:
			return h
		}
	}
	return imageHost != "" && hub(credHost) == hub(imageHost)
}

// pullCredential picks the credential of account that serves CONTAINER
// pulls from host: the most recently updated one when several do (a
// docker config holds one per host).
func pullCredential(creds []model.RegistryCredential, account, host string) (model.RegistryCredential, bool) {
	var match []model.RegistryCredential
	for _, c := range creds {
		if c.NCAID == account && slices.Contains(c.ArtifactTypes, model.ArtifactContainer) && sameRegistry(c.RegistryHostname, host) {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		return model.RegistryCredential{}, false
	}
	return slices.MaxFunc(match, func(a, b model.RegistryCredential) int {
		return cmp.Or(a.LastUpdatedAt.Compare(b.LastUpdatedAt), strings.Compare(a.ID, b.ID))
	}), true
}

// errBadRegistrySecret is a stored registry secret that is not base64 of
// username:password (the API only stores such values).
var errBadRegistrySecret = errors.New("controller: registry credential secret is not base64 of username:password")

// dockerConfig returns the docker config JSON (the .dockerconfigjson of a
// kubernetes.io/dockerconfigjson Secret) that authenticates pulls from
// host with auth, base64 of "username:password" as registry credentials
// hold it. The error never carries auth.
func dockerConfig(host, auth string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return nil, errBadRegistrySecret
	}
	if user, pass, ok := strings.Cut(string(raw), ":"); !ok || user == "" || pass == "" {
		return nil, errBadRegistrySecret
	}
	type entry struct {
		Auth string `json:"auth"`
	}
	return json.Marshal(map[string]map[string]entry{"auths": {host: {Auth: auth}}})
}

// imagePullConfig returns the docker config an instance's image is pulled
// with: the CONTAINER registry credential that the function's own account
// holds for the image's registry host, unsealed, or nil when it holds
// none. Credentials are listed by the function's account and opened bound
// to it, so no other account's credential can serve the function. The
// plaintext goes only into the answer to the agent; it is never logged,
// stored or put in an error.
func (a *Agents) imagePullConfig(ctx context.Context, f model.Function, inst model.Instance) ([]byte, error) {
	host := imageRegistry(f.ContainerImage)
	if host == "" || f.NCAID == "" {
		return nil, nil
	}
	// As with function secrets, a NEK rotation (or the credential's
	// deletion) between the reads is retried from fresh reads.
	for attempt := 1; ; attempt++ {
		creds, err := a.st.ListRegistryCredentials(ctx, f.NCAID)
		if err != nil {
			return nil, fmt.Errorf("controller: registry credentials of account %s: %w", f.NCAID, err)
		}
		c, ok := pullCredential(creds, f.NCAID, host)
		if !ok {
			return nil, nil
		}
		cfg, err := a.openPullCredential(ctx, c, host)
		if err == nil {
			a.log.Info("controller: instance pulls its image with a registry credential", "instance", inst.ID,
				"cluster", inst.ClusterID, "function", f.ID, "registryCredential", c.ID, "host", host)
			return cfg, nil
		}
		if !(errors.Is(err, secrets.ErrOpen) || errors.Is(err, store.ErrNotFound)) || attempt == 3 {
			a.log.Warn("controller: registry credential does not open", "registryCredential", c.ID,
				"account", f.NCAID, "instance", inst.ID, "err", err)
			return nil, fmt.Errorf("controller: registry credential %s for %s: %w", c.ID, host, err)
		}
	}
}

// openPullCredential unseals a credential's secret, bound to the place
// the API sealed it for, and builds the docker config for host.
func (a *Agents) openPullCredential(ctx context.Context, c model.RegistryCredential, host string) ([]byte, error) {
	sealed, err := a.st.GetRegistrySecret(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	plain, err := a.keys.Open(ctx, secrets.Place{Account: c.NCAID, FunctionID: store.RegistryCredentialSecrets,
		VersionID: c.ID, Name: store.RegistrySecretName}, secrets.Sealed{NEK: sealed.NEK, Ciphertext: sealed.Ciphertext})
	if err != nil {
		return nil, err
	}
	return dockerConfig(host, string(plain))
}
