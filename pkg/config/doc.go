// Package config turns a rollbridge.jsonnet file into a validated, typed
// Config with every default applied.
//
// The pipeline is: evaluate the Jsonnet file (go-jsonnet, with the daemon's
// environment as std.extVar('env')) -> walk the resulting JSON value field by
// field, collecting every problem instead of stopping at the first -> apply
// defaults -> check the cross-field rules. A caller gets either a Config or an
// Issues error listing everything that is wrong, each with a fix.
//
// The struct definitions in config.go are the schema: their json tags are
// the keys the decoder accepts, their reload tags say what a changed value
// takes in a running daemon (Diff), and applyDefaults in defaults.go is the
// one place defaults are filled in.
//
// Two things guard the edges. Loader evaluates in a child process bounded in
// time and memory (eval.go), since a config is a program that may never
// end. And Process.Render quotes each value for the shell word it lands in
// (template.go, shell.go), since values such as a revision come from deploy
// requests and the command runs under /bin/sh.
//
// Field names, types and defaults follow the Node original's docs/config.md,
// so a config translated from rollbridge.js keeps its meaning. This package
// is the only importer of go-jsonnet.
package config
