package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// The data of each kind of event.

// FunctionData is the data of function.created and function.deleted (one
// version).
type FunctionData struct {
	FunctionID string `json:"functionId"`
	VersionID  string `json:"versionId"`
	Name       string `json:"name"`
}

// DeploymentData is the data of deployment.status_changed (From is empty
// for a new deployment) and deployment.deleted.
type DeploymentData struct {
	FunctionID   string               `json:"functionId"`
	VersionID    string               `json:"versionId"`
	DeploymentID string               `json:"deploymentId"`
	From         model.FunctionStatus `json:"from,omitempty"`
	To           model.FunctionStatus `json:"to,omitempty"`
	HealthInfo   []model.HealthInfo   `json:"healthInfo,omitempty"`
}

// ScaleData is the data of deployment.scaled: one autoscaler decision for
// one GPU spec.
type ScaleData struct {
	FunctionID   string    `json:"functionId"`
	VersionID    string    `json:"versionId"`
	DeploymentID string    `json:"deploymentId"`
	SpecIndex    int       `json:"specIndex"`
	GPU          string    `json:"gpu,omitempty"`
	InstanceType string    `json:"instanceType,omitempty"`
	From         int       `json:"from"`
	To           int       `json:"to"`
	Reason       string    `json:"reason"`
	At           time.Time `json:"at"`
}

// InstanceData is the data of instance.started, .stopped and .failed.
type InstanceData struct {
	InstanceID   string               `json:"instanceId"`
	FunctionID   string               `json:"functionId"`
	VersionID    string               `json:"versionId"`
	DeploymentID string               `json:"deploymentId"`
	ClusterID    string               `json:"clusterId"`
	GPU          string               `json:"gpu,omitempty"`
	InstanceType string               `json:"instanceType,omitempty"`
	Status       model.InstanceStatus `json:"status"`
	Reason       string               `json:"reason,omitempty"`
	Restarts     int                  `json:"restarts,omitempty"`
}

// ClusterData is the data of cluster.ready and cluster.not_ready.
type ClusterData struct {
	ClusterID string              `json:"clusterId"`
	Name      string              `json:"name"`
	From      model.ClusterStatus `json:"from,omitempty"`
	To        model.ClusterStatus `json:"to"`
}

// KeyData is the data of key.rotated: the account's key (nek), or the
// master key that wraps every account's key (mek), moved from one version
// to the next and the old one retired.
type KeyData struct {
	Key  string `json:"key"`
	From int    `json:"from"`
	To   int    `json:"to"`
}

// History is what deriving needs besides the change itself: reads of other
// keys as they were at a revision (the instance record of a state, the
// deployment of a scale). *store.Store satisfies it.
type History interface {
	ReadAt(ctx context.Context, key string, rev int64) ([]byte, error)
	KeysAt(ctx context.Context, prefix string, rev int64) ([]string, error)
}

var _ History = (*store.Store)(nil)

// draft is an event before it has a source: what Source publishes.
type draft struct {
	id       string
	account  string
	kind     string
	subject  string
	function string
	time     time.Time
	data     any
	revision int64
}

// derive returns the events one change makes, in order. now stamps events
// whose record carries no time of its own. Records that do not decode are
// skipped (the store wrote them; an old format is not an event).
func derive(ctx context.Context, h History, c store.Change, now time.Time) ([]draft, error) {
	prefix, _, _ := strings.Cut(c.Key, "/")
	id := func(n int) string { return fmt.Sprintf("%d:%s:%d", c.Revision, c.Key, n) }
	mk := func(n int, account, kind, subject, function string, at time.Time, data any) draft {
		if at.IsZero() {
			at = now
		}
		return draft{id: id(n), account: account, kind: kind, subject: subject, function: function,
			time: at.UTC(), data: data, revision: c.Revision}
	}
	switch prefix {
	case "functions":
		var f model.Function
		switch {
		case c.Deleted && c.Prev != nil:
			if decode(c.Prev, &f) {
				return []draft{mk(0, f.NCAID, KindFunctionDeleted, fnSubject(f.ID, f.VersionID), f.ID, time.Time{},
					FunctionData{FunctionID: f.ID, VersionID: f.VersionID, Name: f.Name})}, nil
			}
		case !c.Deleted && c.Prev == nil:
			if decode(c.Value, &f) {
				return []draft{mk(0, f.NCAID, KindFunctionCreated, fnSubject(f.ID, f.VersionID), f.ID, f.CreatedAt,
					FunctionData{FunctionID: f.ID, VersionID: f.VersionID, Name: f.Name})}, nil
			}
		}
	case "deployments":
		var cur, prev model.Deployment
		hadPrev := c.Prev != nil && decode(c.Prev, &prev)
		if c.Deleted {
			if hadPrev {
				return []draft{mk(0, prev.NCAID, KindDeploymentDeleted, depSubject(prev.ID), prev.FunctionID, time.Time{},
					DeploymentData{FunctionID: prev.FunctionID, VersionID: prev.FunctionVersionID, DeploymentID: prev.ID, From: prev.FunctionStatus})}, nil
			}
			return nil, nil
		}
		if !decode(c.Value, &cur) || (hadPrev && prev.FunctionStatus == cur.FunctionStatus && prev.ID == cur.ID) {
			return nil, nil
		}
		from := prev.FunctionStatus
		if prev.ID != cur.ID {
			from = "" // a new deployment of the version
		}
		return []draft{mk(0, cur.NCAID, KindDeploymentStatus, depSubject(cur.ID), cur.FunctionID, time.Time{},
			DeploymentData{FunctionID: cur.FunctionID, VersionID: cur.FunctionVersionID, DeploymentID: cur.ID,
				From: from, To: cur.FunctionStatus, HealthInfo: cur.HealthInfo})}, nil
	case "scales":
		return deriveScale(ctx, h, c, mk)
	case "instance-state":
		return deriveInstance(ctx, h, c, mk)
	case "clusters":
		var cur, prev model.Cluster
		if c.Deleted || !decode(c.Value, &cur) {
			return nil, nil
		}
		hadPrev := c.Prev != nil && decode(c.Prev, &prev)
		if (hadPrev && prev.Status == cur.Status) || (!hadPrev && cur.Status != model.ClusterReady) {
			return nil, nil
		}
		k, at := KindClusterReady, time.Time{}
		switch cur.Status {
		case model.ClusterReady:
		case model.ClusterNotReady:
			k, at = KindClusterNotReady, cur.NotReadySince
		default:
			return nil, nil
		}
		return []draft{mk(0, cur.NCAID, k, "clusters/"+cur.ID, "", at,
			ClusterData{ClusterID: cur.ID, Name: cur.Name, From: prev.Status, To: cur.Status})}, nil
	case "ess":
		return deriveRotation(ctx, h, c, mk)
	}
	return nil, nil
}

type mkFunc func(n int, account, kind, subject, function string, at time.Time, data any) draft

// deriveScale makes one deployment.scaled per decision the change added.
func deriveScale(ctx context.Context, h History, c store.Change, mk mkFunc) ([]draft, error) {
	var cur, prev model.Scale
	if c.Deleted || !decode(c.Value, &cur) {
		return nil, nil
	}
	if c.Prev != nil && !decode(c.Prev, &prev) {
		prev = model.Scale{}
	}
	type added struct {
		spec int
		d    model.ScalingDecision
	}
	var news []added
	for si, sp := range cur.Specs {
		var old []model.ScalingDecision
		if prev.DeploymentID == cur.DeploymentID && si < len(prev.Specs) {
			old = prev.Specs[si].Decisions
		}
		for _, d := range sp.Decisions {
			if !containsDecision(old, d) {
				news = append(news, added{si, d})
			}
		}
	}
	if len(news) == 0 {
		return nil, nil
	}
	var dep model.Deployment
	raw, err := h.ReadAt(ctx, "deployments/"+cur.FunctionVersionID, c.Revision)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // the deployment went in the same change
	}
	if err != nil {
		return nil, err
	}
	if !decode(raw, &dep) || dep.ID != cur.DeploymentID {
		return nil, nil
	}
	out := make([]draft, 0, len(news))
	for n, a := range news {
		sd := ScaleData{FunctionID: dep.FunctionID, VersionID: dep.FunctionVersionID, DeploymentID: dep.ID, SpecIndex: a.spec,
			From: a.d.From, To: a.d.To, Reason: a.d.Reason, At: a.d.At}
		if a.spec < len(dep.Specs) {
			sd.GPU, sd.InstanceType = dep.Specs[a.spec].GPU, dep.Specs[a.spec].InstanceType
		}
		out = append(out, mk(n, dep.NCAID, KindDeploymentScaled, depSubject(dep.ID), dep.FunctionID, a.d.At, sd))
	}
	return out, nil
}

func containsDecision(ds []model.ScalingDecision, d model.ScalingDecision) bool {
	for _, x := range ds {
		if x.At.Equal(d.At) && x.From == d.From && x.To == d.To && x.Reason == d.Reason {
			return true
		}
	}
	return false
}

// deriveInstance turns an observed state's transition into started (now
// RUNNING), failed (now ERRORED) or stopped (TERMINATED, DELETED, PREEMPTED,
// or the state removed with its instance when the control plane released
// it). Who owns the instance comes from its record just before the change.
func deriveInstance(ctx context.Context, h History, c store.Change, mk mkFunc) ([]draft, error) {
	var cur, prev model.InstanceState
	hadPrev := c.Prev != nil && decode(c.Prev, &prev)
	var k string
	switch {
	case c.Deleted:
		if !hadPrev || stopped(prev.Status) {
			return nil, nil
		}
		k, cur = KindInstanceStopped, prev
		cur.Reason = "released by the control plane"
	case !decode(c.Value, &cur):
		return nil, nil
	case hadPrev && prev.Status == cur.Status:
		return nil, nil
	case cur.Status == model.InstanceRunning:
		k = KindInstanceStarted
	case cur.Status == model.InstanceErrored:
		k = KindInstanceFailed
	case stopped(cur.Status):
		k = KindInstanceStopped
	default:
		return nil, nil
	}
	id := strings.TrimPrefix(c.Key, "instance-state/")
	raw, err := h.ReadAt(ctx, "instances/"+id, c.Revision-1)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var inst model.Instance
	if !decode(raw, &inst) {
		return nil, nil
	}
	at := cur.UpdatedAt
	if c.Deleted {
		at = time.Time{}
	}
	return []draft{mk(0, inst.NCAID, k, "instances/"+inst.ID, inst.FunctionID, at, InstanceData{
		InstanceID: inst.ID, FunctionID: inst.FunctionID, VersionID: inst.FunctionVersionID, DeploymentID: inst.DeploymentID,
		ClusterID: cur.ClusterID, GPU: inst.GPU, InstanceType: inst.InstanceType, Status: cur.Status, Reason: cur.Reason,
		Restarts: cur.Restarts})}, nil
}

func stopped(s model.InstanceStatus) bool {
	return s == model.InstanceTerminated || s == model.InstanceDeleted || s == model.InstancePreempted
}

// deriveRotation makes key.rotated when a rotation's record goes, which
// happens only when it finished: for the account of a NEK rotation, and for
// every account holding a NEK after a MEK rotation (each account's key is
// now wrapped by the new master key).
func deriveRotation(ctx context.Context, h History, c store.Change, mk mkFunc) ([]draft, error) {
	rest, ok := strings.CutPrefix(c.Key, "ess/rotations/")
	if !ok || !c.Deleted || c.Prev == nil {
		return nil, nil
	}
	var r store.Rotation
	if !decode(c.Prev, &r) {
		return nil, nil
	}
	data := KeyData{Key: r.Kind, From: r.From, To: r.Target}
	switch {
	case rest == store.RotationMEK:
		keys, err := h.KeysAt(ctx, "ess/heads/", c.Revision)
		if err != nil {
			return nil, err
		}
		out := make([]draft, 0, len(keys))
		for n, k := range keys {
			account, err := url.PathUnescape(strings.TrimPrefix(k, "ess/heads/"))
			if err != nil || account == SystemAccount {
				continue
			}
			out = append(out, mk(n, account, KindKeyRotated, "keys/mek", "", time.Time{}, data))
		}
		return out, nil
	case strings.HasPrefix(rest, store.RotationNEK+"/"):
		if r.Account == SystemAccount {
			return nil, nil
		}
		return []draft{mk(0, r.Account, KindKeyRotated, "keys/nek", "", time.Time{}, data)}, nil
	}
	return nil, nil
}

func fnSubject(fnID, versionID string) string { return "functions/" + fnID + "/versions/" + versionID }
func depSubject(id string) string             { return "deployments/" + id }

func decode(b []byte, v any) bool { return b != nil && json.Unmarshal(b, v) == nil }
