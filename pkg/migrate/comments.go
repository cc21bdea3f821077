package migrate

import (
	"fmt"
	"strings"
)

// Comment placement. The entry module's comments are read from its tokens:
// a comment before any code goes to the top of the Jsonnet file; one that
// ends a line after a property goes after that field; one that stands
// before a property key (with only brackets and commas between them) goes
// before that field. Property keys are found in the object literals the
// lexer can follow (nested object and array literals); the outermost
// literal whose keys best match the evaluated config is taken as the
// config. Comments anywhere else (inside helper functions, before a
// closing brace) are left out, and the caller is told which.

type litFrame struct {
	open   string // "{", "[" or "("
	lit    bool   // an object or array literal
	root   int
	path   []pathElem
	key    string
	keySet bool
	index  int
}

type keyTok struct {
	root int
	path []pathElem
}

// placement is where the comments go.
type placement struct {
	header   []string
	fields   map[string]*fieldComments
	unplaced []int // lines
}

// literalOpener says whether a bracket after the token prev opens a
// literal rather than a block, a call or an index.
func literalOpener(prev *token) bool {
	if prev == nil {
		return true
	}
	switch prev.kind {
	case tIdent:
		return prev.text == "return" || prev.text == "default" || prev.text == "in" || prev.text == "of" || prev.text == "yield" || prev.text == "await"
	case tPunct:
		switch prev.text {
		case "=", "(", "[", ",", ":", "?", "|", "&", "...", "!", "+":
			return true
		}
	}
	return false
}

func placeComments(toks []token, r *node) placement {
	keys := map[int]keyTok{} // token index -> its property path
	var stack []*litFrame
	roots := 0
	var prev *token
	for i := range toks {
		t := &toks[i]
		if t.kind == tComment {
			continue
		}
		var top *litFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch {
		case t.kind == tPunct && (t.text == "{" || t.text == "["):
			f := &litFrame{open: t.text, lit: literalOpener(prev)}
			if f.lit {
				switch {
				case top != nil && top.lit && top.open == "{" && prev != nil && prev.text == ":" && top.keySet:
					f.root, f.path = top.root, extend(top.path, top.key)
				case top != nil && top.lit && top.open == "[" && prev != nil && (prev.text == "[" || prev.text == ","):
					f.root, f.path = top.root, extend(top.path, top.index)
				default:
					roots++
					f.root = roots
				}
			}
			stack = append(stack, f)
		case t.kind == tPunct && t.text == "(":
			stack = append(stack, &litFrame{open: "("})
		case t.kind == tPunct && (t.text == "}" || t.text == "]" || t.text == ")"):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case t.kind == tPunct && t.text == "," && top != nil && top.lit:
			if top.open == "[" {
				top.index++
			} else {
				top.keySet = false
			}
		case top != nil && top.lit && top.open == "{" && (t.kind == tIdent || t.kind == tString || t.kind == tNumber) &&
			prev != nil && (prev.text == "{" || prev.text == ","):
			if n := nextSig(toks, i); n >= 0 && toks[n].text == ":" {
				k := t.text
				if t.kind == tString {
					k = t.value
				}
				top.key, top.keySet = k, true
				keys[i] = keyTok{top.root, extend(top.path, k)}
			}
		}
		prev = t
	}
	score := map[int]int{}
	best := 0
	for _, k := range keys {
		if lookup(r, k.path) != nil {
			score[k.root]++
			if score[k.root] > score[best] || score[k.root] == score[best] && k.root < best {
				best = k.root
			}
		}
	}
	pl := placement{fields: map[string]*fieldComments{}}
	at := func(p []pathElem) *fieldComments {
		s := pathString(p)
		if pl.fields[s] == nil {
			pl.fields[s] = &fieldComments{}
		}
		return pl.fields[s]
	}
	for ci, c := range toks {
		if c.kind != tComment {
			continue
		}
		ps := prevSig(toks, ci)
		if ps < 0 {
			pl.header = append(pl.header, c.text)
			continue
		}
		placed := false
		if toks[ps].line == c.line && toks[ps].text != "{" && toks[ps].text != "[" {
			for j := ps; j >= 0 && toks[j].line == c.line; j-- {
				if k, ok := keys[j]; ok && k.root == best && best != 0 && lookup(r, k.path) != nil {
					fc := at(k.path)
					fc.trailing = strings.TrimSpace(fc.trailing + " " + oneLine(c.text))
					placed = true
					break
				}
			}
		}
		if !placed {
			for j := ci + 1; j < len(toks); j++ {
				if toks[j].kind == tComment || toks[j].kind == tPunct && strings.Contains("{[,(", toks[j].text) {
					continue
				}
				if k, ok := keys[j]; ok && k.root == best && best != 0 && lookup(r, k.path) != nil {
					fc := at(k.path)
					fc.leading = append(fc.leading, c.text)
					placed = true
				}
				break
			}
		}
		if !placed {
			pl.unplaced = append(pl.unplaced, c.line)
		}
	}
	return pl
}

// oneLine makes a comment fit after a field on its line.
func oneLine(text string) string {
	if strings.HasPrefix(text, "//") || !strings.Contains(text, "\n") {
		return text
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(text, "/*"), "*/")
	var words []string
	for _, l := range strings.Split(inner, "\n") {
		l = strings.TrimLeft(strings.TrimSpace(l), "*")
		if l = strings.TrimSpace(l); l != "" {
			words = append(words, l)
		}
	}
	return fmt.Sprintf("/* %s */", strings.Join(words, " "))
}

// lookup returns the node at p, or nil.
func lookup(r *node, p []pathElem) *node {
	n := r
	for _, e := range p {
		if n == nil {
			return nil
		}
		switch e := e.(type) {
		case string:
			if n.kind != kObject {
				return nil
			}
			n = n.get(e)
		case int:
			if n.kind != kArray || e >= len(n.elems) {
				return nil
			}
			n = n.elems[e]
		}
	}
	return n
}
