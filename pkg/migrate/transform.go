package migrate

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Names the transformed ES module sees in place of module syntax. They
// start with __rb_ so they do not meet the module's own names.
const (
	esmExports = "__rb_exports" // the module's namespace object
	esmImport  = "__rb_import"  // specifier -> namespace object of the imported module
	esmMeta    = "__rb_meta"    // import.meta
)

// isESM says whether the tokens hold module syntax at the top level: an
// import declaration, import.meta or an export.
func isESM(toks []token) bool {
	depth := 0
	for i, t := range toks {
		if t.kind == tPunct {
			depth += bracketDelta(t.text)
			continue
		}
		if t.kind != tIdent || depth != 0 && t.text != "import" {
			continue
		}
		next := nextSig(toks, i)
		switch {
		case t.text == "export" && depth == 0 && !isMemberAccess(toks, i):
			return true
		case t.text == "import" && next >= 0 && toks[next].text == ".":
			return true
		case t.text == "import" && depth == 0 && next >= 0 && toks[next].text != "(" && !isMemberAccess(toks, i):
			return true
		}
	}
	return false
}

func bracketDelta(p string) int {
	switch p {
	case "(", "[", "{":
		return 1
	case ")", "]", "}":
		return -1
	}
	return 0
}

// isMemberAccess reports a name used as a property (obj.export).
func isMemberAccess(toks []token, i int) bool {
	p := prevSig(toks, i)
	return p >= 0 && toks[p].text == "."
}

func nextSig(toks []token, i int) int {
	for j := i + 1; j < len(toks); j++ {
		if toks[j].kind != tComment {
			return j
		}
	}
	return -1
}

func prevSig(toks []token, i int) int {
	for j := i - 1; j >= 0; j-- {
		if toks[j].kind != tComment {
			return j
		}
	}
	return -1
}

// edit replaces src[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// exportBinding is one name of the module's namespace and the expression
// that gives its value at the end of the module body.
type exportBinding struct{ name, expr string }

// transformESM rewrites an ES module into the body of a function taking
// (__rb_exports, __rb_import, __rb_meta). Every edit keeps the number of
// lines, so the engine's line numbers in errors match the file.
func transformESM(src string, toks []token) (string, error) {
	var edits []edit
	var exports []exportBinding
	tmp := 0
	newTemp := func() string { tmp++; return fmt.Sprintf("__rb_m%d", tmp) }
	depth := 0
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tPunct {
			depth += bracketDelta(t.text)
			continue
		}
		if t.kind != tIdent || isMemberAccess(toks, i) {
			continue
		}
		n := nextSig(toks, i)
		if t.text == "import" && n >= 0 && toks[n].text == "(" {
			return "", fmt.Errorf("line %d: dynamic import() is not supported; use a static import", t.line)
		}
		if t.text == "import" && n >= 0 && toks[n].text == "." {
			m := nextSig(toks, n)
			if m < 0 || toks[m].text != "meta" {
				return "", fmt.Errorf("line %d: import. is only valid as import.meta", t.line)
			}
			edits = append(edits, edit{t.start, toks[m].end, esmMeta})
			i = m
			continue
		}
		if depth != 0 {
			continue
		}
		switch t.text {
		case "import":
			e, last, err := importDecl(src, toks, i, newTemp)
			if err != nil {
				return "", err
			}
			edits = append(edits, e)
			i = last
		case "export":
			e, bindings, last, err := exportDecl(src, toks, i, newTemp)
			if err != nil {
				return "", err
			}
			edits = append(edits, e)
			exports = append(exports, bindings...)
			i = last
		}
	}
	var b strings.Builder
	pos := 0
	for _, e := range edits {
		b.WriteString(src[pos:e.start])
		b.WriteString(e.text)
		b.WriteString(strings.Repeat("\n", strings.Count(src[e.start:e.end], "\n")))
		pos = e.end
	}
	b.WriteString(src[pos:])
	b.WriteString("\n;")
	for _, x := range exports {
		fmt.Fprintf(&b, "%s[%s] = %s;", esmExports, jsString(x.name), x.expr)
	}
	return b.String(), nil
}

func jsString(s string) string {
	b, _ := json.Marshal(s) // a Go string always marshals
	return string(b)
}

// expect returns the index of the next significant token after i if its
// text is want.
func expect(toks []token, i int, want string) (int, error) {
	n := nextSig(toks, i)
	if n < 0 || toks[n].text != want {
		got := "the end of the file"
		if n >= 0 {
			got = fmt.Sprintf("%q", toks[n].text)
		}
		return 0, fmt.Errorf("line %d: expected %q, found %s", toks[i].line, want, got)
	}
	return n, nil
}

// specifier reads `from "x"` after i (or just "x" when from is false),
// skipping an import attribute clause (with {type: "json"}), and returns
// the specifier, the index of its last token and an optional semicolon.
func specifier(toks []token, i int, from bool) (string, int, error) {
	j := i
	if from {
		var err error
		if j, err = expect(toks, i, "from"); err != nil {
			return "", 0, err
		}
	}
	s := nextSig(toks, j)
	if s < 0 || toks[s].kind != tString {
		return "", 0, fmt.Errorf("line %d: expected a module specifier string", toks[j].line)
	}
	last := s
	if n := nextSig(toks, last); n >= 0 && (toks[n].text == "with" || toks[n].text == "assert") {
		if o := nextSig(toks, n); o >= 0 && toks[o].text == "{" {
			for last = o; last < len(toks) && toks[last].text != "}"; last++ {
			}
		}
	}
	if n := nextSig(toks, last); n >= 0 && toks[n].text == ";" {
		last = n
	}
	return toks[s].value, last, nil
}

// namedList reads { a, b as c, default as d } starting at the "{" at
// index open, returning (imported or local name, bound name) pairs.
func namedList(toks []token, open int) ([][2]string, int, error) {
	var pairs [][2]string
	i := open
	for {
		n := nextSig(toks, i)
		if n < 0 {
			return nil, 0, fmt.Errorf("line %d: unterminated { ... }", toks[open].line)
		}
		if toks[n].text == "}" {
			return pairs, n, nil
		}
		if toks[n].text == "," {
			i = n
			continue
		}
		if toks[n].kind != tIdent && toks[n].kind != tString {
			return nil, 0, fmt.Errorf("line %d: unexpected %q in an import or export list", toks[n].line, toks[n].text)
		}
		name := toks[n].text
		if toks[n].kind == tString {
			name = toks[n].value
		}
		alias := name
		i = n
		if a := nextSig(toks, n); a >= 0 && toks[a].text == "as" {
			b := nextSig(toks, a)
			if b < 0 || toks[b].kind != tIdent && toks[b].kind != tString {
				return nil, 0, fmt.Errorf("line %d: expected a name after \"as\"", toks[a].line)
			}
			alias = toks[b].text
			if toks[b].kind == tString {
				alias = toks[b].value
			}
			i = b
		}
		pairs = append(pairs, [2]string{name, alias})
	}
}

// importDecl rewrites the import declaration starting at index i.
func importDecl(src string, toks []token, i int, newTemp func() string) (edit, int, error) {
	n := nextSig(toks, i)
	if n < 0 {
		return edit{}, 0, fmt.Errorf("line %d: incomplete import", toks[i].line)
	}
	if toks[n].kind == tString { // import "x": for its side effects
		spec, last, err := specifier(toks, i, false)
		if err != nil {
			return edit{}, 0, err
		}
		return edit{toks[i].start, toks[last].end, fmt.Sprintf("%s(%s);", esmImport, jsString(spec))}, last, nil
	}
	m := newTemp()
	var binds []string
	j := i
	for {
		n := nextSig(toks, j)
		if n < 0 {
			return edit{}, 0, fmt.Errorf("line %d: incomplete import", toks[i].line)
		}
		switch {
		case toks[n].text == "*":
			as, err := expect(toks, n, "as")
			if err != nil {
				return edit{}, 0, err
			}
			name := nextSig(toks, as)
			if name < 0 || toks[name].kind != tIdent {
				return edit{}, 0, fmt.Errorf("line %d: expected a name after \"* as\"", toks[n].line)
			}
			binds = append(binds, fmt.Sprintf("%s = %s", toks[name].text, m))
			j = name
		case toks[n].text == "{":
			pairs, end, err := namedList(toks, n)
			if err != nil {
				return edit{}, 0, err
			}
			for _, p := range pairs {
				binds = append(binds, fmt.Sprintf("%s = %s[%s]", p[1], m, jsString(p[0])))
			}
			j = end
		case toks[n].kind == tIdent && toks[n].text != "from":
			binds = append(binds, fmt.Sprintf("%s = %s.default", toks[n].text, m))
			j = n
		default:
			return edit{}, 0, fmt.Errorf("line %d: unexpected %q in an import declaration", toks[n].line, toks[n].text)
		}
		if c := nextSig(toks, j); c >= 0 && toks[c].text == "," {
			j = c
			continue
		}
		break
	}
	spec, last, err := specifier(toks, j, true)
	if err != nil {
		return edit{}, 0, err
	}
	text := fmt.Sprintf("const %s = %s(%s)", m, esmImport, jsString(spec))
	for _, b := range binds {
		text += ", " + b
	}
	return edit{toks[i].start, toks[last].end, text + ";"}, last, nil
}

// exportDecl rewrites the export declaration starting at index i.
func exportDecl(src string, toks []token, i int, newTemp func() string) (edit, []exportBinding, int, error) {
	n := nextSig(toks, i)
	if n < 0 {
		return edit{}, nil, 0, fmt.Errorf("line %d: incomplete export", toks[i].line)
	}
	t := toks[n]
	switch {
	case t.text == "default":
		return edit{toks[i].start, t.end, esmExports + ".default ="}, nil, n, nil
	case t.text == "const" || t.text == "let" || t.text == "var":
		name := nextSig(toks, n)
		if name < 0 || toks[name].kind != tIdent {
			return edit{}, nil, 0, fmt.Errorf("line %d: exporting a destructuring declaration is not supported; declare the names, then export { ... } them", t.line)
		}
		return edit{toks[i].start, t.start, ""}, []exportBinding{{toks[name].text, toks[name].text}}, i, nil
	case t.text == "function" || t.text == "class" || t.text == "async":
		j := n
		if t.text == "async" {
			if j, _ = expect(toks, n, "function"); j == 0 {
				return edit{}, nil, 0, fmt.Errorf("line %d: expected \"function\" after \"export async\"", t.line)
			}
		}
		name := nextSig(toks, j)
		if name >= 0 && toks[name].text == "*" {
			name = nextSig(toks, name)
		}
		if name < 0 || toks[name].kind != tIdent {
			return edit{}, nil, 0, fmt.Errorf("line %d: an exported %s needs a name", t.line, t.text)
		}
		return edit{toks[i].start, t.start, ""}, []exportBinding{{toks[name].text, toks[name].text}}, i, nil
	case t.text == "{":
		pairs, end, err := namedList(toks, n)
		if err != nil {
			return edit{}, nil, 0, err
		}
		last := end
		text := ""
		from := ""
		if f := nextSig(toks, end); f >= 0 && toks[f].text == "from" {
			spec, l, err := specifier(toks, end, true)
			if err != nil {
				return edit{}, nil, 0, err
			}
			from, last = newTemp(), l
			text = fmt.Sprintf("const %s = %s(%s);", from, esmImport, jsString(spec))
		} else if s := nextSig(toks, end); s >= 0 && toks[s].text == ";" {
			last = s
		}
		var bindings []exportBinding
		for _, p := range pairs {
			expr := p[0]
			if from != "" {
				expr = fmt.Sprintf("%s[%s]", from, jsString(p[0]))
			}
			bindings = append(bindings, exportBinding{p[1], expr})
		}
		return edit{toks[i].start, toks[last].end, text}, bindings, last, nil
	case t.text == "*":
		return edit{}, nil, 0, fmt.Errorf("line %d: export * from is not supported; export the names one by one", t.line)
	}
	return edit{}, nil, 0, fmt.Errorf("line %d: unsupported export form %q", t.line, t.text)
}
