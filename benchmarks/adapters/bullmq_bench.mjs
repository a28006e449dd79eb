// BullMQ adapter: same CLI and JSON contract as the Python adapters (see ../README.md).
//
//   node bullmq_bench.mjs --scenario A|B|C|D --jobs N --concurrency C \
//        --redis-url redis://127.0.0.1:6379/14 --results-key KEY
//
// The worker runs in a child process (`--role worker`) with Worker({concurrency: C}); scenario A
// uses Queue.addBulk. bullmq and ioredis are resolved from ../node/node_modules (npm ci there).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const SCRIPT = fileURLToPath(import.meta.url);
const QUEUE_NAME = 'bench';
const JOB_SLEEP_S = 0.05;
const WARMUP_MARK = -1.0;
const DEFAULT_JOBS = { A: 5000, B: 2000, C: 2000, D: 5000 };

const nowS = () => (performance.timeOrigin + performance.now()) / 1000;
const monoS = () => performance.now() / 1000;

function parseArgs(argv) {
  const opts = {
    role: 'driver',
    scenario: null,
    jobs: 0,
    concurrency: 10,
    redisUrl: 'redis://127.0.0.1:6379/14',
    resultsKey: 'bench:results',
    timeout: 100,
    rate: 100,
  };
  const names = {
    '--role': ['role', String],
    '--scenario': ['scenario', String],
    '--jobs': ['jobs', Number],
    '--concurrency': ['concurrency', Number],
    '--redis-url': ['redisUrl', String],
    '--results-key': ['resultsKey', String],
    '--timeout': ['timeout', Number],
    '--rate': ['rate', Number],
  };
  for (let i = 0; i < argv.length; i += 2) {
    const spec = names[argv[i]];
    if (!spec) throw new Error(`unknown argument ${argv[i]}`);
    opts[spec[0]] = spec[1](argv[i + 1]);
  }
  if (opts.role === 'driver' && !['A', 'B', 'C', 'D'].includes(opts.scenario)) {
    throw new Error('--scenario must be one of A, B, C, D');
  }
  if (opts.role === 'driver') opts.jobs = opts.jobs || DEFAULT_JOBS[opts.scenario];
  opts.sleepS = ['B', 'C'].includes(opts.scenario) ? JOB_SLEEP_S : 0;
  return opts;
}

function connectionOptions(url) {
  const parsed = new URL(url);
  const db = Number(parsed.pathname.replace('/', '') || '0');
  if (db === 0) throw new Error('refusing to use Redis db 0; pass a dedicated db such as /14');
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 6379), db };
}

// ------------------------------------------------------------------ worker process

async function runWorker() {
  const env = process.env;
  const redisUrl = env.BENCH_REDIS_URL;
  const resultsKey = env.BENCH_RESULTS_KEY;
  const sleepMs = Number(env.BENCH_SLEEP || '0') * 1000;
  const concurrency = Number(env.BENCH_CONCURRENCY || '10');
  const connection = connectionOptions(redisUrl);
  const results = new IORedis(connection);
  const worker = new Worker(
    QUEUE_NAME,
    async (job) => {
      const startTs = nowS();
      await results.rpush(resultsKey, `${job.data.enqueue_ts},${startTs}`);
      if (sleepMs) await sleep(sleepMs);
    },
    { connection, concurrency },
  );
  const shutdown = async () => {
    await worker.close(true);
    results.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  await worker.waitUntilReady();
}

// ------------------------------------------------------------------ driver helpers

let activeWorker = null;

class WorkerProcess {
  constructor(opts) {
    activeWorker = this;
    this.log = [];
    this.exited = false;
    this.child = spawn(process.execPath, [SCRIPT, '--role', 'worker'], {
      detached: true, // own process group, killed as a whole
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        BENCH_REDIS_URL: opts.redisUrl,
        BENCH_RESULTS_KEY: opts.resultsKey,
        BENCH_SLEEP: String(opts.sleepS),
        BENCH_CONCURRENCY: String(opts.concurrency),
      },
    });
    const keep = (chunk) => {
      this.log.push(chunk.toString());
      if (this.log.length > 50) this.log.shift();
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.child.on('exit', () => {
      this.exited = true;
    });
  }

  tail() {
    return this.log.join('').slice(-1500);
  }

  async stop(graceMs = 3000) {
    const signalGroup = (sig) => {
      try {
        process.kill(-this.child.pid, sig);
      } catch {
        // already gone
      }
    };
    signalGroup('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (!this.exited && Date.now() < deadline) await sleep(20);
    signalGroup('SIGKILL');
  }
}

async function waitForResults(redis, key, target, worker, timeoutS) {
  const deadline = monoS() + timeoutS;
  let count = 0;
  while (monoS() < deadline) {
    count = await redis.llen(key);
    if (count >= target) return count;
    if (worker && worker.exited) throw new Error(`worker exited early; log: ${worker.tail()}`);
    await sleep(20);
  }
  throw new Error(`timed out with ${count}/${target} results; worker log: ${worker?.tail() ?? ''}`);
}

async function readResults(redis, key, jobs, out) {
  const raw = await redis.lrange(key, 0, -1);
  out.completed = raw.length;
  if (raw.length !== jobs) out.unexpected_results = raw.length - jobs;
  return raw.map((item) => item.split(',').map(Number));
}

function percentile(sorted, pct) {
  const rank = Math.max(1, Math.min(sorted.length, Math.ceil((pct / 100) * sorted.length)));
  return sorted[rank - 1];
}

function throughputMetrics(pairs, jobs) {
  const starts = pairs.map(([, s]) => s);
  const span = Math.max(...starts) - Math.min(...starts);
  return { process_s: span, throughput: jobs / span };
}

function efficiencyMetrics(pairs, jobs, concurrency) {
  const starts = pairs.map(([, s]) => s);
  const ideal = (jobs * JOB_SLEEP_S) / concurrency;
  const actual = Math.max(...starts) + JOB_SLEEP_S - Math.min(...starts);
  return { ideal_s: ideal, actual_s: actual, efficiency: ideal / actual };
}

function waitMetrics(pairs) {
  const waits = pairs.map(([e, s]) => (s - e) * 1000).sort((a, b) => a - b);
  return {
    wait_p50_ms: percentile(waits, 50),
    wait_p95_ms: percentile(waits, 95),
    wait_p99_ms: percentile(waits, 99),
    wait_max_ms: waits[waits.length - 1],
    wait_mean_ms: waits.reduce((a, b) => a + b, 0) / waits.length,
  };
}

// ------------------------------------------------------------------ scenarios

async function backlogThenWork(opts, queue, redis) {
  const jobs = [];
  for (let i = 0; i < opts.jobs; i += 1) {
    jobs.push({ name: 'bench_job', data: { enqueue_ts: nowS() } });
  }
  const t0 = monoS();
  await queue.addBulk(jobs);
  const enqueueS = monoS() - t0;
  const out = { enqueue_mode: 'bulk', enqueue_s: enqueueS, enqueue_rate: opts.jobs / enqueueS };
  const worker = new WorkerProcess(opts);
  try {
    await waitForResults(redis, opts.resultsKey, opts.jobs, worker, opts.timeout);
  } finally {
    await worker.stop();
  }
  const pairs = await readResults(redis, opts.resultsKey, opts.jobs, out);
  Object.assign(out, throughputMetrics(pairs, opts.jobs));
  if (opts.scenario === 'B') Object.assign(out, efficiencyMetrics(pairs, opts.jobs, opts.concurrency));
  return out;
}

async function steadyLoad(opts, queue, redis) {
  const worker = new WorkerProcess(opts);
  try {
    await queue.add('bench_job', { enqueue_ts: WARMUP_MARK });
    await waitForResults(redis, opts.resultsKey, 1, worker, Math.min(60, opts.timeout));
    await sleep(1000);
    await redis.del(opts.resultsKey);
    const begin = monoS();
    let maxLag = 0;
    for (let i = 0; i < opts.jobs; i += 1) {
      const delay = begin + i / opts.rate - monoS();
      if (delay > 0) await sleep(delay * 1000);
      else maxLag = Math.max(maxLag, -delay);
      await queue.add('bench_job', { enqueue_ts: nowS() });
    }
    const out = {
      rate: opts.rate,
      enqueue_mode: 'loop',
      achieved_rate: opts.jobs / (monoS() - begin),
      producer_lag_max_ms: maxLag * 1000,
    };
    await waitForResults(redis, opts.resultsKey, opts.jobs, worker, opts.timeout);
    Object.assign(out, waitMetrics(await readResults(redis, opts.resultsKey, opts.jobs, out)));
    return out;
  } finally {
    await worker.stop();
  }
}

async function enqueueOnly(opts, queue) {
  const t0 = monoS();
  for (let i = 0; i < opts.jobs; i += 1) {
    await queue.add('bench_job', { enqueue_ts: nowS() });
  }
  const elapsed = monoS() - t0;
  return { enqueue_mode: 'loop', enqueue_s: elapsed, enqueue_rate: opts.jobs / elapsed, completed: 0 };
}

async function runDriver(opts) {
  const version = require('bullmq/package.json').version;
  const record = {
    lib: 'bullmq',
    lib_version: version,
    scenario: opts.scenario,
    jobs: opts.jobs,
    concurrency: opts.concurrency,
    ok: false,
    error: null,
    notes: 'node worker process, Worker concurrency=C; bulk = Queue.addBulk',
  };
  const started = monoS();
  const connection = connectionOptions(opts.redisUrl);
  const redis = new IORedis(connection);
  const queue = new Queue(QUEUE_NAME, { connection });
  try {
    await redis.flushdb();
    await queue.waitUntilReady();
    const run = { A: backlogThenWork, B: backlogThenWork, C: steadyLoad, D: enqueueOnly };
    Object.assign(record, await run[opts.scenario](opts, queue, redis));
    record.ok = true;
  } catch (err) {
    record.error = String(err?.stack ?? err).slice(0, 4000);
  } finally {
    record.wall_s = monoS() - started;
    await queue.close();
    await redis.flushdb().catch(() => {});
    redis.disconnect();
  }
  process.stdout.write(`${JSON.stringify(record)}\n`);
  return record.ok ? 0 : 1;
}

const opts = parseArgs(process.argv.slice(2));
if (opts.role === 'worker') {
  await runWorker();
} else {
  // If the runner times us out, take the worker's process group down with us.
  process.on('SIGTERM', async () => {
    if (activeWorker) await activeWorker.stop(500);
    process.exit(143);
  });
  process.exitCode = await runDriver(opts);
}
