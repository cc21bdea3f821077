package migrate

import (
	"fmt"
	"strings"
)

// jsonnetKeyword reports Jsonnet's reserved words, which cannot be bare
// field names or identifiers.
func jsonnetKeyword(s string) bool {
	switch s {
	case "assert", "else", "error", "false", "for", "function", "if", "import", "importstr", "importbin",
		"in", "local", "null", "self", "super", "tailstrict", "then", "true":
		return true
	}
	return false
}

// jsonnetString quotes s as a single-quoted Jsonnet string.
func jsonnetString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func jsonnetKey(k string) string {
	if identRE.MatchString(k) && !jsonnetKeyword(k) {
		return k
	}
	return jsonnetString(k)
}

// comments of one field: the lines before it and the one after it.
type fieldComments struct {
	leading  []string
	trailing string
}

// jsonnetWriter prints a node tree as Jsonnet, with the expressions of
// exprs in place of the values at their paths and the comments of
// comments around the fields at theirs.
type jsonnetWriter struct {
	b        strings.Builder
	exprs    map[string]string
	optional map[string]string // field path -> the variable it exists with
	comments map[string]*fieldComments
	left     map[string][]string // object path -> notes on fields left out
}

func (w *jsonnetWriter) value(n *node, p []pathElem, indent string) {
	if e, ok := w.exprs[pathString(p)]; ok {
		w.b.WriteString(e)
		return
	}
	switch n.kind {
	case kNull:
		w.b.WriteString("null")
	case kBool:
		fmt.Fprint(&w.b, n.b)
	case kNumber:
		w.b.WriteString(n.str)
	case kString:
		w.b.WriteString(jsonnetString(n.str))
	case kArray:
		w.array(n, p, indent)
	case kObject:
		w.object(n, p, indent)
	}
}

func (w *jsonnetWriter) array(n *node, p []pathElem, indent string) {
	if len(n.elems) == 0 {
		w.b.WriteString("[]")
		return
	}
	if inline, ok := w.inlineArray(n, p); ok {
		w.b.WriteString(inline)
		return
	}
	inner := indent + "  "
	w.b.WriteString("[\n")
	for i, e := range n.elems {
		w.b.WriteString(inner)
		w.value(e, extend(p, i), inner)
		w.b.WriteString(",\n")
	}
	w.b.WriteString(indent + "]")
}

// inlineArray writes a short array of plain scalars on one line.
func (w *jsonnetWriter) inlineArray(n *node, p []pathElem) (string, bool) {
	parts := make([]string, len(n.elems))
	total := 0
	for i, e := range n.elems {
		if e.kind == kArray || e.kind == kObject {
			return "", false
		}
		if _, ok := w.exprs[pathString(extend(p, i))]; ok {
			return "", false
		}
		sub := jsonnetWriter{}
		sub.value(e, nil, "")
		parts[i] = sub.b.String()
		total += len(parts[i]) + 2
	}
	if total > 72 {
		return "", false
	}
	return "[" + strings.Join(parts, ", ") + "]", true
}

func (w *jsonnetWriter) object(n *node, p []pathElem, indent string) {
	notes := w.left[pathString(p)]
	if len(n.fields) == 0 && len(notes) == 0 {
		w.b.WriteString("{}")
		return
	}
	inner := indent + "  "
	w.b.WriteString("{\n")
	for _, f := range n.fields {
		fp := extend(p, f.key)
		c := w.comments[pathString(fp)]
		if c != nil {
			for _, l := range c.leading {
				w.comment(l, inner)
			}
		}
		key := jsonnetKey(f.key)
		if v, ok := w.optional[pathString(fp)]; ok {
			key = fmt.Sprintf("[if std.objectHas(env, %s) then %s]", jsonnetString(v), jsonnetString(f.key))
		}
		w.b.WriteString(inner + key + ": ")
		w.value(f.val, fp, inner)
		w.b.WriteString(",")
		if c != nil && c.trailing != "" {
			w.b.WriteString("  " + c.trailing)
		}
		w.b.WriteString("\n")
	}
	for _, note := range notes {
		w.b.WriteString(inner + "// " + note + "\n")
	}
	w.b.WriteString(indent + "}")
}

// comment writes a comment of the source at indent; the inner lines of a
// block comment are re-indented with it.
func (w *jsonnetWriter) comment(text, indent string) {
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if i > 0 && strings.HasPrefix(l, "*") {
			l = " " + l
		}
		w.b.WriteString(indent + l + "\n")
	}
}
