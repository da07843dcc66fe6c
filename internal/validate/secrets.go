package validate

import (
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Secret limits from the API contract.
const (
	// MaxSecretNameLen is the longest secret name, in characters.
	MaxSecretNameLen = 48
	// MaxSecretValueLen is the longest secret value, in bytes.
	MaxSecretValueLen = 32768
)

// secretNameRule explains the name rule. Secret names follow the environment
// variable rule because a secret may reach the function as an environment
// variable, and a name that cannot be one would be lost there.
const secretNameRule = "use 1-48 characters of letters, digits and '_', not starting with a digit " +
	"(the rule for environment variable names, since secrets can reach the function as environment variables)"

// Secrets checks the body of PUT /v2/nvcf/secrets/functions/{id}/versions/{vid}:
// at least one secret, each with a valid, unique name and a non-empty value of
// at most MaxSecretValueLen bytes. Errors name the secret, never its value.
func Secrets(req *model.SecretsRequest) error {
	if req == nil || len(req.Secrets) == 0 {
		return problem.BadRequest(`secrets must list at least one secret, e.g. {"secrets":[{"name":"API_KEY","value":"..."}]}`)
	}
	var p problems
	checkSecrets(&p, req.Secrets)
	return p.err()
}

// checkSecrets applies the secret rules to the "secrets" field.
func checkSecrets(p *problems, secrets []model.Secret) {
	seen := make(map[string]int, len(secrets))
	for i, s := range secrets {
		switch {
		case s.Name == "":
			p.addf("secrets[%d].name is required: %s", i, secretNameRule)
		case len(s.Name) > MaxSecretNameLen:
			p.addf("secrets[%d].name %s is %d characters long: %s", i, quote(s.Name), len(s.Name), secretNameRule)
		case !validEnvName(s.Name):
			p.addf("secrets[%d].name %s is invalid: %s", i, quote(s.Name), secretNameRule)
		default:
			if j, dup := seen[s.Name]; dup {
				p.addf("secrets[%d].name %s repeats secrets[%d]: each secret name may appear once", i, quote(s.Name), j)
			} else {
				seen[s.Name] = i
			}
		}
		// Say which secret by index only; never echo any part of the value.
		switch n := len(s.Value); {
		case n == 0:
			p.addf("secrets[%d].value is empty: give the secret's value", i)
		case n > MaxSecretValueLen:
			p.addf("secrets[%d].value is %d bytes long: at most %d bytes are allowed", i, n, MaxSecretValueLen)
		}
	}
}
