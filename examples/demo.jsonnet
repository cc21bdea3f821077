// The README demo: the example app (examples/app) behind a local proxy,
// with a pool of two chatty workers. The demo script builds the app and
// exports its path as ROLLBRIDGE_DEMO_APP before starting rollbridged.
//
//   go build -o /tmp/rollbridge-demo-app ./examples/app
//   ROLLBRIDGE_DEMO_APP=/tmp/rollbridge-demo-app rollbridged -c examples/demo.jsonnet
local env = std.extVar('env');

{
  application: 'demo',

  control: {
    path: std.get(env, 'ROLLBRIDGE_DEMO_SOCKET', '/tmp/rollbridge-demo.sock'),
  },

  proxy: {
    host: '127.0.0.1',
    port: std.parseInt(std.get(env, 'ROLLBRIDGE_DEMO_PORT', '8182')),
    drainTimeoutMs: 10000,  // keep the demo snappy when a client lingers
  },

  processes: [
    {
      id: 'web',
      policy: 'proxied',
      // exec: the app replaces the wrapper shell, so its own clean exit on
      // SIGTERM is what rollbridge reports.
      command: 'exec "{{env.ROLLBRIDGE_DEMO_APP}}" --port {{port}}',
      port: { from: 18182, to: 18299 },
      health: { path: '/ping', intervalMs: 25 },
    },
    {
      // Two replicas (worker#0, worker#1); default stopSignal (SIGTERM).
      id: 'worker',
      policy: 'companion',
      command: 'while true; do echo "worker {{replicaIndex}}/{{replicaCount}} of {{releaseId}}"; sleep 5; done',
      replicas: 2,
    },
  ],
}
