// The smallest useful config: one web process behind the stable proxy port.
// Validate it with: rollbridgectl validate -c examples/minimal.jsonnet
{
  application: 'minimal',
  proxy: { host: '127.0.0.1', port: 8182 },
  processes: [
    {
      id: 'web',
      policy: 'proxied',
      command: './server --port {{port}}',
      port: { from: 18182, to: 18299 },
      health: { path: '/ping' },
    },
  ],
}
