package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// desiredStates builds every cluster's desired state from the instances that
// remain after sizing. Clusters with no instances get an empty state so their
// agents stop whatever they still run.
func desiredStates(w *world, keep map[specKey][]*model.Instance) map[string]model.DesiredState {
	out := map[string]model.DesiredState{}
	for k, insts := range keep {
		d := w.deployments[k.version]
		f, ok := w.functions[k.version]
		if !ok {
			continue
		}
		spec := d.Specs[k.index]
		for _, inst := range insts {
			if inst.ClusterID == "" {
				continue
			}
			ds := out[inst.ClusterID]
			ds.ClusterID = inst.ClusterID
			ds.Instances = append(ds.Instances, desiredInstance(f, spec, *inst, w.clusters[inst.ClusterID]))
			out[inst.ClusterID] = ds
		}
	}
	for id, ds := range out {
		sort.Slice(ds.Instances, func(i, j int) bool { return ds.Instances[i].InstanceID < ds.Instances[j].InstanceID })
		out[id] = ds
	}
	return out
}

// desiredInstance is what the agent of cluster c needs to run inst of f.
// The backend is c's group, the name deployments select backends by; a
// cluster registered without a group (or one the controller no longer
// reads) falls back to its name, then its id.
func desiredInstance(f model.Function, spec model.GPUSpec, inst model.Instance, c model.Cluster) model.DesiredInstance {
	h := model.Health{Protocol: "HTTP", URI: "/health", ExpectedStatusCode: 200, Timeout: "PT10S"}
	if f.InferenceURL == model.GRPCInferenceURL {
		// NVCF's gRPC functions serve their health on the gRPC port.
		h = model.Health{Protocol: "gRPC", Timeout: "PT10S"}
	}
	if f.Health != nil {
		h = *f.Health
	}
	backend := c.GroupName
	if backend == "" {
		backend = c.Name
	}
	if backend == "" {
		backend = inst.ClusterID
	}
	return model.DesiredInstance{
		InstanceID:            inst.ID,
		FunctionID:            f.ID,
		FunctionVersionID:     f.VersionID,
		FunctionName:          f.Name,
		NCAID:                 f.NCAID,
		GPU:                   inst.GPU,
		GPUCount:              inst.GPUCount,
		InstanceType:          inst.InstanceType,
		Backend:               backend,
		Region:                c.Region,
		MaxRequestConcurrency: spec.Concurrency(),
		ContainerImage:        f.ContainerImage,
		ContainerArgs:         f.ContainerArgs,
		ContainerEnvironment:  f.ContainerEnvironment,
		InferenceURL:          f.InferenceURL,
		InferencePort:         f.InferencePort,
		Health:                h,
		SecretNames:           f.Secrets,
		Models:                f.Models,
		Resources:             f.Resources,
		HelmChart:             f.HelmChart,
		HelmChartServiceName:  f.HelmChartServiceName,
		Configuration:         spec.Configuration,
	}
}

// KVPublisher writes desired states to the JetStream bucket agents watch. It
// remembers what it last wrote so unchanged states cost nothing, and it
// empties the state of clusters that no longer have instances.
type KVPublisher struct {
	kv jetstream.KeyValue

	mu     sync.Mutex
	last   map[string][]byte
	listed bool
}

// NewKVPublisher publishes into kv (the bus.DesiredBucket bucket).
func NewKVPublisher(kv jetstream.KeyValue) *KVPublisher {
	return &KVPublisher{kv: kv, last: map[string][]byte{}}
}

var _ Publisher = (*KVPublisher)(nil)

// Publish implements Publisher.
func (p *KVPublisher) Publish(ctx context.Context, states map[string]model.DesiredState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.listed {
		// First pass of this leader: learn which clusters have a state, so
		// that ones now empty get emptied.
		keys, err := p.kv.ListKeys(ctx)
		if err == nil || errors.Is(err, jetstream.ErrNoKeysFound) {
			p.listed = true
		}
		if err == nil {
			for k := range keys.Keys() {
				p.last[k] = nil
			}
		}
	}
	var errs []error
	for id := range p.last {
		if _, ok := states[id]; !ok {
			states[id] = model.DesiredState{ClusterID: id, Instances: []model.DesiredInstance{}}
		}
	}
	for id, ds := range states {
		if ds.Instances == nil {
			ds.Instances = []model.DesiredInstance{}
		}
		b, err := json.Marshal(ds)
		if err != nil {
			return err
		}
		if prev, ok := p.last[id]; ok && string(prev) == string(b) {
			continue
		}
		if validate.ID("cluster id", id) != nil {
			errs = append(errs, fmt.Errorf("controller: cluster id %q cannot be a bucket key", id))
			continue
		}
		if _, err := p.kv.Put(ctx, id, b); err != nil {
			errs = append(errs, fmt.Errorf("controller: publish desired state of %s: %w", id, err))
			continue
		}
		p.last[id] = b
	}
	return errors.Join(errs...)
}
