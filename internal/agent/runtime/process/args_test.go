package process

import (
	"errors"
	"slices"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error
	}{
		{name: "empty", in: "", want: nil},
		{name: "only spaces", in: " \t\n ", want: nil},
		{name: "simple", in: "serve --port 8000", want: []string{"serve", "--port", "8000"}},
		{name: "runs of whitespace", in: "  a \t b\n\nc  ", want: []string{"a", "b", "c"}},
		{name: "single quotes", in: `--name 'hello world'`, want: []string{"--name", "hello world"}},
		{name: "single quotes keep backslash", in: `'a\nb\'`, want: []string{`a\nb\`}},
		{name: "double quotes", in: `--msg "hi there"`, want: []string{"--msg", "hi there"}},
		{name: "double quote escapes", in: `"a\"b\\c\$d\` + "`" + `e"`, want: []string{"a\"b\\c$d`e"}},
		{name: "double quote other backslash literal", in: `"a\nb"`, want: []string{`a\nb`}},
		{name: "double quote line continuation", in: "\"a\\\nb\"", want: []string{"ab"}},
		{name: "backslash outside quotes", in: `a\ b c\"d \\e`, want: []string{"a b", `c"d`, `\e`}},
		{name: "backslash newline continuation", in: "a\\\nb c", want: []string{"ab", "c"}},
		{name: "adjacent quoted parts join", in: `pre'mid dle'"post fix"end`, want: []string{"premid dlepost fixend"}},
		{name: "empty quoted words", in: `'' "" x`, want: []string{"", "", "x"}},
		{name: "no expansion", in: `$HOME *.txt ~ a|b;c`, want: []string{"$HOME", "*.txt", "~", "a|b;c"}},
		{name: "json argument", in: `--config '{"a": 1}'`, want: []string{"--config", `{"a": 1}`}},
		{name: "utf8", in: `héllo "wörld ✓"`, want: []string{"héllo", "wörld ✓"}},
		{name: "unterminated single", in: `a 'b c`, wantErr: ErrUnterminatedSingleQuote},
		{name: "unterminated double", in: `a "b c`, wantErr: ErrUnterminatedDoubleQuote},
		{name: "unterminated double ending in backslash", in: `"abc\`, wantErr: ErrUnterminatedDoubleQuote},
		{name: "escaped quote does not close", in: `"abc\"`, wantErr: ErrUnterminatedDoubleQuote},
		{name: "trailing backslash", in: `a b\`, wantErr: ErrTrailingBackslash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := SplitArgs(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SplitArgs(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SplitArgs(%q) error = %v", tc.in, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("SplitArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
