// A web app with background workers that finish their jobs across deploys.
//
//   web        the proxied process
//   worker     a pool of 4 job workers (worker#0 .. worker#3), each taking
//              its own queue shard; they finish the current job on SIGINT
//              and stop in parallel with the web drain (nonBlockingDrain)
//   mailer     a worker that is quieted by a command (SIGTSTP to its whole
//              process group), then given up to 2 minutes to drain
//   scheduler  exactly one cron-like scheduler across all releases
//
//   rollbridgectl validate -c examples/worker-pool.jsonnet
//   rollbridgectl restart --process worker      # every replica
//   rollbridgectl restart --process worker#2    # one replica

// Give up on a crash loop (5 crashes in a minute), backing off 1s, 2s, 4s ... 30s.
local crashPolicy = {
  restartDelayMs: 1000,
  restart: { maxRestarts: 5, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000 },
};

local MiB = 1024 * 1024;

{
  application: 'worker-pool',

  proxy: {
    host: '127.0.0.1',
    port: 8182,
    drainTimeoutMs: 30000,
  },

  processes: [
    {
      id: 'web',
      policy: 'proxied',
      command: 'bin/server --listen 127.0.0.1:{{port}}',
      port: { from: 18182, to: 18299 },
      health: { path: '/ping', timeoutMs: 30000, intervalMs: 50 },
    },
    crashPolicy {
      id: 'worker',
      policy: 'companion',
      command: 'bin/jobs work --shard {{replicaIndex}} --shards {{replicaCount}}',
      env: { JOBS_QUEUE: 'default' },
      replicas: 4,
      stopSignal: 'SIGINT',  // the job runner finishes its current job, then exits
      gracefulStopMs: 120000,  // longer than the longest job
      nonBlockingDrain: true,  // old workers wind down while the web process drains
      memory: { limitBytes: 512 * MiB, warnBytes: 384 * MiB, checkIntervalMs: 5000 },
      outputLines: 200,
    },
    crashPolicy {
      id: 'mailer',
      policy: 'companion',
      command: 'bin/jobs work --queue mail',
      lifecycle: {
        // SIGTSTP tells the runner to stop taking new jobs; then wait up to
        // 2 minutes for it to exit, then SIGTERM, then SIGKILL.
        quietCommand: 'kill -TSTP -$ROLLBRIDGE_PID',
        drainTimeoutMs: 120000,
      },
      gracefulStopMs: 15000,
      memory: { limitBytes: 256 * MiB },
    },
    {
      id: 'scheduler',
      policy: 'singleton',  // the old one stops before the new one starts
      command: 'bin/jobs schedule',
      restart: { maxRestarts: 10, windowMs: 300000 },
    },
  ],
}
