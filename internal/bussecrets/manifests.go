package bussecrets

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Names of the Secrets in the kubernetes output. The hub's go to the
// control plane's namespace; a site's (cpc-<id>.yaml) to its agent's, under
// the same names at every site.
const (
	SecretCA          = "gantry-bus-ca"         // ca.yaml: the CA and its key; not for any cluster
	SecretHubTLS      = "gantry-nats-tls"       // kubernetes.io/tls: ca.crt, tls.crt, tls.key
	SecretHubNKeys    = "gantry-nats-nkeys"     // operator.seed/.pubkey, account.seed/.pubkey
	SecretAgentTLS    = "gantry-agent-nats-tls" // kubernetes.io/tls: ca.crt, tls.crt, tls.key
	SecretAgentNKey   = "gantry-agent-nkey"     // seed, pubkey
	typeTLS           = "kubernetes.io/tls"
	typeOpaque        = "Opaque"
	manifestCA        = "ca.yaml"
	manifestHub       = "csc.yaml"
	manifestCPCPrefix = "cpc-"
)

// Namespaces of the kubernetes output.
type Namespaces struct {
	Hub   string // the control plane's (default gantry)
	Agent string // every agent's (default gantry-agent)
}

// secretSpec is one Secret of a manifest: its data keys and the layout
// paths they hold.
type secretSpec struct {
	name, namespace, typ string
	keys                 [][2]string // data key, layout path
}

// manifestFor is the manifest file and Secrets a layout path belongs to.
func manifestsOf(ns Namespaces, cpcs []string) map[string][]secretSpec {
	tls := func(dir string) [][2]string {
		return [][2]string{{"ca.crt", dir + "/ca.crt"}, {"tls.crt", dir + "/tls.crt"}, {"tls.key", dir + "/tls.key"}}
	}
	m := map[string][]secretSpec{
		manifestCA: {{name: SecretCA, namespace: ns.Hub, typ: typeOpaque, keys: [][2]string{{"ca.crt", caCert}, {"ca.key", caKey}}}},
		manifestHub: {
			{name: SecretHubTLS, namespace: ns.Hub, typ: typeTLS, keys: tls("csc/tls")},
			{name: SecretHubNKeys, namespace: ns.Hub, typ: typeOpaque, keys: [][2]string{
				{"operator.seed", "csc/nkeys/operator/seed"}, {"operator.pubkey", "csc/nkeys/operator/pubkey"},
				{"account.seed", "csc/nkeys/account/seed"}, {"account.pubkey", "csc/nkeys/account/pubkey"}}},
		},
	}
	for _, id := range cpcs {
		m[manifestCPCPrefix+id+".yaml"] = []secretSpec{
			{name: SecretAgentTLS, namespace: ns.Agent, typ: typeTLS, keys: tls("cpc/" + id + "/tls")},
			{name: SecretAgentNKey, namespace: ns.Agent, typ: typeOpaque, keys: [][2]string{
				{"seed", "cpc/" + id + "/nkeys/user/seed"}, {"pubkey", "cpc/" + id + "/nkeys/user/pubkey"}}},
		}
	}
	return m
}

// secret is the part of a v1 Secret the manifests hold.
type secret struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Type string            `json:"type"`
	Data map[string][]byte `json:"data"`
}

// ReadManifests loads the layout from the Secret manifests under dir: ca.yaml,
// csc.yaml and every cpc-<id>.yaml.
func ReadManifests(dir string, ns Namespaces) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("bussecrets: %w", err)
	}
	var cpcs []string
	for _, e := range entries {
		if id, ok := strings.CutPrefix(e.Name(), manifestCPCPrefix); ok && strings.HasSuffix(id, ".yaml") {
			cpcs = append(cpcs, strings.TrimSuffix(id, ".yaml"))
		}
	}
	have := map[string][]byte{}
	for file, specs := range manifestsOf(ns, cpcs) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("bussecrets: %w", err)
		}
		byName := map[string]secret{}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var s secret
			if err := yaml.Unmarshal(doc, &s); err != nil {
				return nil, fmt.Errorf("%w: %s does not parse as Secret manifests (%v): remove it to generate it again", ErrInvalid, file, err)
			}
			if s.Kind == "Secret" {
				byName[s.Metadata.Name] = s
			}
		}
		for _, spec := range specs {
			for _, kp := range spec.keys {
				if v, ok := byName[spec.name].Data[kp[0]]; ok {
					have[kp[1]] = v
				}
			}
		}
	}
	return have, nil
}

// WriteManifests writes the manifests that outs complete: each manifest
// file whole, from have and outs, mode 0600 (they hold keys); a manifest
// file is never replaced, so outs may only fill manifests that do not exist
// yet.
func WriteManifests(dir string, ns Namespaces, cpcs []string, have map[string][]byte, outs []Output) ([]string, error) {
	all := map[string][]byte{}
	for p, b := range have {
		all[p] = b
	}
	added := map[string]bool{}
	for _, o := range outs {
		all[o.Path], added[o.Path] = o.Data, true
	}
	specs := manifestsOf(ns, cpcs)
	files := make([]string, 0, len(specs))
	for f := range specs {
		files = append(files, f)
	}
	slices.Sort(files)
	var written []string
	for _, file := range files {
		var docs [][]byte
		touched := false
		for _, spec := range specs[file] {
			s := secret{APIVersion: "v1", Kind: "Secret", Type: spec.typ, Data: map[string][]byte{}}
			s.Metadata.Name, s.Metadata.Namespace = spec.name, spec.namespace
			s.Metadata.Labels = map[string]string{"app.kubernetes.io/managed-by": "gantry-bus-gen-secrets"}
			for _, kp := range spec.keys {
				s.Data[kp[0]] = all[kp[1]]
				touched = touched || added[kp[1]]
			}
			doc, err := yaml.Marshal(s)
			if err != nil {
				return nil, fmt.Errorf("bussecrets: %w", err)
			}
			docs = append(docs, doc)
		}
		if !touched {
			continue
		}
		path := filepath.Join(dir, file)
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("%w: %s lacks some of its keys: remove it to generate it again", ErrInvalid, file)
		}
		head := "# Generated by gantry bus gen-secrets; holds private keys: apply it, do not commit it.\n"
		if file == manifestCA {
			head = "# Generated by gantry bus gen-secrets: the bus CA and its private key. Keep it with the\n" +
				"# other outputs, offline; do not apply it: gen-secrets needs it to issue new sites.\n"
		}
		body := append([]byte(head), bytes.Join(docs, []byte("---\n"))...)
		if err := writeNew(path, body, 0o600); err != nil {
			return nil, err
		}
		written = append(written, file)
	}
	return written, nil
}
