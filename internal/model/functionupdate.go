package model

import "encoding/json"

// UpdateFunctionRequest is the body of PUT
// /v2/nvcf/functions/{id}/versions/{vid}, NVCF's function update (what
// nvcf-cli's `function update --tags` sends). Every field is optional and
// one at least is required; a field left out keeps the version's value.
//
// Tags, when sent, replace the version's tags (an empty list clears them:
// omitzero keeps [] on the wire and drops only nil). Description replaces the
// description (NVCF's server does not take it; nvcf-cli declares it).
// RateLimit replaces the whole limit; the ratelimit route removes one.
// ModelUpdates and LLMInvocationConfig configure models and LLM serving,
// which Gantry does not support yet: they are decoded only so that sending
// them is a 400 rather than silently dropped.
type UpdateFunctionRequest struct {
	Tags                []string        `json:"tags,omitzero"`
	Description         *string         `json:"description,omitempty"`
	RateLimit           *RateLimit      `json:"rateLimit,omitempty"`
	ModelUpdates        []ModelUpdate   `json:"modelUpdates,omitempty"`
	LLMInvocationConfig json.RawMessage `json:"llmInvocationConfig,omitempty"`
}

// ModelUpdate is one entry of an update's modelUpdates: new LLM settings
// for one of the function's models, by name.
type ModelUpdate struct {
	ModelName string           `json:"modelName"`
	LLMConfig *LLMConfigUpdate `json:"llmConfig,omitempty"`
}

// LLMConfigUpdate holds the LLM settings a model update may change; each
// left out keeps its value.
type LLMConfigUpdate struct {
	TokenRateLimit       string `json:"tokenRateLimit,omitempty"`
	RoutingMethod        string `json:"routingMethod,omitempty"`
	InputTokenRateLimit  string `json:"inputTokenRateLimit,omitempty"`
	OutputTokenRateLimit string `json:"outputTokenRateLimit,omitempty"`
}
