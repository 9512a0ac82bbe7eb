// raft.test.mjs - the metadata group on the nodes (cluster.raft, issue 18).
// A real cluster from cluster.sh: 3 nodes with --raft and --replicas 2, one
// broker. Every node answers `eddy ctl cluster status --json` with the same
// committed map: 3 members, one leader, every shard assigned with 2 copies,
// exactly the static map's primaries and replicas at cluster.epoch. Official
// clients write and read records as usual. The leader is killed (-9): within
// a few seconds the other two report another leader and the same map; it
// comes back and rejoins (the same map, it sees the leader). A full restart
// (SIGTERM, which must not hang, then start) keeps the map: no second
// bootstrap, the version moved by replicas' in-sync changes alone. Without the group (no --raft) the status says raft is
// off, which the first assertions refuse. cluster.nodeTimeout is 60 s here:
// the map must stay the bootstrapped one while the leader is down (failing
// a node over is failover.test.mjs's).
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { until, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const NODES = 3

async function startCluster () {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-raft-'))
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '1', '--bin', BIN,
    '--raft', '--replicas', '2', '--', '--node-timeout', '60000'], { encoding: 'utf8', timeout: 60000 })
  const sh = (...args) => execFileAsync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  const broker = readFileSync(join(dir, 'brokers'), 'utf8').trim()
  const nodes = readFileSync(join(dir, 'nodes'), 'utf8').trim().split('\n')
  const metricsUrls = readFileSync(join(dir, 'node-metrics'), 'utf8').trim().split('\n')
  const metrics = async i => (await fetch(metricsUrls[i])).text()
  const log = name => readFileSync(join(dir, `${name}.log`), 'utf8')
  // eddy ctl cluster status --json of node i (null: no answer)
  const status = async i => {
    try {
      const { stdout } = await execFileAsync(BIN, ['ctl', '--cluster', nodes[i], '--timeout', '2000', 'cluster',
        'status', '--json'], { encoding: 'utf8', timeout: 10000 })
      return JSON.parse(stdout)
    } catch { return null }
  }
  return { dir, sh, broker, nodes, metrics, log, status }
}

function metric (text, name) {
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, c => '\\' + c)} (\\d+)$`, 'm'))
  return m ? Number(m[1]) : null
}

// Waits until every node of `indexes` answers a bootstrapped map agreeing
// with the others' (version, leader), each holding a lease (it serves its
// primaries only under one); returns their answers.
async function agreed (c, indexes, what, timeout = 10000) {
  let last = []
  await until(async () => {
    last = await Promise.all(indexes.map(i => c.status(i)))
    if (last.some(s => s === null || !s.raft || s.version === 0 || !s.leader || !s.lease.valid)) return false
    return last.every(s => s.version === last[0].version && s.leader === last[0].leader)
  }, `${what}: ${JSON.stringify(last.map(s => s && { self: s.selfName, version: s.version, leader: s.leaderName }))}`, timeout)
  return last
}

// Each node's primaries under the static even map (shardmap_init_even).
const staticPrimaries = i => { let n = 0; for (let s = 0; s < 4096; s++) if (Math.floor(s * NODES / 4096) === i) n++; return n }

function checkMap (s) {
  assert.equal(s.raft, true)
  assert.equal(s.members.length, NODES)
  assert.equal(s.assignedShards, 4096)
  assert.equal(s.copiesMin, 2)
  assert.equal(s.copiesMax, 2)
  assert.equal(s.sameAsStatic, true, 'the bootstrapped map assigns the shards as the static map does')
  for (const [i, m] of s.members.entries()) {
    assert.equal(m.id, i + 1)
    assert.equal(m.name, `node${i + 1}`)
    assert.equal(m.down, false)
    assert.equal(m.primaries, staticPrimaries(i))
    assert.equal(m.primaries + m.replicas, Object.values(m.epochs).reduce((a, b) => a + b, 0))
    assert.deepEqual(Object.keys(m.epochs), ['1']) // cluster.epoch
  }
  assert.equal(s.members.reduce((a, m) => a + m.replicas, 0), 4096)
}

const bootstraps = c => [1, 2, 3].reduce((n, i) => n + (c.log(`node${i}`).match(/meta-bootstrap version=/g) || []).length, 0)

// The bootstrapped map, still: checkMap, and a version that moved past the
// bootstrap's only by in-sync changes. A primary whose replica stops (the kill,
// each SIGTERM of a full restart) or catches up again proposes one
// (SYNC_REPLICA, logged meta-sync-replica): it moves the version and nothing
// checkMap reads. A second bootstrap, a node added or failed over would.
function sameMap (c, s, version, what) {
  checkMap(s)
  const proposals = [1, 2, 3].reduce((n, i) => n + (c.log(`node${i}`).match(/meta-sync-replica /g) || []).length, 0)
  assert.ok(s.version >= version && s.version - version <= proposals,
    `${what}: version ${s.version}, bootstrapped at ${version}, ${proposals} in-sync changes proposed`)
}

async function finish (c) {
  await closeAll()
  await c.sh('down')
  for (const f of readdirSync(c.dir).filter(f => f.endsWith('.log'))) assertNoSanitizerReport(readFileSync(join(c.dir, f), 'utf8'), f)
  rmSync(c.dir, { recursive: true, force: true })
}

describe('cluster: the metadata group (cluster.raft)', () => {
  afterEach(closeAll)

  test('one map on every node, as the static one; survives the leader killed and a full restart', async () => {
    const c = await startCluster()
    try {
      // every node: the same bootstrapped map, one leader
      const first = await agreed(c, [0, 1, 2], 'a bootstrapped map on every node')
      for (const s of first) checkMap(s)
      assert.equal(first.filter(s => s.isLeader).length, 1, 'one leader')
      const version = first[0].version
      assert.equal(version, NODES + 1) // one ADD_NODE per node, one SPREAD
      const leader = first[0].leader
      const ms = await Promise.all([0, 1, 2].map(i => c.metrics(i)))
      assert.equal(ms.reduce((a, m) => a + metric(m, 'eddy_node_meta_leader'), 0), 1)
      for (const m of ms) assert.equal(metric(m, 'eddy_node_meta_map_version'), version)
      assert.equal(metric(ms[leader - 1], 'eddy_node_meta_proposals_total{result="applied"}'), NODES + 1)
      assert.equal(bootstraps(c), 1)

      // records, as usual
      const writer = await connect(c.broker, { username: 'writer' })
      const names = Array.from({ length: 12 }, (_, i) => `raft/rec${i}`)
      for (const [i, name] of names.entries()) {
        const rec = writer.record.getRecord(name)
        await rec.whenReady()
        await rec.setWithAck({ i })
      }
      const reader = await connect(c.broker, { username: 'reader' })
      for (const [i, name] of names.entries()) assert.deepEqual(await reader.record.snapshot(name), { i })
      await closeAll()

      // the leader killed: the other two elect another one, same map
      const others = [0, 1, 2].filter(i => i !== leader - 1)
      const killedAt = Date.now()
      await c.sh('kill', `node${leader}`)
      let after = []
      await until(async () => {
        after = await agreed(c, others, 'the survivors agree', 10000)
        return after[0].leader !== leader
      }, 'another leader', 10000)
      const took = Date.now() - killedAt
      console.log(`# node${leader} (the leader) killed: node${after[0].leader} leads after ${took} ms`)
      assert.ok(took < 8000, `a new leader after ${took} ms`)
      for (const s of after) sameMap(c, s, version, 'the survivors')

      // it comes back and rejoins: the same map, and it sees the leader
      await c.sh('start', `node${leader}`)
      const back = await agreed(c, [0, 1, 2], 'the killed node rejoined')
      for (const s of back) sameMap(c, s, version, 'after the rejoin')
      assert.equal(back[leader - 1].isLeader, false)

      // a full restart (SIGTERM each; a hang would fail `down`'s wait and show in the log) keeps the map
      await c.sh('down')
      for (let i = 1; i <= NODES; i++) assert.match(c.log(`node${i}`), /stopped role=node exit=0\s*$/)
      for (let i = 1; i <= NODES; i++) await c.sh('start', `node${i}`)
      await c.sh('start', 'broker1')
      const again = await agreed(c, [0, 1, 2], 'the map after a full restart', 15000)
      for (const s of again) sameMap(c, s, version, 'after a full restart')
      assert.equal(bootstraps(c), 1, 'the map was bootstrapped once')

      // and the records are there
      const reader2 = await connect(c.broker, { username: 'reader2' })
      for (const [i, name] of names.entries()) assert.deepEqual(await reader2.record.snapshot(name), { i })
    } finally { await finish(c) }
  })
})
