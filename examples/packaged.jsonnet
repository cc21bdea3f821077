// The Debian package's example (/usr/share/doc/rollbridge/examples/app.jsonnet).
// For an application 'shop':
//   cp /usr/share/doc/rollbridge/examples/app.jsonnet /etc/rollbridge/shop.jsonnet
//   rollbridgectl validate -c /etc/rollbridge/shop.jsonnet
//   rollbridgectl systemd units -c /etc/rollbridge/shop.jsonnet --install
//   systemctl enable --now rollbridge-proxy@shop.socket rollbridge-control@shop.socket
//   rollbridgectl deploy -c /etc/rollbridge/shop.jsonnet --release-path /srv/shop/releases/1
// (docs/systemd.md, "Installing the Debian package").
{
  application: 'shop',  // the same as the file's name and the unit's instance
  // The package's system user: every process and hook runs as it. The
  // release directories must be readable by it.
  user: 'rollbridge',
  // Members of the package's group 'deploy' may deploy (and so run code as
  // 'rollbridge'): add deploy users with `adduser USER deploy`.
  control: { path: '/run/rollbridge/shop.sock', mode: '660', group: 'deploy' },
  proxy: { host: '127.0.0.1', port: 8182 },  // the front end (nginx) proxies here
  processes: [
    {
      id: 'web',
      policy: 'proxied',
      command: 'exec bin/server --port {{port}}',
      port: { from: 18182, to: 18299 },
      health: { path: '/ping' },
    },
    {
      id: 'worker',
      policy: 'companion',
      command: 'exec bin/worker',
      stopSignal: 'SIGINT',
      gracefulStopMs: 30000,
    },
  ],
}
