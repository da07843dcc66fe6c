package bus

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AssetsBucket is the object store holding input assets' content, one
// object per asset (AssetObject), kept until the asset's record expires
// and the leading replica's sweep deletes both.
const AssetsBucket = "gantry_assets"

// AssetObject is the object name of an account's asset. The account is
// part of it, so no mistake in an id lookup can reach another account's
// bytes.
func AssetObject(account, assetID string) string { return account + "/" + assetID }

// AssetFetchSubject is where a worker asks for one of its call's assets:
// a gateway replica (queue group AssetFetchQueue) checks the grant the
// call carried and streams the content to the worker's endpoint (package
// stream) with the reply as its address.
const (
	AssetFetchSubject = "gantry.assets"
	AssetFetchQueue   = "gateways"
)

// Headers of assets on calls and fetches.
const (
	// HeaderAssets, on a call, lists the grants for the assets it
	// references (AssetGrant, comma-separated). Like every Gantry-*
	// header it never reaches the function.
	HeaderAssets = "Gantry-Assets"
	// HeaderAsset, on a fetch, is the one grant asked for; the call's
	// HeaderAccount goes with it.
	HeaderAsset = "Gantry-Asset"
)

// AssetGrant lets the holder fetch one asset of the call's account until
// Expires: the gateway signs it (auth.URLSigner) once it has checked that
// the asset exists, is the caller's and is uploaded.
type AssetGrant struct {
	ID        string
	Expires   time.Time
	Signature string
}

// String is the grant as it travels: id;expires(unix);signature.
func (g AssetGrant) String() string {
	return g.ID + ";" + strconv.FormatInt(g.Expires.Unix(), 10) + ";" + g.Signature
}

// ParseAssetGrant reads what AssetGrant.String wrote.
func ParseAssetGrant(s string) (AssetGrant, error) {
	parts := strings.Split(strings.TrimSpace(s), ";")
	if len(parts) != 3 || !isSubjectToken(parts[0]) || parts[2] == "" {
		return AssetGrant{}, fmt.Errorf("bus: malformed asset grant")
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return AssetGrant{}, fmt.Errorf("bus: malformed asset grant expiry")
	}
	return AssetGrant{ID: parts[0], Expires: time.Unix(exp, 0), Signature: parts[2]}, nil
}

// ParseAssetGrants reads a HeaderAssets value.
func ParseAssetGrants(header string) ([]AssetGrant, error) {
	var out []AssetGrant
	for s := range strings.SplitSeq(header, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		g, err := ParseAssetGrant(s)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// IsAgentInbox reports whether subject is under an agent's inbox, as the
// reply of a worker's asset fetch must be, so that a gateway never streams
// an asset onto another subject (a gateway's call stream, say) whoever
// asked.
func IsAgentInbox(subject string) bool {
	rest, ok := strings.CutPrefix(subject, agentInboxRoot)
	cluster, _, ok2 := strings.Cut(rest, ".")
	return ok && ok2 && isSubjectToken(cluster)
}
