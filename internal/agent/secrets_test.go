package agent

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

// TestDecodeSecrets reads each answer a control plane may give a secrets
// request: InstanceSecrets, the bare map of one from before image pull
// secrets (which ignores imagePull), and a refusal.
func TestDecodeSecrets(t *testing.T) {
	t.Parallel()
	config := []byte(`{"auths":{"nvcr.io":{"auth":"cm9ib3Q6aHVudGVyMg=="}}}`)
	full, _ := json.Marshal(model.InstanceSecrets{Secrets: map[string]string{"API_TOKEN": "t"}, DockerConfigJSON: config})
	none, _ := json.Marshal(model.InstanceSecrets{Secrets: map[string]string{}})
	tests := []struct {
		name       string
		answer     string
		want       map[string]string
		wantConfig string
		wantErr    string
	}{
		{name: "secrets and pull config", answer: string(full), want: map[string]string{"API_TOKEN": "t"}, wantConfig: string(config)},
		{name: "neither", answer: string(none), want: map[string]string{}},
		{name: "bare map", answer: `{"API_TOKEN":"t"}`, want: map[string]string{"API_TOKEN": "t"}},
		// A function secret may be called "secrets"; in a bare map it is
		// a string, never an object.
		{name: "bare map with a secret named secrets", answer: `{"secrets":"s","dockerConfigJson":"d"}`,
			want: map[string]string{"secrets": "s", "dockerConfigJson": "d"}},
		{name: "empty bare map", answer: `{}`, want: map[string]string{}},
		{name: "refused", answer: `{"error":"controller: instance i-1 is not placed on cluster c-1"}`, wantErr: "not placed on cluster c-1"},
		{name: "garbage", answer: `[1,2]`, wantErr: "undecodable"},
		{name: "garbage in the new shape", answer: `{"secrets":{"A":1}}`, wantErr: "undecodable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, cfg, err := decodeSecrets([]byte(tc.answer))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) || string(cfg) != tc.wantConfig {
				t.Errorf("got %v, config %q, err %v; want %v, %q", got, cfg, err, tc.want, tc.wantConfig)
			}
		})
	}
}
