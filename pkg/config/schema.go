package config

import (
	"reflect"
	"sort"
	"strings"
)

// The struct definitions in config.go are the schema: a field's `json` tag
// is its name in the config file. The decoder's known-field lists are
// derived from them, so a field is declared once.

// schemaField is one field of a schema struct.
type schemaField struct {
	name  string // JSON name
	index int    // in the struct
}

// schemaFields lists the fields of struct type t that have a JSON name.
// Config.Path has none: it says where the config came from, not what it says.
func schemaFields(t reflect.Type) []schemaField {
	var out []schemaField
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, schemaField{name: name, index: i})
		}
	}
	return out
}

// isObject reports whether t (after pointers) is a schema struct, i.e. a
// JSON object whose keys are its fields. IDOrName and netip.Prefix are
// structs but single values, and carry no JSON tags.
func isObject(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n != "" && n != "-" {
			return true
		}
	}
	return false
}

// fieldsOf returns the JSON names of T's fields, sorted: the keys the
// decoder accepts in the object T is decoded from.
func fieldsOf[T any]() []string {
	var names []string
	for _, f := range schemaFields(reflect.TypeFor[T]()) {
		names = append(names, f.name)
	}
	sort.Strings(names)
	return names
}
