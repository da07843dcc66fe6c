package model

import "time"

// CheckStatus is the outcome of one platform check.
type CheckStatus string

// Check outcomes, from best to worst.
const (
	CheckOK   CheckStatus = "ok"
	CheckWarn CheckStatus = "warn"
	CheckFail CheckStatus = "fail"
)

// Worse reports whether a is worse than b.
func (a CheckStatus) Worse(b CheckStatus) bool { return checkRank[a] > checkRank[b] }

var checkRank = map[CheckStatus]int{CheckOK: 0, CheckWarn: 1, CheckFail: 2}

// StatusCheck is one component's check in GET /v1/gantry/status: its name,
// outcome, a message saying what to do about it, and detail lines.
type StatusCheck struct {
	Name    string      `json:"name"`
	Status  CheckStatus `json:"status"`
	Message string      `json:"message"`
	Details []string    `json:"details,omitempty"`
}

// PlatformStatus is the answer of GET /v1/gantry/status. Status is the
// worst of the checks; Healthy is false once any check failed (warnings
// leave it healthy).
type PlatformStatus struct {
	Status    CheckStatus   `json:"status"`
	Healthy   bool          `json:"healthy"`
	CheckedAt time.Time     `json:"checkedAt"`
	Checks    []StatusCheck `json:"checks"`
}
