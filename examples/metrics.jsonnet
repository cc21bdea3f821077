// Prometheus metrics (docs/metrics.md) beside the proxy, and a sampled
// access log: Prometheus scrapes http://127.0.0.1:9182/metrics, and
// examples/grafana-dashboard.json shows what it stores. scripts/metrics-lane.sh runs this config
// with the ports, the socket and the app taken from its environment; as a
// file on a server, write the values in directly.
local env = std.extVar('env');

{
  application: 'metrics-demo',
  control: { path: std.get(env, 'RB_METRICS_SOCKET', '/run/rollbridge/metrics-demo.sock') },
  proxy: {
    host: '127.0.0.1',
    port: std.parseInt(std.get(env, 'RB_METRICS_PROXY_PORT', '8182')),
    drainTimeoutMs: 5000,
  },
  metrics: {
    host: '127.0.0.1',  // the metrics name releases and processes: keep them local
    port: std.parseInt(std.get(env, 'RB_METRICS_PORT', '9182')),
  },
  // Every 100th request, and every one slower than a second, as a JSON
  // line on stdout (the journal under systemd).
  accessLog: { sample: 0.01, slowMs: 1000 },
  releaseRetention: { keep: 5 },
  processes: [
    {
      id: 'web',
      policy: 'proxied',
      command: 'exec "{{env.RB_METRICS_APP}}" --port {{port}}',  // the example app (examples/app)
      port: { from: 18400, to: 18499 },
      health: { path: '/ping', intervalMs: 25 },
      // Sampled memory is what rollbridge_process_resident_memory_bytes shows.
      memory: { limitBytes: 512 * 1024 * 1024, checkIntervalMs: 1000 },
    },
  ],
}
