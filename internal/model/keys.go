package model

import "time"

// KeyStatus is what GET /v1/gantry/keys/status answers: the master key
// (MEK) versions with how many account keys (NEKs) each wraps, every
// account's NEK versions with how many secrets each seals, and any rotation
// that is running or was interrupted.
type KeyStatus struct {
	ActiveMEK int         `json:"activeMek"`
	MEKs      []MEKStatus `json:"meks"`
	// Accounts is empty when counts were not asked for.
	Accounts []AccountKeys `json:"accounts,omitempty"`
	// LegacySecrets counts secrets still sealed with the pre-ESS key file.
	LegacySecrets int                   `json:"legacySecrets"`
	Rotations     []KeyRotationProgress `json:"rotations"`
	// Counted is false when the caller skipped the scans that fill the
	// counts (?counts=false), as progress polling does.
	Counted bool `json:"counted"`
}

// MEKStatus is one master key version.
type MEKStatus struct {
	Version int    `json:"version"`
	Status  string `json:"status"`
	// NEKs counts the account key versions it wraps.
	NEKs      int       `json:"neks"`
	CreatedAt time.Time `json:"createdAt"`
	RetiredAt time.Time `json:"retiredAt,omitzero"`
}

// AccountKeys is one account's key versions.
type AccountKeys struct {
	Account   string      `json:"account"`
	ActiveNEK int         `json:"activeNek"`
	NEKs      []NEKStatus `json:"neks"`
}

// NEKStatus is one account key version.
type NEKStatus struct {
	Version int    `json:"version"`
	Status  string `json:"status"`
	// MEK is the master key version that wraps it (0 once retired).
	MEK int `json:"mek,omitempty"`
	// Secrets counts the secrets it seals.
	Secrets   int       `json:"secrets"`
	CreatedAt time.Time `json:"createdAt"`
}

// Rotation states.
const (
	RotationRunning     = "running"
	RotationInterrupted = "interrupted"
)

// KeyRotationProgress is a rotation that has begun and not finished.
type KeyRotationProgress struct {
	// Kind is "mek" or "nek".
	Kind    string `json:"kind"`
	Account string `json:"account,omitempty"`
	From    int    `json:"from"`
	Target  int    `json:"target"`
	// Done of Total counts NEKs re-wrapped (mek) or secrets checked (nek);
	// Changed counts secrets re-encrypted (nek).
	Done    int `json:"done"`
	Total   int `json:"total"`
	Changed int `json:"changed,omitempty"`
	// State is running, or interrupted: run the same rotation again to
	// finish it with the same target version.
	State     string    `json:"state"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// KeyRotationResult is what a finished rotation did.
type KeyRotationResult struct {
	Kind    string `json:"kind"`
	Account string `json:"account,omitempty"`
	From    int    `json:"from"`
	Target  int    `json:"target"`
	// Resumed says this run finished a rotation an earlier run began.
	Resumed bool `json:"resumed"`
	// Rewrapped counts NEK records re-wrapped under the new MEK; Reencrypted
	// counts secrets re-encrypted under the new NEK (always 0 for a MEK
	// rotation).
	Rewrapped   int `json:"rewrapped"`
	Reencrypted int `json:"reencrypted"`
	// Retired lists the versions retired at the end.
	Retired []int   `json:"retired"`
	Seconds float64 `json:"seconds"`
}

// NEKRotateRequest is the body of POST /v1/gantry/keys/nek/rotate.
type NEKRotateRequest struct {
	Account string `json:"account"`
}
