package validate

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// FunctionUpdate checks the body of PUT
// /v2/nvcf/functions/{id}/versions/{vid} with the rules function creation
// applies to the same fields: tags as for creation and the metadata route,
// description up to MaxDescriptionLen characters, rateLimit as for creation
// and the ratelimit route. At least one of tags, description and rateLimit
// is required (an empty modelUpdates list counts as left out, as in NVCF);
// modelUpdates and llmInvocationConfig are refused, since Gantry does not
// configure models or LLM serving yet.
func FunctionUpdate(req *model.UpdateFunctionRequest) error {
	if req == nil {
		return problem.BadRequest(`request body is empty; send a JSON object such as {"tags":["team:vision"]}`)
	}
	llm := hasLLMInvocationConfig(req)
	if req.Tags == nil && req.Description == nil && req.RateLimit == nil && len(req.ModelUpdates) == 0 && !llm {
		return problem.BadRequest(`the update changes nothing: send at least one of tags, description or rateLimit, ` +
			`e.g. {"tags":["team:vision"]} or {"rateLimit":{"rateLimit":"100-S"}}`)
	}
	var p problems
	if req.Tags != nil {
		checkTags(&p, req.Tags)
	}
	if req.Description != nil {
		if n := utf8.RuneCountInString(*req.Description); n > MaxDescriptionLen {
			p.addf("description is %d characters long: at most %d are allowed", n, MaxDescriptionLen)
		}
	}
	checkRateLimit(&p, req.RateLimit)
	if len(req.ModelUpdates) > 0 {
		p.addf("modelUpdates is not supported: Gantry does not configure models or LLM settings yet; " +
			"leave modelUpdates out and update tags, description or rateLimit")
	}
	if llm {
		p.addf("llmInvocationConfig is not supported: Gantry does not configure LLM invocation yet; " +
			"leave llmInvocationConfig out and update tags, description or rateLimit")
	}
	return p.err()
}

// hasLLMInvocationConfig reports whether the update carries an
// llmInvocationConfig; null and {} count as left out, as they do on
// function creation: neither asks for anything.
func hasLLMInvocationConfig(req *model.UpdateFunctionRequest) bool {
	v := bytes.TrimSpace(req.LLMInvocationConfig)
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(v, &m) != nil || len(m) > 0
}
