package validate

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestAsset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		req      model.CreateAssetRequest
		want     string // "" means valid
		wantType string // the normalised contentType of a valid request
	}{
		{"png", model.CreateAssetRequest{ContentType: "image/png", Description: "red-cat-photo"}, "", "image/png"},
		{"normalised", model.CreateAssetRequest{ContentType: "Text/Plain;Charset=utf-8", Description: "notes"}, "", "text/plain; charset=utf-8"},
		{"spaces in description", model.CreateAssetRequest{ContentType: "video/mp4", Description: "a short clip"}, "", "video/mp4"},
		{"no content type", model.CreateAssetRequest{Description: "x"}, "contentType is required", ""},
		{"no subtype", model.CreateAssetRequest{ContentType: "image", Description: "x"}, "no /subtype", ""},
		{"not a media type", model.CreateAssetRequest{ContentType: "image/png;;", Description: "x"}, "is not a media type", ""},
		{"long content type", model.CreateAssetRequest{ContentType: "a/" + strings.Repeat("b", 300), Description: "x"}, "at most 255", ""},
		{"no description", model.CreateAssetRequest{ContentType: "image/png"}, "description is required", ""},
		{"long description", model.CreateAssetRequest{ContentType: "image/png", Description: strings.Repeat("é", 257)}, "257 characters long: at most 256", ""},
		{"control in description", model.CreateAssetRequest{ContentType: "image/png", Description: "a\r\nb"}, "must not contain", ""},
		{"both wrong", model.CreateAssetRequest{}, "e.g. image/png or application/octet-stream; description is required", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := tc.req
			err := Asset(&req)
			wantClientError(t, err)
			if tc.want == "" {
				if err != nil || req.ContentType != tc.wantType {
					t.Fatalf("got %v, contentType %q; want valid, %q", err, req.ContentType, tc.wantType)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if err := Asset(nil); err == nil {
		t.Fatal("a nil body passed")
	}
}

func TestAssetUploadContentType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, declared, header string
		want                   string // "" means it matches
	}{
		{"same", "image/png", "image/png", ""},
		{"case and spacing", "text/plain; charset=utf-8", "TEXT/plain;charset=utf-8", ""},
		{"missing", "image/png", "", "has no Content-Type: send Content-Type: image/png"},
		{"other type", "image/png", "image/jpeg", `Content-Type "image/jpeg" does not match the asset's contentType "image/png"`},
		{"other parameter", "text/plain; charset=utf-8", "text/plain; charset=latin1", "does not match"},
		{"extra parameter", "image/png", "image/png; x=1", "does not match"},
		{"garbage", "image/png", "image/png;;", "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := AssetUploadContentType(tc.declared, tc.header)
			wantClientError(t, err)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAssetReferences(t *testing.T) {
	t.Parallel()
	const a, b = "b5b841c3-11c2-4c34-b057-9475e82c5369", "3e4666bf-d5e5-4aa7-b8ce-cefe41c7568a"
	many := make([]string, MaxAssetReferences+1)
	for i := range many {
		many[i] = "asset-" + strconv.Itoa(i)
	}
	tests := []struct {
		name, header string
		want         []string
		err          string
	}{
		{"absent", "", nil, ""},
		{"one", a, []string{a}, ""},
		{"two with spaces", " " + a + " , " + b + " ", []string{a, b}, ""},
		{"trailing comma", a + ",", []string{a}, ""},
		{"repeated", a + "," + b + "," + a, []string{a, b}, ""},
		{"at the limit", strings.Join(many[:MaxAssetReferences], ","), many[:MaxAssetReferences], ""},
		{"over the limit", strings.Join(many, ","), nil, "names 65 assets: at most 64"},
		{"bad id", a + ",../etc/passwd", nil, `entry 2, "../etc/passwd", is not an asset id`},
		{"space inside", "a b", nil, `entry 1, "a b", is not an asset id`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := AssetReferences(tc.header)
			wantClientError(t, err)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v %v, want %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzDecodeAsset(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.CreateAssetRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		err = Asset(&req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		if req.ContentType == "" || len(req.ContentType) > MaxContentTypeLen*2 || req.Description == "" {
			t.Fatalf("passed with %+v", req)
		}
		// Normalising is idempotent, and the stored type matches itself as
		// an upload's Content-Type.
		again := req
		if err := Asset(&again); err != nil || again != req {
			t.Fatalf("second pass: %+v %v, first %+v", again, err, req)
		}
		if err := AssetUploadContentType(req.ContentType, req.ContentType); err != nil {
			t.Fatalf("the stored type %q does not match itself: %v", req.ContentType, err)
		}
	})
}

func FuzzAssetReferences(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		ids, err := AssetReferences(header)
		wantClientError(t, err)
		if err != nil {
			return
		}
		if len(ids) > MaxAssetReferences {
			t.Fatalf("%d ids passed", len(ids))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if ID("asset", id) != nil || seen[id] || !strings.Contains(header, id) {
				t.Fatalf("id %q of %q: invalid, repeated or not in the header", id, header)
			}
			seen[id] = true
		}
	})
}

// TestAssetSeedsNamedValidPass: an asset body seed named valid_* decodes
// and validates, so the corpus keeps a passing case.
func TestAssetSeedsNamedValidPass(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecodeAsset", "valid_*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no valid_ seeds (%v)", err)
	}
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: unexpected seed format", name)
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		var req model.CreateAssetRequest
		if err := Decode(strings.NewReader(body), fuzzLimit, &req); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if err := Asset(&req); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
