// One config file shared by several apps, parameterised by the environment
// rollbridged runs with (for example `Environment=APP_NAME=shop` in a
// systemd drop-in).
//
//   std.extVar('env')   the daemon's environment as an object, read once when
//                       the config is loaded (daemon start or reload)
//   {{env.NAME}}        the same environment, read each time a process starts
//
// The file is a top-level function. rollbridged calls it with no arguments,
// so every parameter needs a default; here the default comes from $APP_NAME.
//
//   APP_NAME=blog rollbridgectl validate -c examples/env-and-import.jsonnet

local lib = import 'shared.libsonnet';

function(appName=std.get(std.extVar('env'), 'APP_NAME', 'shop'))
  local env = std.extVar('env');
  local proxyPort = std.parseInt(std.get(env, 'APP_PROXY_PORT', '8182'));
  local workers = std.parseInt(std.get(env, 'APP_WORKERS', '2'));
  {
    application: appName,
    control: {
      path: '/run/rollbridge/%s.sock' % appName,
      mode: '660',
      group: std.get(env, 'APP_DEPLOY_GROUP', 'deploy'),
    },
    proxy: lib.proxy(proxyPort),
    statePath: '/var/lib/rollbridge/%s.state.json' % appName,
    processes: [
      lib.web('bin/%s-server --port {{port}}' % appName) + {
        env: { APP_NAME: appName, LOG_LEVEL: std.get(env, 'LOG_LEVEL', 'info') },
      },
      lib.worker('jobs', 'bin/%s-jobs --worker {{replicaIndex}}' % appName, replicas=workers) + {
        // Looked up when each worker starts, not when the config loads.
        env: { DATABASE_URL: '{{env.DATABASE_URL}}' },
      },
    ],
  }
