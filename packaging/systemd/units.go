// Package units embeds the template units, so `rollbridgectl systemd units
// --install` can put them in place on a host that has only the binaries.
package units

import "embed"

// Files holds rollbridge@.service, rollbridge-units@.service,
// rollbridge-proxy@.socket, rollbridge-control@.socket,
// rollbridge-metrics@.socket and rollbridge.tmpfiles.conf.
//
//go:embed rollbridge@.service rollbridge-units@.service rollbridge-proxy@.socket rollbridge-control@.socket rollbridge-metrics@.socket rollbridge.tmpfiles.conf
var Files embed.FS
