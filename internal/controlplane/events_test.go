package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestMQTTNeedsEmbeddedNATS: --mqtt-listen with --nats-url is refused with
// what to do, rather than silently serving no MQTT.
func TestMQTTNeedsEmbeddedNATS(t *testing.T) {
	t.Parallel()
	s, err := controlplane.New(controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		EtcdEndpoints: []string{testutil.StartEtcdEndpoint(t)}, NATSURL: testutil.StartNATS(t),
		Events: controlplane.Events{MQTTListen: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.Start(ctx)
	s.Close()
	if err == nil || !strings.Contains(err.Error(), "enable MQTT on that server") {
		t.Fatalf("Start: %v", err)
	}
}
