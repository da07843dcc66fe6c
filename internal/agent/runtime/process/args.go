package process

import (
	"errors"
	"strings"
)

// Errors from SplitArgs. They say which quoting construct was left open so a
// user can find the mistake in a containerArgs string.
var (
	ErrUnterminatedSingleQuote = errors.New("process: unterminated single quote in arguments")
	ErrUnterminatedDoubleQuote = errors.New("process: unterminated double quote in arguments")
	ErrTrailingBackslash       = errors.New("process: trailing backslash in arguments")
)

// SplitArgs splits s into words the way a POSIX shell would, so that a
// function's containerArgs means the same thing here as in a container's
// command line. It handles whitespace separation, single quotes (everything
// literal), double quotes (backslash escapes only $ ` " \ and newline, as in
// sh) and backslash outside quotes (escapes any character; backslash-newline
// is a line continuation). It does no expansion: $VAR, globs, ~ and
// operators such as | or ; are passed through literally, because there is no
// shell here to give them meaning.
func SplitArgs(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool // distinguishes an empty quoted word ('') from no word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, ErrTrailingBackslash
			}
			i++
			if s[i] == '\n' {
				continue // line continuation: neither character is kept
			}
			cur.WriteByte(s[i])
			inWord = true
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, ErrUnterminatedSingleQuote
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				d := s[i]
				if d == '"' {
					closed = true
					break
				}
				if d == '\\' && i+1 < len(s) {
					switch next := s[i+1]; next {
					case '$', '`', '"', '\\':
						cur.WriteByte(next)
						i++
						continue
					case '\n':
						i++
						continue
					}
				}
				cur.WriteByte(d)
			}
			if !closed {
				return nil, ErrUnterminatedDoubleQuote
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
