package migrate

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind classifies a token of JavaScript source. The lexer knows only as
// much JavaScript as the module transform and the comment placement need:
// where strings, template literals, regular expressions and comments begin
// and end, so that an "export" inside a string is never taken for syntax.
type tokKind int

const (
	tIdent tokKind = iota
	tString
	tTemplate // a whole template literal, substitutions included
	tNumber
	tRegex
	tPunct // one character, except "..." and "=>"
	tComment
)

type token struct {
	kind       tokKind
	start, end int    // byte offsets in the source
	line       int    // 1-based line of start
	text       string // the source text
	value      string // a string literal's decoded value
}

// lex splits src into tokens, comments included. Template literals are one
// token each; their substitutions are not looked into (they cannot hold
// import or export declarations, nor property keys of the config).
func lex(src string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	lastSig := -1 // index in toks of the last non-comment token
	add := func(k tokKind, start, end, ln int) {
		toks = append(toks, token{kind: k, start: start, end: end, line: ln, text: src[start:end]})
		if k != tComment {
			lastSig = len(toks) - 1
		}
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			add(tComment, i, i+j, line)
			i += j
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
			end := i + 2 + j + 2
			add(tComment, i, end, line)
			line += strings.Count(src[i:end], "\n")
			i = end
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				} else if src[j] == '\n' {
					return nil, fmt.Errorf("line %d: unterminated string", line)
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			add(tString, i, j+1, line)
			toks[len(toks)-1].value = unquote(src[i+1 : j])
			line += strings.Count(src[i:j+1], "\n") // escaped line continuations
			i = j + 1
		case c == '`':
			end, err := skipTemplate(src, i)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			add(tTemplate, i, end, line)
			line += strings.Count(src[i:end], "\n")
			i = end
		case c == '/' && regexAllowed(toks, lastSig):
			j := i + 1
			inClass := false
			for j < len(src) && (src[j] != '/' || inClass) {
				switch src[j] {
				case '\\':
					j++
				case '[':
					inClass = true
				case ']':
					inClass = false
				case '\n':
					return nil, fmt.Errorf("line %d: unterminated regular expression", line)
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated regular expression", line)
			}
			j++
			for j < len(src) && isIdentPart(rune(src[j])) {
				j++
			}
			add(tRegex, i, j, line)
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i + 1
			for j < len(src) && (isIdentPart(rune(src[j])) || src[j] == '.' ||
				(src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E') && !strings.HasPrefix(src[i:], "0x")) {
				j++
			}
			add(tNumber, i, j, line)
			i = j
		default:
			r, size := utf8.DecodeRuneInString(src[i:])
			if isIdentStart(r) || r == '\\' {
				j := i + size
				for j < len(src) {
					r2, s2 := utf8.DecodeRuneInString(src[j:])
					if !isIdentPart(r2) && r2 != '\\' {
						break
					}
					j += s2
				}
				add(tIdent, i, j, line)
				i = j
				continue
			}
			if r == '\u2028' || r == '\u2029' || unicode.IsSpace(r) {
				i += size
				continue
			}
			n := size
			if strings.HasPrefix(src[i:], "...") {
				n = 3
			} else if strings.HasPrefix(src[i:], "=>") {
				n = 2
			}
			add(tPunct, i, i+n, line)
			i += n
		}
	}
	return toks, nil
}

// skipTemplate returns the end of the template literal that starts at i,
// following ${...} substitutions (which may hold strings, comments and
// templates of their own) to their closing brace.
func skipTemplate(src string, i int) (int, error) {
	j := i + 1
	for j < len(src) {
		switch src[j] {
		case '\\':
			j += 2
			continue
		case '`':
			return j + 1, nil
		case '$':
			if j+1 < len(src) && src[j+1] == '{' {
				end, err := skipBraces(src, j+2)
				if err != nil {
					return 0, err
				}
				j = end
				continue
			}
		}
		j++
	}
	return 0, fmt.Errorf("unterminated template literal")
}

// skipBraces returns the offset just past the brace that closes the one
// opened before i, skipping strings, comments and nested templates.
func skipBraces(src string, i int) (int, error) {
	depth := 1
	for i < len(src) {
		c := src[i]
		switch {
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				return 0, fmt.Errorf("unterminated template literal")
			}
			i += j
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return 0, fmt.Errorf("unterminated comment")
			}
			i += j + 4
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '`':
			end, err := skipTemplate(src, i)
			if err != nil {
				return 0, err
			}
			i = end
		case c == '{':
			depth++
			i++
		case c == '}':
			depth--
			i++
			if depth == 0 {
				return i, nil
			}
		default:
			i++
		}
	}
	return 0, fmt.Errorf("unterminated template literal")
}

// regexAllowed says whether a "/" after the token lastSig starts a regular
// expression rather than a division: after an operator, an opening
// bracket, a keyword that takes an expression, or at the start.
func regexAllowed(toks []token, lastSig int) bool {
	if lastSig < 0 {
		return true
	}
	t := toks[lastSig]
	switch t.kind {
	case tNumber, tString, tTemplate, tRegex:
		return false
	case tIdent:
		switch t.text {
		case "return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "instanceof", "yield", "await":
			return true
		}
		return false
	}
	return t.text != ")" && t.text != "]" && t.text != "}"
}

func isIdentStart(r rune) bool {
	return r == '$' || r == '_' || unicode.IsLetter(r)
}

func isIdentPart(r rune) bool {
	return isIdentStart(r) || unicode.IsDigit(r) || r == '\u200c' || r == '\u200d' || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r)
}

// unquote decodes the body of a JavaScript string literal. Only the values
// of import specifiers and property keys are read from it.
func unquote(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '0':
			b.WriteByte(0)
		case '\n':
		case 'x':
			if i+2 < len(s) {
				if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
					b.WriteRune(rune(n))
					i += 2
					continue
				}
			}
			b.WriteByte(c)
		case 'u':
			hex := ""
			switch {
			case i+1 < len(s) && s[i+1] == '{':
				if j := strings.IndexByte(s[i:], '}'); j > 0 {
					hex = s[i+2 : i+j]
					i += j
				}
			case i+4 < len(s):
				hex = s[i+1 : i+5]
				i += 4
			}
			if n, err := strconv.ParseUint(hex, 16, 32); err == nil {
				b.WriteRune(rune(n))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
