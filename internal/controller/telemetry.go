package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// TelemetryStore is what answering an agent's telemetry request reads,
// beyond AgentStore: the function's account's telemetries and their
// sealed secrets. *store.Store has it; an AgentStore without it answers
// that no instance has telemetries.
type TelemetryStore interface {
	GetTelemetry(ctx context.Context, account, id string) (model.Telemetry, error)
	GetTelemetrySecret(ctx context.Context, id string) (store.SealedSecret, error)
}

// InstanceTelemetry opens where an instance's logs and metrics go, with
// the credentials to send them, for the agent of the cluster the
// instance is placed on and no other. Telemetries are read by the
// function's own account and opened bound to it, so no other account's
// can serve the function. The plaintext goes only into the answer.
func (a *Agents) InstanceTelemetry(ctx context.Context, clusterID, instanceID string) (model.InstanceTelemetry, error) {
	inst, err := a.placed(ctx, clusterID, instanceID)
	if err != nil {
		return model.InstanceTelemetry{}, err
	}
	f, err := a.st.GetFunction(ctx, inst.FunctionID, inst.FunctionVersionID)
	if err != nil {
		return model.InstanceTelemetry{}, fmt.Errorf("controller: function %s version %s of instance %s: %w",
			inst.FunctionID, inst.FunctionVersionID, instanceID, err)
	}
	ts, ok := a.st.(TelemetryStore)
	if !ok || f.Telemetries == nil {
		return model.InstanceTelemetry{}, nil
	}
	var out model.InstanceTelemetry
	if out.Logs, err = a.telemetryTarget(ctx, ts, f.NCAID, f.Telemetries.LogsTelemetryID); err != nil {
		return model.InstanceTelemetry{}, err
	}
	if out.Metrics, err = a.telemetryTarget(ctx, ts, f.NCAID, f.Telemetries.MetricsTelemetryID); err != nil {
		return model.InstanceTelemetry{}, err
	}
	return out, nil
}

// telemetryTarget reads and opens one telemetry; nil for no id or one
// deleted since the function named it.
func (a *Agents) telemetryTarget(ctx context.Context, ts TelemetryStore, account, id string) (*model.TelemetryTarget, error) {
	if id == "" {
		return nil, nil
	}
	// A NEK rotation between the read and the open is retried from fresh
	// reads, as with function secrets.
	for attempt := 1; ; attempt++ {
		t, err := ts.GetTelemetry(ctx, account, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("controller: telemetry %s: %w", id, err)
		}
		sealed, err := ts.GetTelemetrySecret(ctx, id)
		var plain []byte
		if err == nil {
			plain, err = a.keys.Open(ctx, secrets.Place{Account: account, FunctionID: store.TelemetrySecrets,
				VersionID: id, Name: store.TelemetrySecretName}, secrets.Sealed{NEK: sealed.NEK, Ciphertext: sealed.Ciphertext})
		}
		if err == nil {
			return &model.TelemetryTarget{TelemetryID: t.ID, Endpoint: t.Endpoint, Protocol: t.Protocol,
				Provider: t.Provider, Secret: plain}, nil
		}
		if !(errors.Is(err, secrets.ErrOpen) || errors.Is(err, store.ErrNotFound)) || attempt == 3 {
			a.log.Warn("controller: telemetry secret does not open", "telemetry", id, "account", account, "err", err)
			return nil, fmt.Errorf("controller: telemetry %s secret: %w", id, err)
		}
	}
}
