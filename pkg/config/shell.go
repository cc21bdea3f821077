package config

import "strings"

// A process's command runs as `/bin/sh -c COMMAND`, so a value pasted into
// it is shell syntax unless it is quoted for the exact place it lands in.
// shellScan reads a command template the way the shell will read the
// rendered command and says, for each placeholder, where it stands. Only
// two places can hold an arbitrary value safely, and render quotes for
// them:
//
//   - a bare word: the value becomes one single-quoted string ('it'\''s'),
//     so it stays exactly one literal piece of its word;
//   - inside double quotes: the four characters special there (\ $ ` ")
//     get a backslash.
//
// Both hold at the top level of the command and inside $( ... ). Every
// other place is refused for a value that may contain any character,
// because no quoting there is both correct and safe: inside single quotes
// and backquotes (whose text is usually a script read again: sh -c '...'),
// in a here-document, in a comment (a newline in the value would end it),
// in ${...} and $((...)), right after a \ or a $, and anywhere in a
// command that bash reads as code or arithmetic (eval, let, [[ ]], (( )),
// an array subscript).
// The scanner follows a deliberately small part of the shell's grammar:
// after something it cannot follow for certain (a case inside $( ... ), an
// intricate ${...}, a here-document whose body it cannot delimit), every
// later placeholder is in an unknown place, and refused too.

// shellContext is where a placeholder stands in a command.
type shellContext int

const (
	ctxBare            shellContext = iota // an unquoted word
	ctxDouble                              // inside "..."
	ctxDoubleAfterName                     // inside "...", right after $NAME, which the value must not extend
	ctxSingle                              // inside '...' or $'...'
	ctxBacktick                            // inside `...`
	ctxHeredoc                             // in a here-document's body
	ctxComment                             // in a # comment
	ctxParam                               // inside ${...}
	ctxArith                               // inside $((...)) or $[...]
	ctxEscaped                             // right after a backslash
	ctxDollar                              // right after a $
	ctxLocale                              // inside bash's $"..."
	ctxCode                                // in an eval, let, [[ ]] or (( )) command, or an array subscript
	ctxUnknown                             // after a construct the scanner does not follow
)

// safe reports whether a value of any content can be quoted for c.
func (c shellContext) safe() bool { return c == ctxBare || c == ctxDouble || c == ctxDoubleAfterName }

// where says, for an error message, where the placeholder stands.
func (c shellContext) where() string {
	switch c {
	case ctxBare:
		return "in a bare word"
	case ctxDouble, ctxDoubleAfterName:
		return "inside double quotes"
	case ctxSingle:
		return "inside single quotes"
	case ctxBacktick:
		return "inside backquotes"
	case ctxHeredoc:
		return "in a here-document"
	case ctxComment:
		return "in a comment"
	case ctxParam:
		return "inside ${...}"
	case ctxArith:
		return "inside an arithmetic expansion"
	case ctxEscaped:
		return `right after a backslash`
	case ctxDollar:
		return "right after a $"
	case ctxLocale:
		return `inside $"..."`
	case ctxCode:
		return "in an eval, let, [[ ]] or (( )) command or an array subscript, which bash reads as code or arithmetic"
	}
	return "after a construct rollbridge cannot follow (a case inside $(...), a ${...} holding quotes or expansions, or an unusual here-document)"
}

type frameKind int

const (
	frameScript   frameKind = iota // the command itself, or the script inside $( ... )
	frameDouble                    // "..." (or $"..." when locale)
	frameSingle                    // '...' (or $'...' when dollar)
	frameBacktick                  // `...`
	frameParam                     // ${...}
	frameArith                     // $((...))
)

type frame struct {
	kind   frameKind
	sub    bool // frameScript: inside $( ... ), which ends at its ')'
	depth  int  // open parentheses inside a $( ... ) or $(( ... ))
	dollar bool // frameSingle: $'...', where backslash escapes; frameDouble: $"..."

	// The word and command being read, in a frameScript.
	inWord   bool
	word     strings.Builder
	wordPH   bool // the word holds a placeholder
	cmdPos   bool // the next word is a command name
	redirect bool // the next word is a redirection's target
	code     bool // the current command reads its words as code
}

// A template is a sequence of bytes and placeholders: tok >= 0 is a byte,
// tok < 0 is placeholder -tok-1.
type shellScanner struct {
	toks    []int
	i       int
	stack   []*frame
	ctx     []shellContext // per placeholder
	unknown bool
	pending []heredoc
}

type heredoc struct {
	delim     string
	stripTabs bool // <<-
	quoted    bool // the delimiter was quoted: the body is not expanded
}

// shellScan returns the context of each of n placeholders in the token
// stream toks (see shellScanner).
func shellScan(toks []int, n int) []shellContext {
	sc := &shellScanner{toks: toks, ctx: make([]shellContext, n)}
	for i := range sc.ctx {
		sc.ctx[i] = ctxUnknown // whatever the scan does not reach stays refused
	}
	sc.push(&frame{kind: frameScript, cmdPos: true})
	for sc.i < len(sc.toks) && !sc.unknown {
		sc.step()
	}
	return sc.ctx
}

func (sc *shellScanner) push(f *frame) { sc.stack = append(sc.stack, f) }
func (sc *shellScanner) pop() {
	if len(sc.stack) > 1 {
		sc.stack = sc.stack[:len(sc.stack)-1]
	}
}
func (sc *shellScanner) top() *frame { return sc.stack[len(sc.stack)-1] }

// at returns the token at i, or -1<<30 past the end (neither a byte nor a
// placeholder).
func (sc *shellScanner) at(i int) int {
	if i < len(sc.toks) {
		return sc.toks[i]
	}
	return -1 << 30
}

func isPH(t int) bool { return t < 0 && t != -1<<30 }

func (sc *shellScanner) record(t int, c shellContext) { sc.ctx[-t-1] = c }

// script returns the innermost frameScript (there always is one).
func (sc *shellScanner) script() *frame {
	for i := len(sc.stack) - 1; i >= 0; i-- {
		if sc.stack[i].kind == frameScript {
			return sc.stack[i]
		}
	}
	return sc.stack[0]
}

func (sc *shellScanner) step() {
	f := sc.top()
	t := sc.toks[sc.i]
	switch f.kind {
	case frameSingle:
		sc.i++
		switch {
		case isPH(t):
			sc.record(t, ctxSingle)
		case t == '\\' && f.dollar:
			if n := sc.at(sc.i); isPH(n) {
				sc.record(n, ctxSingle)
			}
			sc.i++
		case t == '\'':
			sc.pop()
		}
	case frameBacktick:
		sc.i++
		switch {
		case isPH(t):
			sc.record(t, ctxBacktick)
		case t == '\\':
			if n := sc.at(sc.i); isPH(n) {
				sc.record(n, ctxBacktick)
			}
			sc.i++
		case t == '`':
			sc.pop()
		}
	case frameParam:
		sc.i++
		switch {
		case isPH(t):
			sc.record(t, ctxParam)
		case t == '}':
			sc.pop()
		case t == '\'' || t == '"' || t == '`' || t == '\\' || t == '$' || t == '{':
			// Quoting and nesting inside ${...} differ between shells.
			sc.unknown = true
		}
	case frameArith:
		sc.i++
		switch {
		case isPH(t):
			sc.record(t, ctxArith)
		case t == '(':
			f.depth++
		case t == ')':
			switch {
			case f.depth > 0:
				f.depth--
			case sc.at(sc.i) == ')':
				sc.i++
				sc.pop()
			default:
				sc.unknown = true // $( (subshell) ... ): not arithmetic after all
			}
		case t == '\'' || t == '"' || t == '`' || t == '\\':
			sc.unknown = true
		case t == '$' && (sc.at(sc.i) == '(' || sc.at(sc.i) == '{'):
			sc.unknown = true
		}
	case frameDouble:
		switch {
		case isPH(t):
			c := ctxDouble
			switch {
			case f.dollar:
				c = ctxLocale
			case sc.script().code:
				c = ctxCode
			case sc.afterName():
				c = ctxDoubleAfterName
			}
			sc.record(t, c)
			sc.i++
		case t == '\\':
			if n := sc.at(sc.i + 1); isPH(n) {
				sc.record(n, ctxEscaped)
			}
			sc.i += 2
		case t == '"':
			sc.pop()
			sc.i++
		case t == '`':
			sc.push(&frame{kind: frameBacktick})
			sc.i++
		case t == '$':
			sc.dollar(false)
		default:
			sc.i++
		}
	case frameScript:
		sc.scriptStep(f, t)
	}
}

// afterName reports whether the placeholder at sc.i follows $ and name
// characters ("$HOME{{x}}"), so that a value starting with a letter would
// make the shell read a longer variable name.
func (sc *shellScanner) afterName() bool {
	j := sc.i - 1
	for j >= 0 && sc.toks[j] >= 0 && nameChar(byte(sc.toks[j])) {
		j--
	}
	return j < sc.i-1 && j >= 0 && sc.toks[j] == '$'
}

func nameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// dollar reads a $ and what it starts. inScript: unquoted, where $'...'
// and $"..." are bash quotes; inside double quotes they are not.
func (sc *shellScanner) dollar(inScript bool) {
	n := sc.at(sc.i + 1)
	switch {
	case isPH(n):
		sc.record(n, ctxDollar)
		sc.i += 2
	case n == '(' && sc.at(sc.i+2) == '(':
		sc.push(&frame{kind: frameArith})
		sc.i += 3
	case n == '(':
		sc.push(&frame{kind: frameScript, sub: true, cmdPos: true})
		sc.i += 2
	case n == '{':
		sc.push(&frame{kind: frameParam})
		sc.i += 2
	case n == '[':
		sc.unknown = true // bash's old $[ arithmetic ]
	case inScript && n == '\'':
		sc.push(&frame{kind: frameSingle, dollar: true})
		sc.i += 2
	case inScript && n == '"':
		sc.push(&frame{kind: frameDouble, dollar: true})
		sc.i += 2
	default:
		sc.i++
	}
}

// leadingWord reports whether w keeps the next word in command position.
func leadingWord(w string) bool {
	switch w {
	case "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "command", "builtin":
		return true
	}
	return false
}

// codeWord reports whether the command w reads its words as code (eval),
// or, in bash, as arithmetic, where a[$(cmd)] runs cmd (let, [[ -eq ]]).
func codeWord(w string) bool { return w == "eval" || w == "let" || w == "[[" }

func (sc *shellScanner) scriptStep(f *frame, t int) {
	if isPH(t) {
		c := ctxBare
		if f.code || openSubscript(f.word.String()) {
			c = ctxCode
		}
		sc.record(t, c)
		f.inWord, f.wordPH = true, true
		sc.i++
		return
	}
	switch c := byte(t); {
	case c == '\\':
		n := sc.at(sc.i + 1)
		switch {
		case isPH(n):
			sc.record(n, ctxEscaped)
			f.inWord, f.wordPH = true, true
		case n == '\n': // a line continuation joins the lines: no word ends
		default:
			f.inWord = true
			if n >= 0 {
				f.word.WriteByte(byte(n))
			}
		}
		sc.i += 2
	case c == '\'':
		f.inWord = true
		f.word.WriteByte('\'')
		sc.push(&frame{kind: frameSingle})
		sc.i++
	case c == '"':
		f.inWord = true
		f.word.WriteByte('"')
		sc.push(&frame{kind: frameDouble})
		sc.i++
	case c == '`':
		f.inWord = true
		f.word.WriteByte('`')
		sc.push(&frame{kind: frameBacktick})
		sc.i++
	case c == '$':
		f.inWord = true
		f.word.WriteByte('$')
		sc.dollar(true)
	case c == '#' && !f.inWord:
		sc.comment()
	case c == '\n':
		sc.endWord(f)
		sc.i++
		sc.separator(f)
		sc.heredocBodies()
	case c == ' ' || c == '\t':
		sc.endWord(f)
		sc.i++
	case c == ';' || c == '&' || c == '|':
		sc.endWord(f)
		sc.i++
		sc.separator(f)
	case c == '(':
		if w := f.word.String(); f.inWord && w != "" && strings.IndexByte("@!+*?", w[len(w)-1]) >= 0 {
			sc.unknown = true // a bash extended glob, @(a|b): its own quoting rules
			return
		}
		sc.endWord(f)
		sc.i++
		if f.sub {
			f.depth++
		}
		if f.cmdPos && sc.at(sc.i) == '(' {
			f.code = true // bash's (( arithmetic ))
			sc.i++
			if f.sub {
				f.depth++
			}
		} else {
			sc.separator(f)
		}
	case c == ')':
		sc.endWord(f)
		sc.i++
		if f.sub {
			if f.depth == 0 {
				sc.pop()
				return
			}
			f.depth--
		}
		sc.separator(f)
	case c == '<' || c == '>':
		sc.endWord(f)
		sc.i++
		if c == '<' && sc.at(sc.i) == '<' {
			sc.i++
			if sc.at(sc.i) == '<' { // bash's here-string: its word is an ordinary word
				sc.i++
			} else {
				sc.heredocStart()
				return
			}
		}
		f.redirect = true
	default:
		f.inWord = true
		f.word.WriteByte(c)
		sc.i++
	}
}

// separator starts a new command in f.
func (sc *shellScanner) separator(f *frame) {
	f.cmdPos, f.code, f.redirect = true, false, false
}

// endWord finishes the word being read in f, if any, and keeps track of
// command position.
func (sc *shellScanner) endWord(f *frame) {
	if !f.inWord {
		return
	}
	w := f.word.String()
	ph := f.wordPH
	f.inWord, f.wordPH = false, false
	f.word.Reset()
	if f.sub && w == "case" && !ph {
		// A case pattern's ')' would end $( ... ) early for this scanner.
		sc.unknown = true
		return
	}
	if f.redirect {
		f.redirect = false
		return
	}
	if !f.cmdPos {
		return
	}
	switch {
	case ph:
		f.cmdPos = false
	case isAssignment(w) || leadingWord(w):
		// the command name is still to come
	case codeWord(w):
		f.code = true
		f.cmdPos = false
	default:
		f.cmdPos = false
	}
}

// openSubscript reports whether w, the start of a word, ends inside an
// array subscript, NAME[..., which bash evaluates as arithmetic (a
// subscript a[$(cmd)] inside the value would run cmd).
func openSubscript(w string) bool {
	i := strings.IndexByte(w, '[')
	if i <= 0 || strings.IndexByte(w[i:], ']') >= 0 {
		return false
	}
	return isAssignment(w[:i] + "=")
}

// isAssignment reports whether w is NAME=... (a variable assignment before
// the command name).
func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i := 0; i < eq; i++ {
		c := w[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// comment skips a # comment up to (not including) its newline.
func (sc *shellScanner) comment() {
	for ; sc.i < len(sc.toks) && sc.toks[sc.i] != '\n'; sc.i++ {
		if isPH(sc.toks[sc.i]) {
			sc.record(sc.toks[sc.i], ctxComment)
		}
	}
}

// heredocStart reads the delimiter after << or <<-; the body starts after
// the next newline (heredocBodies).
func (sc *shellScanner) heredocStart() {
	h := heredoc{}
	if sc.at(sc.i) == '-' {
		h.stripTabs = true
		sc.i++
	}
	for sc.at(sc.i) == ' ' || sc.at(sc.i) == '\t' {
		sc.i++
	}
	var d strings.Builder
	for sc.i < len(sc.toks) {
		t := sc.toks[sc.i]
		if isPH(t) {
			sc.unknown = true // the body's end would depend on the value
			return
		}
		c := byte(t)
		if strings.IndexByte(" \t\n;&|<>()", c) >= 0 {
			break
		}
		sc.i++
		switch c {
		case '\'', '"':
			h.quoted = true
			for sc.i < len(sc.toks) && sc.toks[sc.i] != int(c) {
				if isPH(sc.toks[sc.i]) || c == '"' && sc.toks[sc.i] == '\\' {
					sc.unknown = true
					return
				}
				d.WriteByte(byte(sc.toks[sc.i]))
				sc.i++
			}
			sc.i++
		case '\\':
			h.quoted = true
			if n := sc.at(sc.i); n >= 0 {
				d.WriteByte(byte(n))
			}
			sc.i++
		case '$', '`':
			sc.unknown = true
			return
		default:
			d.WriteByte(c)
		}
	}
	if d.Len() == 0 {
		sc.unknown = true
		return
	}
	h.delim = d.String()
	sc.pending = append(sc.pending, h)
}

// heredocBodies reads the bodies of the here-documents started on the line
// that just ended, each up to its delimiter line.
func (sc *shellScanner) heredocBodies() {
	pending := sc.pending
	sc.pending = nil
	for _, h := range pending {
		for sc.i < len(sc.toks) {
			var line strings.Builder
			ph := false
			for sc.i < len(sc.toks) && sc.toks[sc.i] != '\n' {
				t := sc.toks[sc.i]
				if isPH(t) {
					sc.record(t, ctxHeredoc)
					ph = true
				} else {
					line.WriteByte(byte(t))
				}
				sc.i++
			}
			sc.i++ // the newline
			l := line.String()
			if h.stripTabs {
				l = strings.TrimLeft(l, "\t")
			}
			if !ph && l == h.delim {
				break
			}
			if !h.quoted && (strings.HasSuffix(l, "\\") || strings.ContainsAny(l, "`") || strings.Contains(l, "$(")) {
				// A line continuation or a command substitution can hide
				// or fake the delimiter line.
				sc.unknown = true
				return
			}
		}
	}
}
