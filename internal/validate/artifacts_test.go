package validate

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestFunctionAcceptsArtifacts(t *testing.T) {
	t.Parallel()
	digest := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		arts []model.Artifact
	}{
		{"https", []model.Artifact{{Name: "resnet50", Version: "1.0", URI: "https://models.example.com/resnet50.onnx"}}},
		{"http with port and query", []model.Artifact{{Name: "m", Version: "v2", URI: "http://127.0.0.1:8080/m.bin?X-Amz-Signature=abc"}}},
		{"checksum fragment", []model.Artifact{{Name: "m.v1", Version: "1", URI: "https://h/m#sha256=" + digest}}},
		{"upper-case checksum", []model.Artifact{{Name: "m", Version: "1", URI: "https://h/m#sha256=" + strings.ToUpper(digest)}}},
		{"several", []model.Artifact{{Name: "a", Version: "1", URI: "https://h/a"}, {Name: "b", Version: "1", URI: "https://h/a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			r.Models = tc.arts
			r.Resources = tc.arts
			if err := Function(r); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestFunctionRefusesBadArtifacts(t *testing.T) {
	t.Parallel()
	const how = `give an http or https URL the agents can download, e.g. "https://models.example.com/resnet50.onnx" ` +
		`(optionally ending in "#sha256=<hex digest>" to have the content checked)`
	ok := model.Artifact{Name: "m", Version: "1", URI: "https://h/m"}
	with := func(edit func(*model.Artifact)) []model.Artifact {
		a := ok
		edit(&a)
		return []model.Artifact{a}
	}
	many := make([]model.Artifact, MaxArtifacts+1)
	for i := range many {
		many[i] = model.Artifact{Name: "m" + itoa(i), Version: "1", URI: "https://h/m"}
	}
	tests := []struct {
		name  string
		field string // models or resources
		arts  []model.Artifact
		want  string // the whole detail
	}{
		{"no name", "models", with(func(a *model.Artifact) { a.Name = "" }),
			"models[0].name is required: " + artifactNameRule},
		{"name with a slash", "models", with(func(a *model.Artifact) { a.Name = "../etc" }),
			`models[0].name "../etc" is invalid: ` + artifactNameRule},
		{"dot name", "resources", with(func(a *model.Artifact) { a.Name = ".." }),
			`resources[0].name ".." is invalid: ` + artifactNameRule},
		{"repeated name", "models", []model.Artifact{ok, ok},
			`models[1].name "m" repeats models[0]: each name may appear once in models`},
		{"no version", "models", with(func(a *model.Artifact) { a.Version = "" }),
			`models[0].version is required: give the artifact's version, e.g. "1.0"`},
		{"version with a space", "models", with(func(a *model.Artifact) { a.Version = "1 0" }),
			`models[0].version "1 0" is invalid: use at most 128 characters without spaces or control characters`},
		{"no uri", "models", with(func(a *model.Artifact) { a.URI = "" }), "models[0].uri is required: " + how},
		{"ngc", "models", with(func(a *model.Artifact) { a.URI = "ngc://org/resnet:1" }),
			`models[0].uri "ngc://org/resnet:1" is not supported: Gantry's agents do not pull from the NGC model registry yet; ` +
				"host the model's files at an https URL and give that URL as uri"},
		{"file", "resources", with(func(a *model.Artifact) { a.URI = "file:///etc/gantry/agent.cred" }),
			`resources[0].uri "file:///etc/gantry/agent.cred" is refused: agents never read their own host's files for a function; ` + how},
		{"no scheme", "models", with(func(a *model.Artifact) { a.URI = "models/m.bin" }),
			`models[0].uri "models/m.bin" has no scheme: ` + how},
		{"other scheme", "models", with(func(a *model.Artifact) { a.URI = "s3://bucket/m" }),
			`models[0].uri scheme "s3" is not supported: ` + how},
		{"no host", "models", with(func(a *model.Artifact) { a.URI = "https:///m.bin" }),
			`models[0].uri "https:///m.bin" has no host: ` + how},
		{"bad fragment", "models", with(func(a *model.Artifact) { a.URI = "https://h/m#md5=00" }),
			`models[0].uri fragment is invalid: the only fragment Gantry reads is "#sha256=" and 64 hexadecimal digits; remove it or fix the digest`},
		{"space", "models", with(func(a *model.Artifact) { a.URI = "https://h/a b" }),
			"models[0].uri is invalid: it must not contain spaces or control characters (percent-encode them)"},
		{"too long", "models", with(func(a *model.Artifact) { a.URI = "https://h/" + strings.Repeat("a", MaxArtifactURILen) }),
			"models[0].uri is 4106 bytes long: at most 4096 are allowed"},
		{"too many", "resources", many, "resources has 33 entries: at most 32 are allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			if tc.field == "models" {
				r.Models = tc.arts
			} else {
				r.Resources = tc.arts
			}
			wantDetail(t, Function(r), tc.want)
		})
	}
}

// TestArtifactMessagesHideCredentials: a uri's user information and query
// often carry credentials; no message repeats them.
func TestArtifactMessagesHideCredentials(t *testing.T) {
	t.Parallel()
	for _, uri := range []string{
		"ngc://user:hunter2@org/m?token=hunter2",
		"file:///x?token=hunter2",
		"https://user:hunter2@/m?token=hunter2",
		"ftp://user:hunter2@h/m?token=hunter2",
		"https://h/m?token=hunter2#hunter2",
	} {
		r := validFunction()
		r.Models = []model.Artifact{{Name: "m", Version: "1", URI: uri}}
		err := Function(r)
		if err == nil {
			t.Fatalf("%s accepted", uri)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the message repeats a credential: %v", uri, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://u:p@h.example:8443/a/b.bin?sig=s#sha256=00": "https://h.example:8443/a/b.bin",
		"http://h/m?": "http://h/m",
		"https://h/m": "https://h/m",
		"mailto:a@b":  "(an unparsable URL)",
		"http://[::1": "(an unparsable URL)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
