package validate

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *model.SecretsRequest
		err  string // empty when valid
	}{
		{"one", &model.SecretsRequest{Secrets: []model.Secret{{Name: "API_KEY", Value: "v"}}}, ""},
		{"several", &model.SecretsRequest{Secrets: []model.Secret{{Name: "A", Value: "1"}, {Name: "_b2", Value: "2"}}}, ""},
		{"nil", nil, "secrets must list at least one secret"},
		{"none", &model.SecretsRequest{}, `secrets must list at least one secret, e.g. {"secrets":[{"name":"API_KEY","value":"..."}]}`},
		{"bad name", &model.SecretsRequest{Secrets: []model.Secret{{Name: "a.b", Value: "v"}}}, `secrets[0].name "a.b" is invalid`},
		{"duplicate", &model.SecretsRequest{Secrets: []model.Secret{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}},
			`secrets[1].name "A" repeats secrets[0]`},
		{"empty value", &model.SecretsRequest{Secrets: []model.Secret{{Name: "A"}}}, "secrets[0].value is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Secrets(tc.req)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Secrets: %v", err)
				}
				return
			}
			wantProblem(t, err, 400, tc.err)
		})
	}
}

func TestSecretsNeverEchoValues(t *testing.T) {
	t.Parallel()
	long := "hunter2" + strings.Repeat("!", MaxSecretValueLen)
	req := &model.SecretsRequest{Secrets: []model.Secret{
		{Name: "A", Value: long},
		{Name: "9BAD", Value: "hunter2-short"},
		{Name: "A", Value: "hunter2-dup"},
	}}
	err := Secrets(req)
	wantProblem(t, err, 400, "secrets[0].value is 32775 bytes long: at most 32768 bytes are allowed")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error echoes a secret value: %.300s", err.Error())
	}
}
