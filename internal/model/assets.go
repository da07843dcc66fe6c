package model

import "time"

// CreateAssetRequest is the body of POST /v2/nvcf/assets: what the bytes
// uploaded later will be. NVCF requires both fields.
type CreateAssetRequest struct {
	ContentType string `json:"contentType"`
	Description string `json:"description"`
}

// Asset is an input asset of an account: a file uploaded once and handed to
// function calls that name it in NVCF-INPUT-ASSET-REFERENCES. It is what
// the store keeps and what every read answers; the bytes live in the
// object store. NVCF answers assetId, contentType and description; the
// other fields are Gantry's.
type Asset struct {
	ID          string `json:"assetId"`
	NCAID       string `json:"ncaId"`
	ContentType string `json:"contentType"`
	Description string `json:"description"`
	// Size is the uploaded content's length in bytes, Digest its SHA-256
	// ("SHA-256=<base64url>", as the object store reports it); both are
	// set once the content is in.
	Size       int64     `json:"size,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	UploadedAt time.Time `json:"uploadedAt,omitzero"`
	CreatedAt  time.Time `json:"createdAt"`
	// ExpiresAt is when the asset and its content are deleted; references
	// to it fail from then on.
	ExpiresAt time.Time `json:"expiresAt"`
	Revision  int64     `json:"-"`
}

// Uploaded reports whether the asset's content is in.
func (a Asset) Uploaded() bool { return !a.UploadedAt.IsZero() }

// CreateAssetResponse answers POST /v2/nvcf/assets as NVCF does: the new
// asset's id and where to PUT its content. The upload URL is pre-signed:
// it needs no credential and stops working at UploadExpiresAt (Gantry's).
type CreateAssetResponse struct {
	AssetID         string    `json:"assetId"`
	UploadURL       string    `json:"uploadUrl"`
	ContentType     string    `json:"contentType"`
	Description     string    `json:"description"`
	UploadExpiresAt time.Time `json:"uploadExpiresAt"`
	ExpiresAt       time.Time `json:"expiresAt"`
}

// AssetResponse wraps one asset as GET /v2/nvcf/assets/{id} answers it.
type AssetResponse struct {
	Asset Asset `json:"asset"`
}

// ListAssetsResponse is GET /v2/nvcf/assets.
type ListAssetsResponse struct {
	Assets []Asset `json:"assets"`
}
