package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
)

// fetchSecrets asks the control plane for an instance's secret values and,
// for a registry image, the docker config its image is pulled with. They
// live only in memory and in what the runtime hands the instance (its
// environment; on Kubernetes the instance's Secrets).
func (a *Agent) fetchSecrets(ctx context.Context, in model.DesiredInstance) (map[string]string, []byte, error) {
	pull := !strings.HasPrefix(in.ContainerImage, model.ProcessImagePrefix)
	if len(in.SecretNames) == 0 && !pull {
		return nil, nil, nil
	}
	req, _ := json.Marshal(model.InstanceSecretsRequest{InstanceID: in.InstanceID, ImagePull: pull})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := a.cfg.Conn.RequestWithContext(rctx, bus.SecretsSubject(a.cfg.ClusterID), req)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: fetching secrets: %w", err)
	}
	return decodeSecrets(msg.Data)
}

// decodeSecrets reads the control plane's answer to a secrets request:
// model.InstanceSecrets, or {"error": ...}, or, from a control plane that
// predates image pull secrets, the bare map of secret values. The bare
// map's values are all strings, which tells it from InstanceSecrets, whose
// "secrets" is an object. Errors never carry a value.
func decodeSecrets(data []byte) (map[string]string, []byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, nil, errors.New("agent: undecodable secrets answer")
	}
	if raw, ok := fields["secrets"]; ok && !strings.HasPrefix(string(raw), `"`) {
		var out model.InstanceSecrets
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, nil, errors.New("agent: undecodable secrets answer")
		}
		return out.Secrets, out.DockerConfigJSON, nil
	}
	var out map[string]string
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, nil, errors.New("agent: undecodable secrets answer")
	}
	if e, ok := out["error"]; ok && len(out) == 1 {
		return nil, nil, fmt.Errorf("agent: control plane refused secrets: %s", e)
	}
	return out, nil, nil
}
