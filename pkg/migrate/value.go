package migrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/dop251/goja"
)

// A node is one JSON value of the evaluated config, object keys in the
// order JavaScript enumerates them (the order JSON.stringify writes).
type node struct {
	kind   nodeKind
	fields []field // kObject
	elems  []*node // kArray
	str    string  // kString: the value; kNumber: its JavaScript text
	b      bool    // kBool
}

type field struct {
	key string
	val *node
}

type nodeKind int

const (
	kNull nodeKind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

// Warning is something the translation could not carry over faithfully.
// Path names the config field (processes[1].env.PORT), "" for the whole
// file.
type Warning struct {
	Path    string `json:"path"`
	Message string `json:"message"`

	at   []pathElem // where, for placing a note in the Jsonnet file
	left bool       // the field was left out of the translation
}

func (w Warning) String() string {
	if w.Path == "" {
		return w.Message
	}
	return w.Path + ": " + w.Message
}

// pathElem is an object key (string) or an array index (int).
type pathElem = any

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func pathString(p []pathElem) string {
	var b strings.Builder
	for _, e := range p {
		switch e := e.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", e)
		case string:
			if identRE.MatchString(e) {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(e)
			} else {
				fmt.Fprintf(&b, "[%s]", jsString(e))
			}
		}
	}
	return b.String()
}

func extend(p []pathElem, e pathElem) []pathElem {
	return append(p[:len(p):len(p)], e)
}

// converter turns a goja value into a node tree as JSON.stringify would,
// warning about everything that is not plain JSON data.
type converter struct {
	rt       *goja.Runtime
	objProto *goja.Object
	warnings []Warning
	stack    []*goja.Object
}

func newConverter(rt *goja.Runtime) *converter {
	proto, _ := rt.Get("Object").(*goja.Object).Get("prototype").(*goja.Object)
	return &converter{rt: rt, objProto: proto}
}

func (c *converter) warn(p []pathElem, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{Path: pathString(p), Message: fmt.Sprintf(format, args...), at: p})
}

// leave warns about a value left out of the translation.
func (c *converter) leave(p []pathElem, format string, args ...any) {
	c.warn(p, format, args...)
	c.warnings[len(c.warnings)-1].left = true
}

// convert returns v's node, or nil when JSON.stringify would leave the
// value out (undefined, a function, a symbol).
func (c *converter) convert(v goja.Value, p []pathElem) (*node, error) {
	if v == nil || goja.IsUndefined(v) {
		return nil, nil
	}
	if goja.IsNull(v) {
		return &node{kind: kNull}, nil
	}
	if _, ok := v.(*goja.Symbol); ok {
		c.leave(p, "a Symbol is not JSON data")
		return nil, nil
	}
	if _, ok := goja.AssertFunction(v); ok {
		c.leave(p, "a function cannot be translated to Jsonnet (put the value it stands for in its place)")
		return nil, nil
	}
	obj, isObj := v.(*goja.Object)
	if !isObj {
		switch x := v.Export().(type) {
		case bool:
			return &node{kind: kBool, b: x}, nil
		case string:
			return &node{kind: kString, str: x}, nil
		case int64:
			return &node{kind: kNumber, str: v.String()}, nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				c.warn(p, "%s is not JSON data; written as null, as JSON.stringify does", v.String())
				return &node{kind: kNull}, nil
			}
			return &node{kind: kNumber, str: v.String()}, nil
		default:
			c.leave(p, "a %T (%s) is not JSON data", x, v.String())
			return nil, nil
		}
	}
	for _, o := range c.stack {
		if o == obj {
			return nil, fmt.Errorf("%s: the value refers to itself; a config must be a tree", pathString(p))
		}
	}
	if len(c.stack) > 200 {
		return nil, fmt.Errorf("%s: nested more than 200 levels deep", pathString(p))
	}
	c.stack = append(c.stack, obj)
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	switch cls := obj.ClassName(); {
	case cls == "Array":
		n := &node{kind: kArray}
		for i, k := range arrayIndexes(obj) {
			e, err := c.convert(obj.Get(k), extend(p, i))
			if err != nil {
				return nil, err
			}
			if e == nil {
				c.warn(extend(p, i), "an array element that is undefined, a function or a symbol is written as null, as JSON.stringify does")
				e = &node{kind: kNull}
			}
			n.elems = append(n.elems, e)
		}
		return n, nil
	case cls == "Object" && (obj.Prototype() == nil || obj.Prototype() == c.objProto):
		n := &node{kind: kObject}
		for _, k := range obj.Keys() {
			e, err := c.convert(obj.Get(k), extend(p, k))
			if err != nil {
				return nil, err
			}
			if e != nil {
				n.fields = append(n.fields, field{k, e})
			}
		}
		return n, nil
	default:
		// A Date, RegExp, Map, class instance ...: what JSON.stringify
		// writes (a Date's ISO text, {} for a Map) is rarely what was meant.
		text, err := c.stringify(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pathString(p), err)
		}
		c.warn(p, "a %s is not JSON data; written as JSON.stringify writes it (%s)", cls, text)
		if text == "" {
			return nil, nil
		}
		return parseJSON([]byte(text))
	}
}

func arrayIndexes(obj *goja.Object) []string {
	n := obj.Get("length").ToInteger()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	return keys
}

func (c *converter) stringify(obj *goja.Object) (string, error) {
	stringify, _ := goja.AssertFunction(c.rt.Get("JSON").(*goja.Object).Get("stringify"))
	v, err := stringify(goja.Undefined(), obj)
	if err != nil {
		return "", jsError("JSON.stringify", err)
	}
	if goja.IsUndefined(v) {
		return "", nil
	}
	return v.String(), nil
}

// parseJSON reads JSON text into a node tree, keeping key order.
func parseJSON(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var read func() (*node, error)
	read = func() (*node, error) {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case json.Delim:
			if t == '[' {
				n := &node{kind: kArray}
				for dec.More() {
					e, err := read()
					if err != nil {
						return nil, err
					}
					n.elems = append(n.elems, e)
				}
				_, err := dec.Token()
				return n, err
			}
			n := &node{kind: kObject}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				e, err := read()
				if err != nil {
					return nil, err
				}
				n.fields = append(n.fields, field{k.(string), e})
			}
			_, err := dec.Token()
			return n, err
		case string:
			return &node{kind: kString, str: t}, nil
		case json.Number:
			return &node{kind: kNumber, str: t.String()}, nil
		case bool:
			return &node{kind: kBool, b: t}, nil
		}
		return &node{kind: kNull}, nil
	}
	return read()
}

// JSON writes the tree as JSON text, keys in order.
func (n *node) JSON() []byte {
	var b bytes.Buffer
	n.writeJSON(&b)
	return b.Bytes()
}

func (n *node) writeJSON(b *bytes.Buffer) {
	switch n.kind {
	case kNull:
		b.WriteString("null")
	case kBool:
		fmt.Fprint(b, n.b)
	case kNumber:
		b.WriteString(n.str)
	case kString:
		s, _ := json.Marshal(n.str) // a Go string always marshals
		b.Write(s)
	case kArray:
		b.WriteByte('[')
		for i, e := range n.elems {
			if i > 0 {
				b.WriteByte(',')
			}
			e.writeJSON(b)
		}
		b.WriteByte(']')
	case kObject:
		b.WriteByte('{')
		for i, f := range n.fields {
			if i > 0 {
				b.WriteByte(',')
			}
			s, _ := json.Marshal(f.key)
			b.Write(s)
			b.WriteByte(':')
			f.val.writeJSON(b)
		}
		b.WriteByte('}')
	}
}

func (n *node) get(k string) *node {
	for _, f := range n.fields {
		if f.key == k {
			return f.val
		}
	}
	return nil
}

// equal compares two trees; object key order counts, as it does for the
// Jsonnet file the tree is written to.
func equal(a, b *node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.kind != b.kind || a.str != b.str || a.b != b.b || len(a.fields) != len(b.fields) || len(a.elems) != len(b.elems) {
		return false
	}
	for i := range a.fields {
		if a.fields[i].key != b.fields[i].key || !equal(a.fields[i].val, b.fields[i].val) {
			return false
		}
	}
	for i := range a.elems {
		if !equal(a.elems[i], b.elems[i]) {
			return false
		}
	}
	return true
}
