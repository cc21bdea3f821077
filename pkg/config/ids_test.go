package config

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckReleaseIDAndRevision(t *testing.T) {
	long := strings.Repeat("a", MaxIDLength)
	for _, tc := range []struct {
		name, s string
		id, rev string // "" = accepted, else part of the error
	}{
		{name: "sha", s: "a1b2c3d"},
		{name: "every id character", s: "A" + strings.Repeat("z", 195) + "9._-"},
		{name: "longest", s: long},
		{name: "too long", s: long + "a", id: "it is 201 characters long", rev: "it is 201 characters long"},
		{name: "empty", s: "", id: `"" must be 1 to 200`, rev: "it is empty"},
		{name: "branch", s: "release/1.2+build@x", id: `'/' at position 8 is not allowed`},
		{name: "shell", s: "fix$(touch${IFS}/tmp/x)", id: `"fix$(touch${IFS}/tmp/x)" must be 1 to 200 letters, digits, dots, underscores or hyphens, starting with a letter or digit; '$' at position 4 is not allowed`,
			rev: `must be 1 to 200 letters, digits, dots, underscores, hyphens, slashes, plus or at signs, starting with a letter or digit; '$' at position 4 is not allowed`},
		{name: "leading dot", s: ".v1", id: "it starts with '.'", rev: "it starts with '.'"},
		{name: "leading slash", s: "/v1", id: "it starts with '/'", rev: "it starts with '/'"},
		{name: "escape", s: "v1\x1b[2J", id: `"v1\x1b[2J" must be`, rev: `'\x1b' at position 3 is not allowed`},
		{name: "newline", s: "v1\nv2", id: `'\n' at position 3`, rev: `'\n' at position 3`},
		{name: "not ascii", s: "vé", id: "'é' at position 2", rev: "'é' at position 2"},
		{name: "bad utf-8", s: "v\xff", id: "the byte 0xff at position 2", rev: "the byte 0xff at position 2"},
		{name: "huge", s: "x" + strings.Repeat("\x1b", 1<<20), id: "… (1048577 bytes)", rev: "'\\x1b' at position 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				check func(string) error
				want  string
			}{{CheckReleaseID, tc.id}, {CheckRevision, tc.rev}} {
				err := c.check(tc.s)
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%q: got %v, want it accepted", tc.s, err)
				case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
					t.Errorf("%q: got %v, want an error containing %q", truncate(tc.s, 40), err, c.want)
				case err != nil && (strings.ContainsAny(err.Error(), "\x1b\n") || !utf8.ValidString(err.Error())):
					t.Errorf("the error carries a raw control character: %q", err)
				case err != nil && len(err.Error()) > 600:
					t.Errorf("the error is %d bytes long", len(err.Error()))
				}
			}
		})
	}
}
