package validate

import (
	"maps"
	"mime"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Asset limits.
const (
	// MaxContentTypeLen is the longest contentType an asset may declare.
	MaxContentTypeLen = 255
	// MaxAssetDescriptionLen is the longest asset description; it travels
	// as the upload's x-amz-meta-nvcf-asset-description header too.
	MaxAssetDescriptionLen = 256
	// MaxAssetReferences is how many assets one call may name.
	MaxAssetReferences = 64
)

// AssetReferencesHeader is the invocation header that names the assets a
// call hands its function.
const AssetReferencesHeader = "NVCF-INPUT-ASSET-REFERENCES"

// Asset checks the body of POST /v2/nvcf/assets and normalises its content
// type (lower-case type and parameter names, canonical spacing), so the
// upload's Content-Type compares with what is stored.
func Asset(req *model.CreateAssetRequest) error {
	if req == nil {
		return problem.BadRequest(`an asset body is required: {"contentType":"image/png","description":"..."}`)
	}
	var p problems
	switch ct, why := mediaType(req.ContentType); {
	case req.ContentType == "":
		p.addf("contentType is required: the media type of the content you will upload, e.g. image/png or application/octet-stream")
	case len(req.ContentType) > MaxContentTypeLen:
		p.addf("contentType is %d characters long: at most %d are allowed", len(req.ContentType), MaxContentTypeLen)
	case why != "":
		p.addf("contentType %s is not a media type (%s): use type/subtype with optional parameters, e.g. image/png or text/plain; charset=utf-8", quote(req.ContentType), why)
	default:
		req.ContentType = ct
	}
	if req.Description == "" {
		p.addf("description is required: a short text saying what the asset is (the upload sends it again as x-amz-meta-nvcf-asset-description)")
	} else {
		checkText(&p, "description", req.Description, MaxAssetDescriptionLen, true)
	}
	return p.err()
}

// mediaType parses a media type and formats it canonically, or says why it
// is not one. Content-Disposition values ("inline") parse as media types
// too, so a missing subtype is refused here.
func mediaType(s string) (string, string) {
	mt, params, err := mime.ParseMediaType(s)
	if err != nil {
		return "", err.Error()
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || typ == "" || sub == "" {
		return "", "no /subtype"
	}
	out := mime.FormatMediaType(mt, params)
	if out == "" {
		return "", "a parameter cannot be written back"
	}
	return out, ""
}

// AssetUploadContentType checks an upload's Content-Type header against the
// content type its asset declared: the same media type and parameters, as a
// pre-signed S3 URL signed with the type requires.
func AssetUploadContentType(declared, header string) error {
	if strings.TrimSpace(header) == "" {
		return problem.BadRequest("the upload has no Content-Type: send Content-Type: %s, as the asset declared when it was created", declared)
	}
	gotType, gotParams, err := mime.ParseMediaType(header)
	wantType, wantParams, werr := mime.ParseMediaType(declared)
	if err != nil || werr != nil || gotType != wantType || !maps.Equal(gotParams, wantParams) {
		return problem.BadRequest("the upload's Content-Type %s does not match the asset's contentType %s: send the declared type, or create a new asset for this content",
			quote(header), quote(declared))
	}
	return nil
}

// AssetReferences parses an NVCF-INPUT-ASSET-REFERENCES header (the values
// of every occurrence, joined with commas): asset ids separated by commas,
// blanks around them and empty entries ignored (clients send "id,"), each
// named once, in the order given. An absent header is no assets.
func AssetReferences(header string) ([]string, error) {
	var (
		ids  []string
		seen = map[string]bool{}
		p    problems
	)
	for i, raw := range strings.Split(header, ",") {
		id := strings.TrimSpace(raw)
		if id == "" || seen[id] {
			continue
		}
		if ID("asset", id) != nil {
			p.addf("header %s entry %d, %s, is not an asset id: use the assetId POST /v2/nvcf/assets answered (1-%d letters, digits and '-')",
				AssetReferencesHeader, i+1, quote(id), MaxIDLen)
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if len(ids) > MaxAssetReferences {
		return nil, problem.BadRequest("header %s names %d assets: at most %d are allowed per call; pack more files into one archive asset",
			AssetReferencesHeader, len(ids), MaxAssetReferences)
	}
	return ids, nil
}
