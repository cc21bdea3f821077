// Shared defaults for several apps on one host. A config pulls them in with
//
//   local lib = import 'shared.libsonnet';
//
// (the path is relative to the importing file). Nothing here is a config by
// itself, which is why the file ends in .libsonnet.
{
  // Every app's release tree is laid out the same way.
  releaseCwd: '{{releasePath}}/current',

  // proxy(port) is the stable listener nginx points at.
  proxy(port=8182):: {
    host: '127.0.0.1',
    port: port,
    healthPath: '/ping',
    drainTimeoutMs: 30000,
  },

  // web(command) is the proxied process; override any field with `+ {...}`.
  web(command, ports={ from: 18182, to: 18299 }, healthPath='/ping'):: {
    id: 'web',
    policy: 'proxied',
    cwd: $.releaseCwd,
    command: command,
    port: ports,
    health: { path: healthPath, timeoutMs: 60000, intervalMs: 50 },
    restart: { maxRestarts: 10, windowMs: 60000, backoffFactor: 2, maxDelayMs: 10000 },
  },

  // worker(id, command) is a port-less companion; replicas > 1 makes a pool.
  worker(id, command, replicas=1):: {
    id: id,
    policy: 'companion',
    cwd: $.releaseCwd,
    command: command,
    replicas: replicas,
    gracefulStopMs: 60000,
    nonBlockingDrain: true,
  },
}
