// server.mjs - starts real eddy processes for the end-to-end suites.
//
// EDDY_MODE=standalone (default): one `eddy standalone` process.
// EDDY_MODE=cluster: `eddy node` and `eddy broker` as two processes over tcp.
// EDDY_MODE=haproxy: cluster-tests/cluster.sh with 3 nodes, 2 brokers and haproxy;
//   clients connect through haproxy, so they spread over both brokers.
// EDDY_BIN selects the binary (build/eddy, or build-asan/eddy for the sanitizer run).
// EDDY_LINK_TLS=1 (make e2e-cluster sets it): the nng links are tls+tcp:// with certificates
//   made at test time (deploy/tls/eddy-certs.sh); every eddy process started here gets the
//   credentials of its role (node, broker, or backend for eddy ctl) in EDDY_CLUSTER_TLS_*.
// Every process's stderr is kept; stop() checks for a clean exit and for sanitizer reports.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync, readdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import assert from 'node:assert/strict'

export const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
export const MODE = process.env.EDDY_MODE || 'standalone'
export const LINK_TLS = process.env.EDDY_LINK_TLS === '1'
// the scheme of the nng addresses the tests give eddy: `${LINK}://127.0.0.1:0`
export const LINK = LINK_TLS ? 'tls+tcp' : 'tcp'
const START_TIMEOUT = 20000

// EDDY_LINK_TLS: one development CA and certificates for the whole test file.
let certDir = null
export function linkCerts () {
  if (certDir === null) {
    certDir = mkdtempSync(join(tmpdir(), 'eddy-e2e-certs-'))
    execFileSync('bash', [resolve('deploy/tls/eddy-certs.sh'), certDir, 'dev', '3', '3'])
    process.on('exit', () => rmSync(certDir, { recursive: true, force: true }))
  }
  return certDir
}

// The EDDY_CLUSTER_TLS_* variables of the eddy command args (its first word says the role).
export function linkEnv (args) {
  if (!LINK_TLS) return {}
  const name = { node: 'node1', standalone: 'node1', broker: 'broker1', ctl: 'backend' }[args[0]]
  if (!name) return {}
  const dir = linkCerts()
  return {
    EDDY_CLUSTER_TLS_CERT: join(dir, `${name}.crt`),
    EDDY_CLUSTER_TLS_KEY: join(dir, `${name}.key`),
    EDDY_CLUSTER_TLS_CA: join(dir, 'ca.crt')
  }
}
const SANITIZER = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer/

// Every process a test file started; killed if the runner ends the file early
// (a timeout), so no server outlives its test.
const running = new Set()
process.on('exit', () => { for (const p of running) try { p.child.kill('SIGKILL') } catch {} })

export class Proc {
  // fileLimit: the process's open-file limit (soft and hard), set by a shell that then execs eddy.
  constructor (name, args, env = {}, { fileLimit = 0 } = {}) {
    this.name = name
    this.args = args
    this.stderr = ''
    const [cmd, argv] = fileLimit > 0
      ? ['/bin/sh', ['-c', `ulimit -n ${Number(fileLimit)} && exec "$0" "$@"`, BIN, ...args]]
      : [BIN, args]
    this.child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...linkEnv(args), ...env } })
    running.add(this)
    this.exited = new Promise(resolve => this.child.on('exit', (code, signal) => { running.delete(this); resolve({ code, signal }) }))
    this.child.stderr.on('data', d => { this.stderr += d.toString() })
  }

  // Resolves with the first match of re in stderr.
  waitFor (re, timeout = START_TIMEOUT) {
    return new Promise((resolve, reject) => {
      const started = Date.now()
      const check = () => {
        const m = this.stderr.match(re)
        if (m) return resolve(m)
        if (this.child.exitCode !== null) return reject(new Error(`${this.name} exited ${this.child.exitCode} before ${re}:\n${this.stderr}`))
        if (Date.now() - started > timeout) return reject(new Error(`${this.name}: timeout waiting for ${re}:\n${this.stderr}`))
        setTimeout(check, 20)
      }
      check()
    })
  }

  async stop (signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15000)
    const result = await this.exited
    clearTimeout(timer)
    return result
  }
}

export function assertNoSanitizerReport (text, who) {
  assert.ok(!SANITIZER.test(text), `${who}: sanitizer report in stderr:\n${text}`)
}

// Starts a server. extra: arguments for the websocket side (standalone or broker);
// nodeExtra: arguments for the node process in cluster mode. dataDir and wsPort
// reuse a previous server's data folder and websocket port (restart tests).
// nodeEnv: environment variables for the process that runs the node role.
// edgeFileLimit: the open-file limit of the process clients talk to (standalone
// or broker; not in haproxy mode, where cluster.sh starts the processes).
// lbTls (haproxy mode): haproxy terminates TLS with this PEM file (chain and key); url is wss://.
export async function startServer ({ extra = [], nodeExtra = [], dataDir = null, wsPort = 0, nodeEnv = {}, edgeFileLimit = 0, lbTls = null } = {}) {
  if (MODE === 'haproxy') return startCluster({ extra, nodeExtra, lbTls })
  const ownDir = dataDir === null
  if (ownDir) dataDir = mkdtempSync(join(tmpdir(), 'eddy-e2e-'))
  const procs = []
  let port
  let nodeMetricsUrl = null
  try {
    if (MODE === 'cluster') {
      const node = new Proc('node', ['node', '--request', `${LINK}://127.0.0.1:0`, '--delivery', `${LINK}://127.0.0.1:0`,
        '--metrics', '127.0.0.1:0', '--data', dataDir, ...nodeExtra], nodeEnv)
      procs.push(node)
      const m = await node.waitFor(/node-listening request=(\S+) delivery=(\S+)/)
      nodeMetricsUrl = (await node.waitFor(/node-metrics-listening url=(\S+)/))[1]
      const broker = new Proc('broker', ['broker', '--host', '127.0.0.1', '--port', String(wsPort), '--node', `${m[1]},${m[2]}`, ...extra],
        {}, { fileLimit: edgeFileLimit })
      procs.push(broker)
      port = Number((await broker.waitFor(/broker-listening port=(\d+)/))[1])
    } else {
      const sa = new Proc('standalone', ['standalone', '--host', '127.0.0.1', '--port', String(wsPort), '--data', dataDir, ...extra, ...nodeExtra],
        nodeEnv, { fileLimit: edgeFileLimit })
      procs.push(sa)
      port = Number((await sa.waitFor(/broker-listening port=(\d+)/))[1])
    }
  } catch (err) {
    for (const p of procs) await p.stop('SIGKILL')
    if (ownDir) rmSync(dataDir, { recursive: true, force: true })
    throw err
  }
  const byName = Object.fromEntries(procs.map(p => [p.name, p]))
  return {
    port,
    url: `ws://127.0.0.1:${port}/deepstream`,
    dataDir,
    // cluster mode: the node's own HTTP listener (node.metrics), e.g. http://127.0.0.1:41689
    nodeMetricsUrl,
    procs: byName,
    edge: procs[procs.length - 1], // the process clients talk to
    stderr: () => procs.map(p => p.stderr).join(''),
    // Swaps a process for its replacement (a restarted broker), so stop() checks the new one.
    replace (old, fresh) { procs[procs.indexOf(old)] = fresh },
    // SIGKILLs every process (no clean-up, no checks): a crash. The data folder stays.
    async kill () {
      for (const p of procs) await p.stop('SIGKILL')
      for (const p of procs) assertNoSanitizerReport(p.stderr, p.name)
    },
    // After kill(): the same data folder and websocket port, new processes.
    async restart (opts = {}) {
      return startServer({ extra, nodeExtra, nodeEnv, edgeFileLimit, ...opts, dataDir, wsPort: port })
    },
    // Stops broker first, then node; asserts exit code 0 and no sanitizer report.
    async stop () {
      for (const p of [...procs].reverse()) {
        const { code, signal } = await p.stop()
        assertNoSanitizerReport(p.stderr, p.name)
        assert.equal(code, 0, `${p.name} exited with ${code}/${signal}:\n${p.stderr}`)
      }
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

// Runs eddy with args to completion: { code, stdout, stderr }.
export function runEddy (args) {
  try {
    const stdout = execFileSync(BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000,
      env: { ...process.env, ...linkEnv(args) } })
    return { code: 0, stdout, stderr: '' }
  } catch (err) {
    return { code: err.status, stdout: err.stdout?.toString() ?? '', stderr: err.stderr?.toString() ?? '' }
  }
}

// The node (1..nodes) owning name in a cluster whose nodes share the 4096 shards evenly in
// order (cluster.sh's map): FNV-1a 64 of the name, or of its {tag} (common/shardmap.c).
export function shardOwner (name, nodes) {
  const tag = name.match(/\{([^}]+)\}/)
  if (tag) name = tag[1]
  let h = 0xcbf29ce484222325n
  for (const b of Buffer.from(name)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn
  return 1 + Math.floor(Number(h & 4095n) * nodes / 4096)
}

// names prefix0, prefix1, ... owned by node (1..nodes), the first n of them
export function namesOn (node, nodes, prefix, n) {
  const out = []
  for (let i = 0; out.length < n; i++) if (shardOwner(`${prefix}${i}`, nodes) === node) out.push(`${prefix}${i}`)
  return out
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Polls fn until it returns truthy or the timeout passes.
// what: the condition's name, or a function giving it with diagnostics, called on timeout
export async function until (fn, what, timeout = 5000) {
  const started = Date.now()
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() - started > timeout) throw new Error(`timeout: ${typeof what === 'function' ? what() : what}`)
    await sleep(20)
  }
}

// EDDY_MODE=haproxy: the same interface over cluster-tests/cluster.sh.
const SH = resolve('cluster-tests/cluster.sh')
const NAMES = ['node1', 'node2', 'node3', 'broker1', 'broker2']

function startCluster ({ extra, nodeExtra, lbTls }) {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-e2e-cluster-'))
  const sh = (...args) => execFileSync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', '3', '--brokers', '2', ...(lbTls ? ['--lb-tls', lbTls] : ['--lb']),
    ...(LINK_TLS ? ['--tls'] : []), '--bin', BIN, '--', ...extra, ...nodeExtra], { encoding: 'utf8', timeout: 60000 })
  const url = readFileSync(join(dir, 'lb'), 'utf8').trim()
  const logs = () => readdirSync(dir).filter(f => f.endsWith('.log') && f !== 'lb.log')
  const server = {
    port: Number(url.split(':')[2].split('/')[0]),
    url,
    dataDir: dir,
    procs: {},
    stderr: () => logs().map(f => readFileSync(join(dir, f), 'utf8')).join(''),
    async kill () {
      for (const n of NAMES) sh('kill', n)
      for (const f of logs()) assertNoSanitizerReport(readFileSync(join(dir, f), 'utf8'), f)
    },
    async restart () {
      for (const n of NAMES) sh('start', n)
      sh('settle') // the nodes' metadata group has a leader again and each node its lease: they serve
      // haproxy checks the brokers every 500 ms: until it has seen one back it answers 503
      const lbHealth = url.replace(/^ws:/, 'http:').replace(/\/[^/]*$/, '/health-check')
      await until(async () => (await fetch(lbHealth).catch(() => null))?.status === 200, 'haproxy sees a broker again', 10000)
      return server
    },
    async stop () {
      sh('down')
      // haproxy's view of the brokers, for a failure's post-mortem: it logs each broker it took out
      const lb = existsSync(join(dir, 'lb.log')) ? readFileSync(join(dir, 'lb.log'), 'utf8') : ''
      const downs = lb.split('\n').filter(l => /is DOWN|no server available/.test(l))
      if (downs.length > 0) console.log(`# haproxy took brokers out during this file:\n# ${downs.slice(0, 10).join('\n# ')}`)
      for (const f of logs()) {
        const log = readFileSync(join(dir, f), 'utf8')
        assertNoSanitizerReport(log, f)
        assert.match(log.trim().split('\n').pop(), /stopped role=\w+ exit=0/, `${f} did not stop cleanly`)
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
  return server
}
