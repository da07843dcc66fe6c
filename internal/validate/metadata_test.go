package validate

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *model.MetadataRequest
		err  string // empty when valid
	}{
		{"tags", &model.MetadataRequest{Tags: []string{"team:vision", "tier=gold"}}, ""},
		{"clear tags", &model.MetadataRequest{}, ""},
		{"nil", nil, "request body is empty"},
		{"bad tag", &model.MetadataRequest{Tags: []string{"ok", "not ok"}}, `tags[1] "not ok" is invalid: ` + tagRule},
		{"too many", &model.MetadataRequest{Tags: make([]string, 65)}, "tags has 65 entries: at most 64 tags are allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Metadata(tc.req)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Metadata: %v", err)
				}
				return
			}
			wantProblem(t, err, 400, tc.err)
		})
	}
}
