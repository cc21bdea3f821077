// Package version holds the release version both binaries report.
package version

// Version is overridden at link time by the Makefile
// (-ldflags "-X github.com/rollbridge/rollbridge-go/internal/version.Version=...").
var Version = "0.1.0-dev"
