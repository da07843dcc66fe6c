package cli

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/internal/bus"
)

// newBusCmd groups the commands about the event bus itself (NATS), as
// opposed to what travels on it.
func newBusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bus",
		Short: "The event bus (NATS) between the control plane and the GPU clusters",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBusGenSecretsCmd())
	return cmd
}

// addNATSTLSFlags adds --nats-tls-cert, --nats-tls-key and --nats-tls-ca,
// whose meaning depends on the side (server says whether this process
// serves NATS).
func addNATSTLSFlags(f *pflag.FlagSet, t *bus.TLSFiles, server bool) {
	if server {
		f.StringVar(&t.Cert, "nats-tls-cert", "", "PEM certificate of the embedded NATS's client and MQTT listeners (TLS on both); with --nats-url, this server's client certificate")
		f.StringVar(&t.Key, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
		f.StringVar(&t.CA, "nats-tls-ca", "", "PEM CA bundle: clients of the embedded NATS must present a certificate it signed (mTLS; their token is still required); with --nats-url, the CA of that server's certificate")
		return
	}
	f.StringVar(&t.CA, "nats-tls-ca", "", "PEM CA bundle that signed the NATS server's certificate (default: the system's roots); a tls:// NATS URL or any --nats-tls-* flag turns TLS on")
	f.StringVar(&t.Cert, "nats-tls-cert", "", "PEM client certificate to present to NATS (when the server verifies clients)")
	f.StringVar(&t.Key, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
}

// addNATSInsecureFlag adds --nats-insecure.
func addNATSInsecureFlag(f *pflag.FlagSet, v *bool) {
	f.BoolVar(v, "nats-insecure", false, "let the embedded NATS or MQTT listen beyond loopback without TLS (refused otherwise: credentials and secret values would cross the network in cleartext)")
}

// mqttScheme is the scheme of the MQTT URL the banners print: mqtts when
// the listener speaks TLS.
func mqttScheme(t bus.TLSFiles) string {
	if t.Cert != "" {
		return "mqtts"
	}
	return "mqtt"
}

// addNATSLeafFlags adds --nats-leaf-listen and --nats-leaf-keys.
func addNATSLeafFlags(f *pflag.FlagSet, listen, keys *string) {
	f.StringVar(listen, "nats-leaf-listen", "", "accept the GPU clusters' leaf nodes (gantry agent --leaf) on the embedded NATS here (host:port, e.g. 0.0.0.0:7422); TLS with --nats-tls-*, plaintext only on loopback unless --nats-insecure")
	f.StringVar(keys, "nats-leaf-keys", "", "with --nats-leaf-listen: the --out directory of gantry bus gen-secrets; a leaf must sign with its site's key, <dir>/cpc/<cluster-id>/nkeys/user (re-read at each leaf connect, so sites added later are admitted)")
}
