// ticket-server: the config from the original README, in Jsonnet.
//
// A Velocious app with four processes, one per policy family:
//   beacon                  per-release companion with its own port range
//   background-jobs-worker  per-release companion (keeps 200 output lines)
//   background-jobs-main    daemon-wide service, survives deploys
//   web                     the proxied process behind 127.0.0.1:8182
//
//   rollbridgectl validate -c examples/ticket-server.jsonnet
{
  application: 'ticket-server',

  control: {
    path: '/tmp/rollbridge-ticket-server.sock',
  },

  proxy: {
    host: '127.0.0.1',
    port: 8182,
    upstreamHost: '127.0.0.1',
    healthPath: '/ping',
    healthTimeoutMs: 30000,
    drainTimeoutMs: 60000,
    forceStopTimeoutMs: 10000,
  },

  processes: [
    {
      id: 'beacon',
      policy: 'companion',
      cwd: '{{releasePath}}',
      command: 'env VELOCIOUS_BEACON_PORT={{port}} npx velocious beacon',
      port: { from: 17330, to: 17399 },
    },
    {
      id: 'background-jobs-worker',
      policy: 'companion',
      cwd: '{{releasePath}}',
      command: 'npx velocious background-jobs-worker',
      outputLines: 200,
    },
    {
      id: 'background-jobs-main',
      policy: 'service',
      cwd: '{{releasePath}}',
      command: 'npx velocious background-jobs-main',
    },
    {
      id: 'web',
      policy: 'proxied',
      cwd: '{{releasePath}}',
      command: 'npx velocious server --host 127.0.0.1 --port {{port}}',
      port: { from: 18182, to: 18299 },
      health: { path: '/ping', timeoutMs: 30000 },
    },
  ],
}
