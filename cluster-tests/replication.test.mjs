// replication.test.mjs - replicated shards, the data path (issue 18, item 2)
// on a static map (--no-raft: nothing fails over; the test moves the shards). A real cluster from cluster.sh: 3 nodes with
// cluster.replicas 2, so each shard of node2 has its replica on node3
// (replicas_of: the next node). Official clients write records of node2 with
// setWithAck in loops. The proof that an acknowledged write is durable on the
// replica: node2 is killed (-9) while they write, and the cluster is started
// again (the same data folders) with a static map at a higher epoch in which
// node3 owns node2's shards; every acknowledged write is there, with its
// version and its document, and none forked (the version is the last
// acknowledged one, or the one after it with the write that was in flight).
// The second test pauses the replica (SIGSTOP) longer than
// cluster.replicaTimeout: writes go on (node2 logs replica-out-of-sync); after
// SIGCONT it catches up (replica-in-sync, no lag), and the same kill and
// restart shows that its RocksDB has everything.
// Snapshot catch-up: (3) node3 killed, its data folder deleted and started
// again while the writers write (and 1200 more records of node2 exist): node2
// streams it a snapshot of node2's shards (replica-snapshot-done, several
// chunks), node3 is in sync again, and the same kill and restart finds every
// acknowledged write on node3; (4) with a small backlog bound
// (EDDY_REPLICA_BACKLOG) a paused node3 falls beyond it (replica-needs-snapshot)
// and after SIGCONT catches up by snapshot, then the same check.
// Two of the first test's writers write over the HTTP API (POST /api): its
// answers, too, wait for the replica.
// Without replication (--replicas 1) the first test fails: node3 has none of
// node2's records; without snapshots the third and fourth do (node3 has
// nothing of what was written before it came back, or stays out of sync).
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { sleep, until, namesOn, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const NODES = 3
const TIMEOUT_MS = 1000 // cluster.replicaTimeout

// The even shard map (shardmap_init_even): node index = shard * NODES / 4096.
const ownerIndex = shard => Math.floor(shard * NODES / 4096)
// "a-b" ranges of the shards the even map gives node `index`
function rangeOf (index) {
  const shards = []
  for (let s = 0; s < 4096; s++) if (ownerIndex(s) === index) shards.push(s)
  return `${shards[0]}-${shards[shards.length - 1]}`
}

function metric (text, name) {
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, c => '\\' + c)} (\\d+)$`, 'm'))
  return m ? Number(m[1]) : null
}

// env: more environment for the processes (EDDY_REPLICA_BACKLOG)
async function startCluster (env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-replication-'))
  const options = { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } }
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '1', '--bin', BIN, '--no-raft',
    '--', '--replicas', '2', '--replica-timeout', String(TIMEOUT_MS), '--broker-timeout', '2000'], options)
  const sh = (...args) => execFileAsync('bash', [SH, ...args, '--dir', dir], options)
  const broker = readFileSync(join(dir, 'brokers'), 'utf8').trim()
  const metricsUrls = readFileSync(join(dir, 'node-metrics'), 'utf8').trim().split('\n')
  const metrics = async i => (await fetch(metricsUrls[i])).text()
  const log = name => readFileSync(join(dir, `${name}.log`), 'utf8')
  // what a process logged since mark(name) (each node logs its first snapshots at start)
  const marks = {}
  const mark = name => { marks[name] = log(name).length }
  const since = name => log(name).slice(marks[name] || 0)
  return { dir, sh, broker, metrics, log, mark, since }
}

// Writes each record once (version 1, {bulk: i}), 100 at a time; returns them as writers.acked entries.
async function writeBulk (url, names) {
  const client = await connect(url, { username: 'bulk' })
  const acked = {}
  for (let i = 0; i < names.length; i += 100) {
    await Promise.all(names.slice(i, i + 100).map(async (name, j) => {
      await client.record.setDataWithAck(name, { k: 0, bulk: i + j, pad: 'b'.repeat(200) })
      acked[name] = { version: 1, k: 0 }
    }))
  }
  return acked
}

// node2's last replica-snapshot-done line for node3 since the mark: {records, chunks}
function snapshotDone (text) {
  const all = [...text.matchAll(/replica-snapshot-done replica=node3 .*records=(\d+) .*chunks=(\d+)/g)]
  const m = all[all.length - 1]
  return m ? { records: Number(m[1]), chunks: Number(m[2]) } : null
}

// Writers: one per record, setWithAck in a loop; acked[name] = {version, k} of
// the last acknowledged write, sent[name] = the k of the write in flight.
async function startWriters (url, names) {
  const state = { writing: true, acked: {}, inflight: {}, count: 0, loops: [] }
  for (const [w, name] of names.entries()) {
    const client = await connect(url, { username: `w${w}` })
    const rec = client.record.getRecord(name)
    await rec.whenReady()
    state.loops.push((async () => {
      for (let k = 1; state.writing; k++) {
        state.inflight[name] = { k, version: rec.version + 1 }
        try {
          await rec.setWithAck({ w, k, pad: 'x'.repeat(64) })
        } catch { await sleep(50); continue }
        state.acked[name] = { version: rec.version, k }
        state.count++
      }
    })())
  }
  return state
}

// HTTP writers (issue 15: an HTTP write answers only once it is replicated):
// one loop per record posting `write` with the next version to the broker's
// POST /api; they share the websocket writers' state, so the same kill and
// check covers them.
function startHttpWriters (url, names, state) {
  const api = url.replace(/^ws/, 'http').replace(/\/deepstream$/, '/api')
  for (const [w, name] of names.entries()) {
    state.loops.push((async () => {
      let version = 0
      for (let k = 1; state.writing; k++) {
        state.inflight[name] = { k, version: version + 1 }
        try {
          const r = await fetch(api, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ body: [{ topic: 'record', action: 'write', recordName: name, version: version + 1, data: { h: w, k } }] })
          })
          const answer = await r.json()
          if (answer.result !== 'SUCCESS') throw new Error(JSON.stringify(answer))
        } catch { await sleep(50); continue }
        version++
        state.acked[name] = { version, k }
        state.count++
      }
    })())
  }
}

// Kills node2 while the writers write, then starts node1 and node3 again with
// a map at epoch 2 in which node3 owns node2's shards (no replication), and
// checks every acknowledged write with a fresh reader.
async function failOverByHand (c, writers) {
  await c.sh('kill', 'node2')
  writers.writing = false // their loops end on the broker's timeout; nothing waits for them
  const acked = structuredClone(writers.acked)
  const inflight = structuredClone(writers.inflight)
  await closeAll()
  await c.sh('down')
  const yml = readFileSync(join(c.dir, 'cluster.yml'), 'utf8').split('\n')
  const node = id => yml.find(l => l.includes(`id: ${id},`)).replace(' }', `, shards: "${id === 'node1' ? rangeOf(0) : `${rangeOf(1).split('-')[0]}-4095`}" }`)
  writeFileSync(join(c.dir, 'cluster.yml'), ['cluster:', '  epoch: 2', '  nodes:', node('node1'), node('node3'), ''].join('\n'))
  for (const n of ['node1', 'node3', 'broker1']) {
    const f = join(c.dir, `${n}.cmd`)
    writeFileSync(f, readFileSync(f, 'utf8').replace('--replicas 2', '--replicas 1'))
  }
  await c.sh('start', 'node1')
  await c.sh('start', 'node3')
  await c.sh('start', 'broker1')
  assert.match(c.log('node3'), /epoch=2/)
  const reader = await connect(c.broker, { username: 'reader' })
  const problems = []
  for (const [name, a] of Object.entries(acked)) {
    const version = await reader.record.head(name)
    const data = await reader.record.snapshot(name)
    if (version === a.version && data.k === a.k) continue
    // a write sent after the last acknowledged one, durable too (its answer lost with node2; the writer may have
    // gone on to retry with a later k before it stopped)
    if (version === a.version + 1 && data.k > a.k && data.k <= (inflight[name]?.k ?? a.k)) continue
    problems.push(`${name}: acknowledged v${a.version} k=${a.k}, node3 has v${version} ${JSON.stringify(data)}`)
  }
  assert.deepEqual(problems, [], 'acknowledged writes missing or forked on the replica')
  return Object.keys(acked).length
}

async function finish (c) {
  await closeAll()
  await c.sh('down')
  for (const f of readdirSync(c.dir).filter(f => f.endsWith('.log'))) assertNoSanitizerReport(readFileSync(join(c.dir, f), 'utf8'), f)
  rmSync(c.dir, { recursive: true, force: true })
}

describe('cluster: replicated shards (cluster.replicas 2)', () => {
  afterEach(closeAll)

  test('every acknowledged write is durable on the replica: the primary killed, the replica owns its shards', async () => {
    const c = await startCluster()
    try {
      const names = namesOn(2, NODES, 'repl/', 8)
      const writers = await startWriters(c.broker, names.slice(0, 6))
      startHttpWriters(c.broker, names.slice(6), writers)
      // node3 first gets a snapshot of node2's shards (writes meanwhile are in it, not in batches)
      await until(async () => metric(await c.metrics(1), 'eddy_node_replication_in_sync{replica="node3"}') === 1,
        'node3 in sync after its first snapshot', 30000)
      const base = writers.count
      await until(() => writers.count >= base + 600, 'writes acknowledged', 30000)
      const m = await c.metrics(1)
      assert.ok(metric(m, 'eddy_node_replication_records_total{replica="node3"}') >= 600, m)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 1)
      assert.ok(names.slice(6).every(n => writers.acked[n]?.version > 0), 'the HTTP writers wrote')
      const checked = await failOverByHand(c, writers)
      console.log(`# ${writers.count} acknowledged writes to ${checked} records of node2 (2 of them by HTTP), all on node3`)
    } finally { await finish(c) }
  })

  test('a replica paused longer than cluster.replicaTimeout does not stop writes, and catches up after', async () => {
    const c = await startCluster()
    try {
      const names = namesOn(2, NODES, 'pause/', 6)
      const writers = await startWriters(c.broker, names)
      await until(() => writers.count >= 200, 'writes acknowledged', 30000)
      c.mark('node2')
      await c.sh('pause', 'node3')
      const before = writers.count
      await sleep(TIMEOUT_MS * 3)
      const during = writers.count - before
      assert.ok(during >= 100, `only ${during} writes acknowledged while node3 was paused`)
      assert.match(c.since('node2'), /replica-out-of-sync replica=node3/)
      const m = await c.metrics(1)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 0)
      assert.ok(metric(m, 'eddy_node_replication_under_replicated_shards') > 0)
      await c.sh('resume', 'node3')
      await until(() => /replica-in-sync replica=node3/.test(c.since('node2')), 'node3 in sync again', 20000)
      const after = writers.count
      await until(() => writers.count >= after + 200, 'writes acknowledged after the resume', 30000)
      console.log(`# acknowledged while node3 was paused: ${during}; in sync again after the resume`)
      const checked = await failOverByHand(c, writers)
      console.log(`# ${writers.count} acknowledged writes to ${checked} records of node2, all on node3`)
    } finally { await finish(c) }
  })

  test('a replica that lost its data folder catches up by snapshot while writes go on', async () => {
    const c = await startCluster()
    try {
      const bulk = await writeBulk(c.broker, namesOn(2, NODES, 'bulk/', 1200))
      const names = namesOn(2, NODES, 'wipe/', 6)
      const writers = await startWriters(c.broker, names)
      await until(() => writers.count >= 200, 'writes acknowledged', 30000)
      c.mark('node2')
      await c.sh('kill', 'node3')
      rmSync(join(c.dir, 'node3'), { recursive: true, force: true })
      const before = writers.count
      await sleep(TIMEOUT_MS * 2)
      await c.sh('start', 'node3')
      await until(() => snapshotDone(c.since('node2')) !== null, 'node3 caught up by snapshot', 30000)
      const done = snapshotDone(c.since('node2'))
      assert.ok(done.records >= 1200 + names.length && done.chunks >= 2, JSON.stringify(done))
      await until(() => /replica-snapshot-done replica=node3[^]*replica-in-sync replica=node3/.test(c.since('node2')),
        'node3 in sync after the snapshot', 20000)
      assert.match(c.log('node3'), /replica-snapshot-applied .*records=\d+/)
      const after = writers.count
      assert.ok(after > before, 'writes went on while node3 was away')
      await until(() => writers.count >= after + 200, 'writes acknowledged after the snapshot', 30000)
      const m = await c.metrics(1)
      assert.ok(metric(m, 'eddy_node_replication_snapshots_total{replica="node3"}') >= 2, m) // at start, and now
      assert.ok(metric(m, 'eddy_node_replication_snapshot_records_total{replica="node3"}') >= 1200, m)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 1)
      Object.assign(writers.acked, bulk)
      const checked = await failOverByHand(c, writers)
      console.log(`# snapshot: ${done.records} records in ${done.chunks} chunks; ${checked} records of node2 all on node3`)
    } finally { await finish(c) }
  })

  test('a replica beyond the backlog catches up by snapshot instead of staying out of sync', async () => {
    const c = await startCluster({ EDDY_REPLICA_BACKLOG: String(64 * 1024) })
    try {
      const names = namesOn(2, NODES, 'overflow/', 6)
      const writers = await startWriters(c.broker, names)
      await until(() => writers.count >= 200, 'writes acknowledged', 30000)
      c.mark('node2')
      await c.sh('pause', 'node3')
      await until(() => /replica-needs-snapshot replica=node3 why="backlog full"/.test(c.since('node2')),
        'the backlog overflows', 20000)
      await sleep(TIMEOUT_MS)
      await c.sh('resume', 'node3')
      await until(() => /replica-snapshot-done replica=node3[^]*replica-in-sync replica=node3/.test(c.since('node2')),
        'node3 in sync after a snapshot', 30000)
      assert.match(c.since('node2'), /replica-snapshot-started replica=node3 why="backlog full/)
      const after = writers.count
      await until(() => writers.count >= after + 200, 'writes acknowledged after the resume', 30000)
      const m = await c.metrics(1)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 1)
      const checked = await failOverByHand(c, writers)
      console.log(`# ${writers.count} acknowledged writes to ${checked} records of node2, all on node3`)
    } finally { await finish(c) }
  })
})
