package validate

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestRegistryCredential(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString([]byte("user:s3cr3t-pass"))
	sec := func(v string) *model.RegistrySecret { return &model.RegistrySecret{Name: "credentials", Value: v} }
	tests := []struct {
		name string
		req  model.RegistryCredentialRequest
		want string // "" means valid
	}{
		{"valid", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec(good), ArtifactTypes: []string{"CONTAINER"}}, ""},
		{"valid with port, mixed case", model.RegistryCredentialRequest{RegistryHostname: "Reg.Example.com:5000", Secret: sec(good), ArtifactTypes: []string{"CONTAINER", "HELM"}}, ""},
		{"no hostname", model.RegistryCredentialRequest{Secret: sec(good), ArtifactTypes: []string{"CONTAINER"}}, "registryHostname is required"},
		{"scheme", model.RegistryCredentialRequest{RegistryHostname: "https://nvcr.io", Secret: sec(good), ArtifactTypes: []string{"CONTAINER"}}, "not a registry host"},
		{"path", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io/team", Secret: sec(good), ArtifactTypes: []string{"CONTAINER"}}, "not a registry host"},
		{"no secret", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", ArtifactTypes: []string{"CONTAINER"}}, "secret is required"},
		{"empty value", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec(""), ArtifactTypes: []string{"CONTAINER"}}, "secret.value is required"},
		{"not base64", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec("plain-s3cr3t!"), ArtifactTypes: []string{"CONTAINER"}}, "not standard base64"},
		{"no colon", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec(base64.StdEncoding.EncodeToString([]byte("s3cr3tonly"))), ArtifactTypes: []string{"CONTAINER"}}, "username:password"},
		{"no types", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec(good)}, "artifactTypes must list"},
		{"bad type", model.RegistryCredentialRequest{RegistryHostname: "nvcr.io", Secret: sec(good), ArtifactTypes: []string{"IMAGE"}}, "not an artifact type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := tc.req
			err := RegistryCredential(&req)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if req.Secret != nil && req.Secret.Value != "" && strings.Contains(err.Error(), req.Secret.Value) {
				t.Fatalf("error echoes the secret: %v", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}

func TestRegistryCredentialUpdate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *model.RegistryCredentialUpdate
		want string
	}{
		{"empty", &model.RegistryCredentialUpdate{}, "give a new secret"},
		{"types only", &model.RegistryCredentialUpdate{ArtifactTypeEnums: []string{"MODEL"}}, ""},
		{"bad type", &model.RegistryCredentialUpdate{ArtifactTypeEnums: []string{"x"}}, "artifactTypeEnums[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := RegistryCredentialUpdate(tc.req)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
