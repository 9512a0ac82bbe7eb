// route.test.mjs - everyone routes by the Raft map (issue 18): a planned move
// of primaries. A real cluster from cluster.sh: 3 nodes with --raft and
// --replicas 2 (node3 is the replica of node2's shards), 2 brokers. Official
// clients on both brokers subscribe to records and events that node2 leads
// and write them; a libeddy backend (`eddy ctl watch`) watches one of them.
// `eddy ctl cluster promote --from node2 --to node3` moves every primary of
// node2 to node3 through Raft. Then: every node's status shows node3 primary
// of those shards at epoch + 1 and node2 of none; both brokers log
// cluster-map-adopted and route by the new version (eddy_broker_map_version);
// new writes (setWithAck) succeed and are served by node3 (its
// RECORD_WRITE count grows, node2's does not); subscribers on both brokers
// keep receiving updates and events without reconnecting; the watching
// backend keeps seeing updates (it adopted the map without reconnecting) and
// new libeddy processes (eddy ctl set/get) read and write those records.
// Replication after the move is not checked: node/replicate.c still follows
// the static map (REPLICATION-STATUS.md, "What is next"). The old epoch sent
// to node2 (WRONG_SHARD) is covered by tests/unit/test_node.c.
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { until, sleep, namesOn, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const NODES = 3

function metric (text, name) {
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, c => '\\' + c)} (\\d+)$`, 'm'))
  return m ? Number(m[1]) : null
}

async function startCluster () {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-route-'))
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '2', '--bin', BIN,
    '--raft', '--replicas', '2'], { encoding: 'utf8', timeout: 60000 })
  const sh = (...args) => execFileAsync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  const brokers = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
  const nodes = readFileSync(join(dir, 'nodes'), 'utf8').trim().split('\n')
  const nodeMetrics = readFileSync(join(dir, 'node-metrics'), 'utf8').trim().split('\n')
  const metrics = async url => (await fetch(url)).text()
  const brokerMetrics = brokers.map(b => b.replace(/^ws/, 'http').replace(/\/deepstream$/, '/metrics'))
  const log = name => readFileSync(join(dir, `${name}.log`), 'utf8')
  const ctl = async (node, ...args) => {
    const { stdout } = await execFileAsync(BIN, ['ctl', '--cluster', nodes[node], '--timeout', '3000', ...args],
      { encoding: 'utf8', timeout: 70000 })
    return stdout
  }
  const status = async i => { try { return JSON.parse(await ctl(i, 'cluster', 'status', '--json')) } catch { return null } }
  return { dir, sh, brokers, nodes, nodeMetrics, brokerMetrics, metrics, log, ctl, status }
}

async function finish (c, watcher) {
  watcher?.kill('SIGTERM')
  await closeAll()
  await c.sh('down')
  for (const f of readdirSync(c.dir).filter(f => f.endsWith('.log'))) assertNoSanitizerReport(readFileSync(join(c.dir, f), 'utf8'), f)
  rmSync(c.dir, { recursive: true, force: true })
}

const writes = async (c, i) => metric(await c.metrics(c.nodeMetrics[i]), 'eddy_node_operations_total{kind="RECORD_WRITE"}') || 0

describe('cluster: routing by the Raft map', () => {
  afterEach(closeAll)

  test('a planned move of primaries: brokers and backends follow it without reconnecting', async () => {
    const c = await startCluster()
    let watcher
    try {
      // the bootstrapped map on every node, and on both brokers
      let first = []
      await until(async () => {
        first = await Promise.all([0, 1, 2].map(i => c.status(i)))
        return first.every(s => s && s.version === NODES + 1 && s.leader)
      }, 'a bootstrapped map on every node', 15000)
      await until(async () => {
        const v = await Promise.all(c.brokerMetrics.map(async u => metric(await c.metrics(u), 'eddy_broker_map_version')))
        return v.every(x => x === NODES + 1)
      }, 'both brokers route by the bootstrapped map', 10000)

      const records = namesOn(2, NODES, 'route/rec', 6) // node2's (the static map's, before the move)
      const events = namesOn(2, NODES, 'route/ev', 3)
      // subscribers on both brokers: records and events, and whether they ever reconnect
      const subs = []
      for (const [b, url] of c.brokers.entries()) {
        const client = await connect(url, { username: `sub${b}` })
        const states = []
        client.on('connectionStateChanged', s => states.push(s))
        const seen = { rec: new Map(), ev: new Map(), states }
        for (const name of records) {
          const rec = client.record.getRecord(name)
          await rec.whenReady()
          rec.subscribe(data => seen.rec.set(name, data))
        }
        for (const name of events) client.event.subscribe(name, data => seen.ev.set(name, data))
        subs.push(seen)
      }
      // writers on both brokers
      const writers = await Promise.all(c.brokers.map((url, b) => connect(url, { username: `writer${b}` })))
      for (const [i, name] of records.entries()) {
        const rec = writers[i % 2].record.getRecord(name)
        await rec.whenReady()
        await rec.setWithAck({ n: 1 })
      }
      await until(() => subs.every(s => records.every(n => s.rec.get(n)?.n === 1)), 'subscribers see the first writes', 5000)
      // a libeddy backend watching one of them, connected before the move
      const watched = records[0]
      const lines = []
      watcher = spawn(BIN, ['ctl', '--cluster', c.nodes[0], 'watch', watched], { stdio: ['ignore', 'pipe', 'inherit'] })
      watcher.stdout.on('data', d => lines.push(...d.toString().split('\n').filter(Boolean)))
      await until(() => lines.some(l => JSON.parse(l).data?.n === 1), 'the backend watches the record', 10000)

      // the move
      const before = [await writes(c, 1), await writes(c, 2)]
      const out = await c.ctl(0, 'cluster', 'promote', '--from', 'node2', '--to', 'node3')
      console.log(`# ${out.trim().split('\n').join(' / ')}`)
      assert.match(out, /proposing 1365 shard moves to node3/)
      assert.match(out, /done: node3 is the primary/)

      // every node's status: node3 leads node2's shards at epoch 2, node2 leads nothing
      let after = []
      await until(async () => {
        after = await Promise.all([0, 1, 2].map(i => c.status(i)))
        return after.every(s => s && s.version === after[0].version && s.members[1].primaries === 0)
      }, 'every node shows the move', 10000)
      for (const s of after) {
        assert.equal(s.members[2].primaries, 1365 * 2)
        assert.equal(s.members[1].primaries, 0)
        assert.equal(s.members[2].epochs['2'], 1365, 'the moved shards at epoch + 1')
        assert.equal(s.members[0].primaries, 1366)
      }
      const version = after[0].version
      // one PROMOTE per shard (a second would have made epoch 3: epochs['2'] above counts them); the
      // in-sync changes replication proposes after the move (SYNC_REPLICA) raise the version too
      assert.ok(version >= NODES + 1 + 1365, `every PROMOTE committed (version ${version})`)

      // both brokers adopted it (pushed by the nodes, OP_MAP): at least the version that holds the
      // move, since the in-sync changes proposed after it (SYNC_REPLICA) may raise it further
      let seen = []
      await until(async () => {
        seen = await Promise.all(c.brokerMetrics.map(async u => metric(await c.metrics(u), 'eddy_broker_map_version')))
        return seen.every(x => x >= version)
      }, () => `both brokers route by the new map (version ${version}, brokers at ${seen})`, 10000)
      for (const b of [1, 2]) assert.match(c.log(`broker${b}`), /cluster-map-adopted version=\d+ from_version=\d+ moved_shards=[1-9]/)

      // new writes succeed, on both brokers, and node3 serves them
      for (const [i, name] of records.entries()) {
        const rec = writers[i % 2].record.getRecord(name)
        await rec.setWithAck({ n: 2 })
      }
      for (const name of events) writers[1].event.emit(name, { e: 2 })
      const grown = [await writes(c, 1) - before[0], await writes(c, 2) - before[1]]
      assert.equal(grown[0], 0, `node2 applied no write after the move (${grown})`)
      assert.ok(grown[1] >= records.length, `node3 applied the new writes (${grown})`)

      // subscribers on both brokers keep receiving updates and events, without reconnecting
      await until(() => subs.every(s => records.every(n => s.rec.get(n)?.n === 2)), 'subscribers see the new writes', 10000)
      await until(() => subs.every(s => events.every(n => s.ev.get(n)?.e === 2)), 'subscribers get the events', 10000)
      for (const s of subs) assert.deepEqual(s.states.filter(x => x !== 'OPEN'), [], 'no reconnection')
      // the backend watching from before the move sees the update (it adopted the map in place)
      await until(() => lines.some(l => JSON.parse(l).data?.n === 2), 'the backend sees the update', 10000)

      // a new backend (libeddy, eddy ctl) writes and reads those records after the move
      for (const name of records.slice(0, 3)) {
        await c.ctl(1, 'set', name, '{"n":3}')
        assert.deepEqual(JSON.parse(await c.ctl(0, 'get', name)), { n: 3 })
      }
      await until(() => subs.every(s => records.slice(0, 3).every(n => s.rec.get(n)?.n === 3)), 'subscribers see the backend writes', 10000)
      await sleep(10)
    } finally { await finish(c, watcher) }
  })
})
