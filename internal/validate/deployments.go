package validate

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Deployment specification limits. MaxSpecInstances is Gantry's own: NVCF
// documents no ceiling, but every instance below minInstances becomes a record
// the scheduler keeps placing, so an absurd count is refused up front.
const (
	// MaxGPULen is the longest gpu name, in characters.
	MaxGPULen = 64
	// MaxRequestConcurrency is the largest maxRequestConcurrency.
	MaxRequestConcurrency = 16384
	// MaxSpecInstances is the largest minInstances or maxInstances of one specification.
	MaxSpecInstances = 1024
)

const gpuRule = "use 1-64 characters of letters, digits, '-', '_' and '.'"

// Deployment checks the body of POST and PUT
// /v2/nvcf/deployments/functions/{id}/versions/{vid}. Every specification is
// checked with the rules GPUSpecPatch also applies, and no two may share gpu,
// instanceType and backend: the scheduler and the PATCH endpoint could not
// tell them apart. An empty instanceType is kept as sent (the scheduler picks
// the default shape), so it does not collide with an explicit one.
// configuration, a Helm function's values, must be a JSON object of at most
// MaxConfigurationLen bytes ({} and null are kept as none); the API refuses
// it for functions that are not Helm charts. NVCF fields Gantry does not
// support yet (preferredOrder and the instance selectors cpuArch, os, driverVersion, storage, systemMemory
// and gpuMemory) are refused, never stored and ignored; attributes are
// honoured by placement (model.GPUSpec.Selects).
// Specification ids are the caller's to assign; Deployment changes nothing.
func Deployment(req *model.DeploymentRequest) error {
	if req == nil || len(req.Specs) == 0 {
		return problem.BadRequest(`deploymentSpecifications must list at least one specification, e.g. ` +
			`{"deploymentSpecifications":[{"gpu":"H100","minInstances":1,"maxInstances":2}]}`)
	}
	var p problems
	type key struct{ gpu, instanceType, backend string }
	seen := make(map[key]int, len(req.Specs))
	for i := range req.Specs {
		s := &req.Specs[i]
		prefix := "deploymentSpecifications[" + itoa(i) + "]."
		checkSpec(&p, prefix, s, "")
		unsupportedSpec(&p, prefix, specExtras{s.PreferredOrder, s.Configuration, s.CPUArch, s.OS,
			s.DriverVersion, s.Storage, s.SystemMemory, s.GPUMemory, false})
		checkConfiguration(&p, prefix, s)
		k := key{s.GPU, s.InstanceType, s.Backend}
		if s.InstanceType != "" {
			// NCP.GPU.H100_1x and ON-PREM.GPU.H100_1x are one shape.
			k.instanceType, _ = s.Shape()
		}
		if j, dup := seen[k]; dup {
			p.addf("deploymentSpecifications[%d] repeats deploymentSpecifications[%d] (gpu %s, instanceType %s, backend %s): "+
				"two specifications with the same gpu, instanceType and backend could not be told apart; merge them into one",
				i, j, quote(s.GPU), quote(s.InstanceType), quote(s.Backend))
		} else {
			seen[k] = i
		}
	}
	return p.err()
}

// GPUSpecPatch applies the body of PATCH
// /v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecId} to
// current and checks the result with Deployment's per-specification rules.
// Only minInstances, maxInstances, maxRequestConcurrency and the autoscaling
// policy and configuration may change, and at least one must be sent; any
// other specification field sent with a value other than current's is a
// problem naming it (see fixedInPlace), never ignored. The result shares
// nothing with current; on error it is the zero GPUSpec.
func GPUSpecPatch(p *model.GPUSpecPatch, current model.GPUSpec) (model.GPUSpec, error) {
	if p == nil || (p.MinInstances == nil && p.MaxInstances == nil && p.MaxRequestConcurrency == nil &&
		p.AutoscalingPolicy == "" && p.Autoscaling == nil) {
		var probs problems
		if p != nil {
			fixedInPlace(&probs, p, current)
		}
		probs.addf("send at least one of minInstances, maxInstances, maxRequestConcurrency, " +
			"autoscalingConfigurationPolicy or autoscalingConfiguration; only these change in place " +
			"(to change gpu, instanceType or placement, PUT the whole deployment)")
		return model.GPUSpec{}, probs.err()
	}
	out := current
	out.Clusters = slices.Clone(current.Clusters)
	out.Regions = slices.Clone(current.Regions)
	out.Attributes = slices.Clone(current.Attributes)
	out.AvailabilityZones = slices.Clone(current.AvailabilityZones)
	out.Configuration = bytes.Clone(current.Configuration)
	if p.MinInstances != nil {
		out.MinInstances = *p.MinInstances
	}
	if p.MaxInstances != nil {
		out.MaxInstances = *p.MaxInstances
	}
	if current.MaxRequestConcurrency != nil {
		out.MaxRequestConcurrency = model.Int(*current.MaxRequestConcurrency)
	}
	if p.MaxRequestConcurrency != nil {
		out.MaxRequestConcurrency = model.Int(*p.MaxRequestConcurrency)
	}
	switch {
	case p.AutoscalingPolicy == model.AutoscalingPlatform:
		// Back to the platform's defaults: the custom configuration goes.
		out.AutoscalingPolicy, out.Autoscaling = model.AutoscalingPlatform, p.Autoscaling
	case p.Autoscaling != nil:
		// NVCF: a configuration sent without a policy is a custom one.
		out.AutoscalingPolicy, out.Autoscaling = model.AutoscalingCustom, p.Autoscaling
	case p.AutoscalingPolicy != "":
		out.AutoscalingPolicy = p.AutoscalingPolicy
	}
	hint := ""
	if p.MaxInstances == nil {
		hint = "; maxInstances is unchanged at " + itoa(out.MaxInstances) + ", so send a new maxInstances too"
	} else if p.MinInstances == nil {
		hint = "; minInstances is unchanged at " + itoa(out.MinInstances) + ", so send a new minInstances too"
	}
	var probs problems
	checkSpec(&probs, "", &out, hint)
	if c := p.MaxRequestConcurrency; c != nil && *c >= 1 && *c <= MaxRequestConcurrency && *c != current.Concurrency() {
		// As NVCF: the autoscaler's capacity and every running instance's
		// slots were sized for the old value.
		probs.addf("maxRequestConcurrency cannot change in place (it is %d): its instances were started with that many slots; "+
			"PUT the deployment with the new value to replace them", current.Concurrency())
	}
	fixedInPlace(&probs, p, current)
	if err := probs.err(); err != nil {
		return model.GPUSpec{}, err
	}
	return out, nil
}

// checkSpec applies the per-specification rules; prefix names the spec in
// messages ("deploymentSpecifications[1]."), and minMaxHint is appended when
// maxInstances is below minInstances.
func checkSpec(p *problems, prefix string, s *model.GPUSpec, minMaxHint string) {
	gpuOK := false
	switch {
	case s.GPU == "":
		p.addf(`%sgpu is required: name the GPU model, e.g. "H100"; %s`, prefix, gpuRule)
	case len(s.GPU) > MaxGPULen || !allBytes(s.GPU, func(c byte) bool {
		return isLetter(c) || isDigit(c) || c == '-' || c == '_' || c == '.'
	}):
		p.addf("%sgpu %s is invalid: %s", prefix, quote(s.GPU), gpuRule)
	default:
		gpuOK = true
	}
	if s.InstanceType != "" {
		example := "ON-PREM.GPU.H100_1x"
		if gpuOK {
			example = model.InstanceTypeName(s.GPU, 1)
		}
		m, _, ok := model.ParseInstanceTypeName(s.InstanceType)
		switch {
		case !ok:
			p.addf("%sinstanceType %s is invalid: use <provider>.GPU.<gpu>_<count>x (NCP, ON-PREM or any other provider prefix), "+
				"e.g. %q, or leave it out for the default",
				prefix, quote(s.InstanceType), example)
		case gpuOK && m != s.GPU:
			p.addf("%sinstanceType %s is for GPU %s but gpu is %s: they must name the same GPU, e.g. %q",
				prefix, quote(s.InstanceType), quote(m), quote(s.GPU), example)
		}
	}
	switch {
	case s.MinInstances < 0:
		p.addf("%sminInstances %d is invalid: use 0 or more", prefix, s.MinInstances)
	case s.MinInstances > MaxSpecInstances:
		p.addf("%sminInstances %d is invalid: at most %d instances per specification are allowed", prefix, s.MinInstances, MaxSpecInstances)
	}
	switch {
	case s.MaxInstances <= 0:
		p.addf("%smaxInstances %d is invalid: use 1 or more, and at least minInstances", prefix, s.MaxInstances)
	case s.MaxInstances > MaxSpecInstances:
		p.addf("%smaxInstances %d is invalid: at most %d instances per specification are allowed", prefix, s.MaxInstances, MaxSpecInstances)
	case s.MaxInstances < s.MinInstances:
		p.addf("%smaxInstances %d is less than minInstances %d: maxInstances must be at least minInstances%s",
			prefix, s.MaxInstances, s.MinInstances, minMaxHint)
	}
	if c := s.MaxRequestConcurrency; c != nil && (*c < 1 || *c > MaxRequestConcurrency) {
		p.addf("%smaxRequestConcurrency %d is invalid: use 1-%d, or leave it out for the default of %d",
			prefix, *c, MaxRequestConcurrency, model.DefaultMaxRequestConcurrency)
	}
	for _, l := range []struct {
		field string
		list  []string
	}{{"clusters", s.Clusters}, {"regions", s.Regions}, {"attributes", s.Attributes}, {"availabilityZones", s.AvailabilityZones}} {
		for i, v := range l.list {
			if v == "" {
				p.addf("%s%s[%d] is empty: remove it or give a value", prefix, l.field, i)
			}
		}
	}
	if s.AutoscalingPolicy == "" && s.Autoscaling != nil {
		s.AutoscalingPolicy = model.AutoscalingCustom // NVCF's default when a configuration is sent
	}
	checkAutoscaling(p, prefix, s)
	// Read-only: what the autoscaler wants is shown, never set.
	s.DesiredInstances, s.RunningInstances, s.ScalingDecisions = nil, nil, nil
}

// fixedInPlace records a problem for each field of p that would change
// current but cannot change in place: the spec's shape and placement, which
// its running instances were placed for (PUT replaces them), and the fields
// Gantry does not support at all.
func fixedInPlace(probs *problems, p *model.GPUSpecPatch, current model.GPUSpec) {
	// An instanceType names a shape; the default one and another provider
	// prefix of the same shape are no change.
	sameShape := func(sent string) bool {
		t, _ := model.GPUSpec{GPU: current.GPU, InstanceType: sent}.Shape()
		cur, _ := current.Shape()
		return t == cur
	}
	for _, f := range []struct {
		field, sent, is string
		same            bool
	}{
		{"gpu", p.GPU, current.GPU, p.GPU == current.GPU},
		{"instanceType", p.InstanceType, current.InstanceType, p.InstanceType == current.InstanceType || sameShape(p.InstanceType)},
		{"backend", p.Backend, current.Backend, p.Backend == current.Backend},
	} {
		if f.sent == "" || f.same {
			continue
		}
		is := "unset"
		if f.is != "" {
			is = quote(f.is)
		}
		probs.addf("%s cannot change in place (it is %s): PUT the deployment with the new %s, which replaces its instances",
			f.field, is, f.field)
	}
	for _, f := range []struct {
		field    string
		sent, is []string
	}{{"clusters", p.Clusters, current.Clusters}, {"regions", p.Regions, current.Regions},
		{"attributes", p.Attributes, current.Attributes}, {"availabilityZones", p.AvailabilityZones, current.AvailabilityZones}} {
		if len(f.sent) > 0 && !slices.Equal(f.sent, f.is) {
			probs.addf("%s cannot change in place (its instances were placed by it): PUT the deployment with the new %s",
				f.field, f.field)
		}
	}
	unsupportedSpec(probs, "", specExtras{p.PreferredOrder, p.Configuration, p.CPUArch, p.OS,
		p.DriverVersion, p.Storage, p.SystemMemory, p.GPUMemory, true})
}

// specExtras are the deploymentSpecification fields NVCF has and Gantry
// does not support yet.
type specExtras struct {
	preferredOrder int
	configuration  json.RawMessage
	cpuArch        string
	os             string
	driverVersion  string
	storage        string
	systemMemory   string
	gpuMemory      string
	patch          bool // a PATCH body, where configuration is fixed
}

// MaxConfigurationLen is the largest configuration (Helm values) of one
// specification, in bytes.
const MaxConfigurationLen = 64 << 10

// checkConfiguration checks a specification's configuration, the Helm
// chart's values; an empty object or null is none.
func checkConfiguration(p *problems, prefix string, s *model.GPUSpec) {
	c := bytes.TrimSpace(s.Configuration)
	if !jsonSet(c) {
		return
	}
	var obj map[string]json.RawMessage
	switch {
	case len(c) > MaxConfigurationLen:
		p.addf("%sconfiguration is %d bytes: at most %d (64 KiB) are allowed", prefix, len(c), MaxConfigurationLen)
	case json.Unmarshal(c, &obj) != nil || obj == nil:
		p.addf(`%sconfiguration must be a JSON object of Helm values, e.g. {"replicaCount":1,"image":{"tag":"1.2"}}`, prefix)
	}
}

// unsupportedSpec refuses each of x that is set, saying what to do instead.
func unsupportedSpec(p *problems, prefix string, x specExtras) {
	if x.preferredOrder != 0 {
		p.addf("%spreferredOrder is not supported: Gantry orders clusters with schedule policies; remove it and "+
			"create a policy whose fillAndSpill tiers list the clusters in the order to fill them (POST /v1/gantry/policies)", prefix)
	}
	if jsonSet(x.configuration) && x.patch {
		p.addf("%sconfiguration cannot change in place: PUT the deployment with the new configuration, which upgrades a Helm function's releases", prefix)
	}
	for _, f := range []struct{ field, value, what string }{
		{"cpuArch", x.cpuArch, "CPU architecture"},
		{"os", x.os, "operating system"},
		{"driverVersion", x.driverVersion, "driver version"},
		{"storage", x.storage, "storage"},
		{"systemMemory", x.systemMemory, "system memory"},
		{"gpuMemory", x.gpuMemory, "GPU memory"},
	} {
		if f.value != "" {
			p.addf("%s%s is not supported: Gantry does not select instances by %s yet; remove it, and choose the hardware "+
				"with gpu and instanceType, or give the clusters that have it a capability and name that in attributes", prefix, f.field, f.what)
		}
	}
}
