// TensorBuzz production backend (the original's examples/tensorbuzz.com.js).
//
// Nginx keeps proxying the backend host to 127.0.0.1:4500, which rollbridged
// holds. Beacon and background-jobs-main are daemon-wide services on fixed
// ports, so they keep running across deploys; each release gets its own
// background worker and web process, and traffic moves to the new web
// process once /ping answers.
//
//   rollbridgectl validate -c examples/tensorbuzz.jsonnet

// Every process runs the Velocious backend in production mode.
local production = {
  NODE_ENV: 'production',
  VELOCIOUS_ENV: 'production',
};

// Processes that talk to Beacon and the jobs broker find them here. The
// ports are the services' fixed ports, filled in when a process starts.
local brokers = production {
  VELOCIOUS_BEACON_PORT: '{{ports.beacon}}',
  VELOCIOUS_BACKGROUND_JOBS_PORT: '{{ports.background-jobs-main}}',
};

// Block until a local TCP port accepts connections, then run the rest.
local waitFor(port) = 'wait-for-it 127.0.0.1:%s --strict -- ' % port;
local afterBrokers = waitFor('{{ports.beacon}}') + waitFor('{{ports.background-jobs-main}}');

{
  application: 'tensorbuzz',

  control: {
    path: '/tmp/rollbridge-tensorbuzz.sock',
  },

  proxy: {
    host: '127.0.0.1',
    port: 4500,
    healthPath: '/ping',
    healthTimeoutMs: 30000,
    drainTimeoutMs: 60000,
    forceStopTimeoutMs: 10000,
  },

  processes: [
    {
      id: 'beacon',
      policy: 'service',
      cwd: '{{releasePath}}/backend',
      env: production { VELOCIOUS_BEACON_PORT: '{{port}}' },
      command: 'npx velocious beacon',
      port: 7330,
    },
    {
      id: 'background-jobs-main',
      policy: 'service',
      cwd: '{{releasePath}}/backend',
      env: production {
        VELOCIOUS_BEACON_PORT: '{{ports.beacon}}',
        VELOCIOUS_BACKGROUND_JOBS_PORT: '{{port}}',
      },
      command: waitFor('{{ports.beacon}}') + 'npx velocious background-jobs-main',
      port: 7331,
    },
    {
      id: 'background-jobs-worker',
      policy: 'companion',
      cwd: '{{releasePath}}/backend',
      env: brokers,
      command: afterBrokers + 'npx velocious background-jobs-worker',
      gracefulStopMs: 60000,
    },
    {
      id: 'web',
      policy: 'proxied',
      cwd: '{{releasePath}}/backend',
      env: brokers,
      command: afterBrokers + 'npx velocious server --host 127.0.0.1 --port {{port}}',
      port: { from: 14500, to: 14599 },
      health: {
        path: '/ping',
        timeoutMs: 30000,
        intervalMs: 500,
      },
    },
  ],
}
