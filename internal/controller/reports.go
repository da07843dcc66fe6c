package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// AgentStore is what the agent-facing handlers need.
type AgentStore interface {
	GetCluster(ctx context.Context, id string) (model.Cluster, error)
	UpdateCluster(ctx context.Context, c *model.Cluster) error
	PutHeartbeat(ctx context.Context, clusterID string, hb store.Heartbeat) error
	GetInstance(ctx context.Context, id string) (model.Instance, error)
	PutInstanceState(ctx context.Context, st model.InstanceState) error
	ListSecrets(ctx context.Context, fnID, versionID string) ([]store.SealedSecret, error)
	// Image pull configs: the function's image and account, and the
	// account's registry credentials (listed by account only).
	GetFunction(ctx context.Context, fnID, versionID string) (model.Function, error)
	ListRegistryCredentials(ctx context.Context, account string) ([]model.RegistryCredential, error)
	GetRegistrySecret(ctx context.Context, id string) (store.SealedSecret, error)
}

// Opener decrypts sealed secrets.
type Opener interface {
	Open(ctx context.Context, place secrets.Place, sealed secrets.Sealed) ([]byte, error)
}

// ErrNotRegistered answers an agent whose cluster was deleted; its text is
// what the agent matches to know it must stop.
var ErrNotRegistered = errors.New("controller: cluster is not registered")

// Agents serves the NATS endpoints agents call: heartbeat reports and secret
// requests. Every replica runs it in one queue group, so any replica can
// answer any agent.
type Agents struct {
	st   AgentStore
	keys Opener
	log  *slog.Logger

	mu   sync.Mutex
	seen map[string]seenState // last state this replica wrote, by instance
}

// seenState remembers a write so unchanged heartbeats cost no etcd write.
// Entries go stale after seenTTL: with several replicas another one may
// have written since, so a stale entry forces a fresh write.
type seenState struct {
	st model.InstanceState
	at time.Time
}

const seenTTL = 30 * time.Second

// NewAgents builds the handlers.
func NewAgents(st AgentStore, keys Opener, log *slog.Logger) *Agents {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agents{st: st, keys: keys, log: log, seen: map[string]seenState{}}
}

// QueueGroup is the NATS queue group of the control plane's agent handlers.
const QueueGroup = "gantry-controlplane"

// Subscribe starts serving on nc; drain or unsubscribe the returned
// subscriptions to stop.
func (a *Agents) Subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	r, err := nc.QueueSubscribe(bus.ReportSubjectAll, QueueGroup, a.handleReport)
	if err != nil {
		return nil, fmt.Errorf("controller: subscribe reports: %w", err)
	}
	s, err := nc.QueueSubscribe(bus.SecretsSubjectAll, QueueGroup, a.handleSecrets)
	if err != nil {
		r.Unsubscribe()
		return nil, fmt.Errorf("controller: subscribe secrets: %w", err)
	}
	return []*nats.Subscription{r, s}, nil
}

// reply answers a request with {"error": ...} or the JSON of v.
func reply(msg *nats.Msg, v any, err error) {
	if msg.Reply == "" {
		return
	}
	if err != nil {
		v = map[string]string{"error": err.Error()}
	}
	b, _ := json.Marshal(v)
	_ = msg.Respond(b)
}

func (a *Agents) handleReport(msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clusterID, ok := bus.FromAgent(msg)
	if !ok || clusterID != bus.ClusterFromSubject(msg.Subject) {
		return // not sent by this cluster's agent (see bus.FromAgent)
	}
	var rep model.AgentReport
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		reply(msg, nil, fmt.Errorf("controller: undecodable report: %w", err))
		return
	}
	reply(msg, map[string]string{"status": "ok"}, a.Report(ctx, clusterID, rep))
}

// Report applies one agent report: the cluster's inventory and heartbeat, and
// every instance state that changed.
func (a *Agents) Report(ctx context.Context, clusterID string, rep model.AgentReport) error {
	c, err := a.st.GetCluster(ctx, clusterID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotRegistered, clusterID)
	}
	if err != nil {
		return err
	}
	if err := a.st.PutHeartbeat(ctx, clusterID, store.Heartbeat{At: time.Now().UTC(), PeriodMillis: rep.HeartbeatMillis,
		InstanceTypes: rep.InstanceTypes, Idle: rep.Idle, Standby: rep.Standby, Busy: rep.Busy}); err != nil {
		return err
	}
	// The cluster record changes only when something the reconciler cares
	// about does; a plain heartbeat must not wake it.
	if c.Status != model.ClusterReady || c.AgentVersion != rep.AgentVersion || !reflect.DeepEqual(c.Inventory, rep.Inventory) {
		c.Inventory, c.AgentVersion = rep.Inventory, rep.AgentVersion
		c.Status, c.NotReadySince = model.ClusterReady, time.Time{}
		if err := a.st.UpdateCluster(ctx, &c); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	var errs []error
	for _, st := range rep.Instances {
		st.ClusterID = clusterID
		a.mu.Lock()
		prev, ok := a.seen[st.InstanceID]
		a.mu.Unlock()
		if ok && time.Since(prev.at) < seenTTL && sameState(prev.st, st) {
			continue
		}
		inst, err := a.st.GetInstance(ctx, st.InstanceID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && inst.ClusterID != clusterID) {
			a.mu.Lock()
			delete(a.seen, st.InstanceID)
			a.mu.Unlock()
			continue // released or moved; the agent will stop it
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.UpdatedAt = time.Now().UTC()
		if err := a.st.PutInstanceState(ctx, st); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		a.seen[st.InstanceID] = seenState{st: st, at: time.Now()}
		a.mu.Unlock()
	}
	return errors.Join(errs...)
}

func sameState(a, b model.InstanceState) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.Restarts == b.Restarts && slices.Equal(a.GPUs, b.GPUs)
}

// handleSecrets answers an agent starting an instance: the secret values
// alone, or, when it asks for the image pull config too, both as
// model.InstanceSecrets. Only the instance's own cluster is answered, on
// its agent's inbox (bus.FromAgent), which no other agent can read.
func (a *Agents) handleSecrets(msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var req model.InstanceSecretsRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		reply(msg, nil, errors.New("controller: undecodable secrets request"))
		return
	}
	clusterID, ok := bus.FromAgent(msg)
	if !ok || clusterID != bus.ClusterFromSubject(msg.Subject) {
		return
	}
	if req.Telemetry {
		out, err := a.InstanceTelemetry(ctx, clusterID, req.InstanceID)
		reply(msg, out, err)
		return
	}
	if req.ImagePull {
		out, err := a.InstanceSecrets(ctx, clusterID, req.InstanceID)
		reply(msg, out, err)
		return
	}
	vals, err := a.Secrets(ctx, clusterID, req.InstanceID)
	reply(msg, vals, err)
}

// openAll decrypts the sealed secrets of an instance's function version.
func (a *Agents) openAll(ctx context.Context, inst model.Instance, sealed []store.SealedSecret) (map[string]string, error) {
	out := make(map[string]string, len(sealed))
	for _, s := range sealed {
		plain, err := a.keys.Open(ctx, secrets.Place{Account: inst.NCAID, FunctionID: inst.FunctionID,
			VersionID: inst.FunctionVersionID, Name: s.Name}, secrets.Sealed{NEK: s.NEK, Ciphertext: s.Ciphertext})
		if err != nil {
			a.log.Warn("controller: secret does not open", "function", inst.FunctionID, "version", inst.FunctionVersionID, "secret", s.Name, "err", err)
			return nil, fmt.Errorf("controller: secret %s of function %s does not decrypt: %w", s.Name, inst.FunctionID, err)
		}
		out[s.Name] = string(plain)
	}
	return out, nil
}

// Secrets opens the secrets of the function an instance runs, for the agent
// of the cluster the instance is placed on and no other.
func (a *Agents) Secrets(ctx context.Context, clusterID, instanceID string) (map[string]string, error) {
	inst, err := a.placed(ctx, clusterID, instanceID)
	if err != nil {
		return nil, err
	}
	return a.openSecrets(ctx, inst)
}

// InstanceSecrets opens everything secret an instance starts with: its
// function's secrets and the docker config its image is pulled with (see
// imagePullConfig), for the agent of the cluster the instance is placed on
// and no other.
func (a *Agents) InstanceSecrets(ctx context.Context, clusterID, instanceID string) (model.InstanceSecrets, error) {
	inst, err := a.placed(ctx, clusterID, instanceID)
	if err != nil {
		return model.InstanceSecrets{}, err
	}
	vals, err := a.openSecrets(ctx, inst)
	if err != nil {
		return model.InstanceSecrets{}, err
	}
	f, err := a.st.GetFunction(ctx, inst.FunctionID, inst.FunctionVersionID)
	if err != nil {
		return model.InstanceSecrets{}, fmt.Errorf("controller: function %s version %s of instance %s: %w",
			inst.FunctionID, inst.FunctionVersionID, instanceID, err)
	}
	pull, err := a.imagePullConfig(ctx, f, inst)
	if err != nil {
		return model.InstanceSecrets{}, err
	}
	if vals == nil {
		vals = map[string]string{}
	}
	return model.InstanceSecrets{Secrets: vals, DockerConfigJSON: pull}, nil
}

// placed reads an instance, refusing it to any cluster but its own.
func (a *Agents) placed(ctx context.Context, clusterID, instanceID string) (model.Instance, error) {
	inst, err := a.st.GetInstance(ctx, instanceID)
	if err != nil || inst.ClusterID != clusterID {
		return model.Instance{}, fmt.Errorf("controller: instance %s is not placed on cluster %s", instanceID, clusterID)
	}
	return inst, nil
}

// openSecrets opens the secrets of the function version an instance runs.
func (a *Agents) openSecrets(ctx context.Context, inst model.Instance) (map[string]string, error) {
	// A NEK rotation may re-encrypt a secret and erase the key it was sealed
	// with between the read and the open; reading again then finds it under
	// the new key. Only a ciphertext that fails on fresh reads is an error.
	var out map[string]string
	for attempt := 1; ; attempt++ {
		sealed, err := a.st.ListSecrets(ctx, inst.FunctionID, inst.FunctionVersionID)
		if err != nil {
			return nil, err
		}
		out, err = a.openAll(ctx, inst, sealed)
		if err == nil {
			break
		}
		if !errors.Is(err, secrets.ErrOpen) || attempt == 3 {
			return nil, err
		}
	}
	return out, nil
}
