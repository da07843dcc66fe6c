package validate

import (
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Metadata checks the body of PUT /v2/nvcf/metadata/functions/{id}/versions/{vid}
// with the same tag rules as function creation. An empty list is allowed: it
// clears the tags.
func Metadata(req *model.MetadataRequest) error {
	if req == nil {
		return problem.BadRequest(`request body is empty; send a JSON object such as {"tags":["team:vision"]}`)
	}
	var p problems
	checkTags(&p, req.Tags)
	return p.err()
}
