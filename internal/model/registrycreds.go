package model

import "time"

// Artifact types a registry credential may serve, NVCF's ArtifactTypeEnum.
const (
	ArtifactContainer = "CONTAINER"
	ArtifactHelm      = "HELM"
	ArtifactModel     = "MODEL"
	ArtifactResource  = "RESOURCE"
)

// ProvisionedByUser marks a credential an account added itself; NVCF also
// has SYSTEM, which Gantry never provisions.
const ProvisionedByUser = "USER"

// RegistrySecret is the secret part of a registry credential as NVCF's
// bodies carry it: Value is base64 of "username:password". It only ever
// travels inwards (requests); no response holds it.
type RegistrySecret struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RegistryCredentialRequest is the body of POST /v2/nvcf/registry-credentials.
type RegistryCredentialRequest struct {
	RegistryHostname string          `json:"registryHostname"`
	Secret           *RegistrySecret `json:"secret"`
	ArtifactTypes    []string        `json:"artifactTypes"`
	Tags             []string        `json:"tags,omitempty"`
	Description      string          `json:"description,omitempty"`
}

// RegistryCredentialUpdate is the body of PATCH
// /v2/nvcf/registry-credentials/{id}: a new secret, and artifact types
// added to those the credential has (NVCF's update is additive).
type RegistryCredentialUpdate struct {
	Secret            *RegistrySecret `json:"secret,omitempty"`
	ArtifactTypeEnums []string        `json:"artifactTypeEnums,omitempty"`
}

// RegistryCredential is a credential's non-secret part: what is stored in
// the clear and what every read answers. The secret is sealed apart.
type RegistryCredential struct {
	ID               string    `json:"registryCredentialId"`
	NCAID            string    `json:"ncaId"`
	Name             string    `json:"registryCredentialName"`
	RegistryName     string    `json:"registryName"`
	RegistryHostname string    `json:"registryHostname"`
	ArtifactTypes    []string  `json:"artifactTypes"`
	Tags             []string  `json:"tags,omitempty"`
	Description      string    `json:"description,omitempty"`
	ProvisionedBy    string    `json:"provisionedBy"`
	LastUpdatedAt    time.Time `json:"lastUpdatedAt"`
	CreatedAt        time.Time `json:"createdAt"`
}

// RegistryCredentialResponse wraps one credential as NVCF answers it.
type RegistryCredentialResponse struct {
	RegistryCredential RegistryCredential `json:"registryCredential"`
}

// RegistryCredentialList is what GET /v2/nvcf/registry-credentials answers.
type RegistryCredentialList struct {
	RegistryCredentials []RegistryCredential `json:"registryCredentials"`
}

// RecognizedRegistry is one well-known registry: its name and hostname.
type RecognizedRegistry struct {
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
}

// RecognizedRegistries is what GET /v2/nvcf/recognized-registries answers,
// keyed by artifact type.
type RecognizedRegistries struct {
	RecognizedRegistries map[string][]RecognizedRegistry `json:"recognizedRegistries"`
}
