// raftcluster.mjs - a cluster of real processes from cluster.sh with the
// metadata group on (--raft), for the cluster tests of issue 18: start it,
// ask a node for its view (eddy ctl cluster status --json), run eddy ctl,
// wait until every node answers one bootstrapped map with a usable lease, and
// bring it down checking every log for sanitizer reports.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { until, assertNoSanitizerReport } from '../../tests/e2e/lib/server.mjs'

export const SH = resolve('cluster-tests/cluster.sh')
export const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
export const execFileAsync = promisify(execFile)

// Starts NODES nodes and `brokers` brokers with --replicas (null:
// cluster.replicas left to its default) and cluster.raft: true (--raft), false
// (--no-raft) or null (eddy's default, auto: on with 3 or more nodes); `flags`
// go to every eddy process (after --). Returns the handle the helpers take.
export function startCluster ({ name = 'raft', nodes = 3, brokers = 1, replicas = 2, raft = true, flags = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `eddy-${name}-`))
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(nodes), '--brokers', String(brokers), '--bin', BIN,
    ...(replicas === null ? [] : ['--replicas', String(replicas)]), ...(raft === null ? [] : [raft ? '--raft' : '--no-raft']),
    '--', ...flags], { encoding: 'utf8', timeout: 60000 })
  const sh = (...a) => execFileAsync('bash', [SH, ...a, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  const read = f => readFileSync(join(dir, f), 'utf8').trim().split('\n')
  const c = { dir, sh, brokers: read('brokers'), nodes: read('nodes') }
  c.log = n => readFileSync(join(dir, `${n}.log`), 'utf8')
  // eddy ctl against node i (0-based); resolves to its stdout, rejects on a non-zero exit
  c.ctl = async (i, ...args) => (await execFileAsync(BIN, ['ctl', '--cluster', c.nodes[i], '--timeout', '3000', ...args],
    { encoding: 'utf8', timeout: 70000 })).stdout
  // node i's cluster status, or null when it does not answer
  c.status = async i => { try { return JSON.parse(await c.ctl(i, 'cluster', 'status', '--json')) } catch { return null } }
  return c
}

// Waits until every node of indexes answers one bootstrapped map (same
// version, same leader) with a usable lease; returns their statuses.
export async function settled (c, indexes, what, timeout = 20000) {
  let last = []
  await until(async () => {
    last = await Promise.all(indexes.map(i => c.status(i)))
    if (last.some(s => s === null || !s.raft || s.version === 0 || !s.leader || !s.lease.valid ||
      s.assignedShards !== 4096)) return false
    return last.every(s => s.version === last[0].version && s.leader === last[0].leader)
  }, what, timeout)
  return last
}

// Brings the cluster down; every log must be free of sanitizer reports. The
// folder goes unless EDDY_KEEP is set.
export async function stopCluster (c) {
  if (c === null) return
  await c.sh('down').catch(() => {})
  for (const f of readdirSync(c.dir).filter(f => f.endsWith('.log'))) {
    assertNoSanitizerReport(readFileSync(join(c.dir, f), 'utf8'), f)
  }
  if (process.env.EDDY_KEEP) console.log(`# kept ${c.dir}`)
  else rmSync(c.dir, { recursive: true, force: true })
}
