// Package migrate turns the Node original's JavaScript config module
// (rollbridge.js) into a rollbridge-go Jsonnet config.
//
// Evaluate runs the module in an embedded JavaScript engine (goja; no node
// binary is involved) the way the original loads it: the default export of
// an ES module, or module.exports of a CommonJS one, called when it is a
// function (sync or async) and its promise awaited. Local modules are
// loaded through relative import and require; process.env is the
// environment given, and every variable the module reads is recorded.
//
// ES modules are supported through a small source transform, because goja
// has no module loader of its own: import declarations (default, named,
// namespace, side effect) become calls of a loader, export default becomes
// an assignment, and export const/let/var/function/class and export {...}
// become assignments at the end of the module. Not supported (each is a
// clear error): top-level await, dynamic import(), export * from, exported
// destructuring, and packages or Node built-ins (import "node:path").
// Imports run where they stand rather than before the module body, which
// only matters for code that uses an imported name above its import.
//
// Migrate translates the evaluated value into Jsonnet. Values that come
// from process.env become expressions over std.extVar('env'), found by
// evaluating the module again with probe values in each variable it read
// (see envtrace.go); comments of the entry module are placed before the
// field they precede. What cannot be translated (functions, values that
// are not JSON data, an env dependence the probes cannot explain) is
// reported as a Warning. Compare proves the result: the normalised config
// of the JavaScript value and that of the Jsonnet file must be equal.
package migrate
