// replication.test.mjs - replicated shards, the data path (issue 18, item 2;
// static map, no failover yet). A real cluster from cluster.sh: 3 nodes with
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
// Without replication (--replicas 1) the first test fails: node3 has none of
// node2's records.
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { sleep, until, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const NODES = 3
const TIMEOUT_MS = 1000 // cluster.replicaTimeout

// The shard map: FNV-1a 64 of the name (or of its {tag}), 4096 shards spread
// evenly (shardmap_init_even: node index = shard * NODES / 4096).
function shardOf (name) {
  const tag = name.match(/\{([^}]+)\}/)
  if (tag) name = tag[1]
  let h = 0xcbf29ce484222325n
  for (const b of Buffer.from(name)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn
  return Number(h & 4095n)
}
const ownerIndex = shard => Math.floor(shard * NODES / 4096)
const namesOn = (index, prefix, n) => {
  const out = []
  for (let i = 0; out.length < n; i++) if (ownerIndex(shardOf(`${prefix}${i}`)) === index) out.push(`${prefix}${i}`)
  return out
}
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

async function startCluster () {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-replication-'))
  execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '1', '--bin', BIN,
    '--', '--replicas', '2', '--replica-timeout', String(TIMEOUT_MS), '--broker-timeout', '2000'],
  { encoding: 'utf8', timeout: 60000 })
  const sh = (...args) => execFileAsync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  const broker = readFileSync(join(dir, 'brokers'), 'utf8').trim()
  const metricsUrls = readFileSync(join(dir, 'node-metrics'), 'utf8').trim().split('\n')
  const metrics = async i => (await fetch(metricsUrls[i])).text()
  return { dir, sh, broker, metrics, log: name => readFileSync(join(dir, `${name}.log`), 'utf8') }
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
    if (version === a.version + 1 && data.k === inflight[name].k) continue // the write in flight, durable too
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
      const names = namesOn(1, 'repl/', 6)
      const writers = await startWriters(c.broker, names)
      await until(() => writers.count >= 600, 'writes acknowledged', 30000)
      const m = await c.metrics(1)
      assert.ok(metric(m, 'eddy_node_replication_records_total{replica="node3"}') >= 600, m)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 1)
      const checked = await failOverByHand(c, writers)
      console.log(`# ${writers.count} acknowledged writes to ${checked} records of node2, all on node3`)
    } finally { await finish(c) }
  })

  test('a replica paused longer than cluster.replicaTimeout does not stop writes, and catches up after', async () => {
    const c = await startCluster()
    try {
      const names = namesOn(1, 'pause/', 6)
      const writers = await startWriters(c.broker, names)
      await until(() => writers.count >= 200, 'writes acknowledged', 30000)
      await c.sh('pause', 'node3')
      const before = writers.count
      await sleep(TIMEOUT_MS * 3)
      const during = writers.count - before
      assert.ok(during >= 100, `only ${during} writes acknowledged while node3 was paused`)
      assert.match(c.log('node2'), /replica-out-of-sync replica=node3/)
      const m = await c.metrics(1)
      assert.equal(metric(m, 'eddy_node_replication_in_sync{replica="node3"}'), 0)
      assert.ok(metric(m, 'eddy_node_replication_under_replicated_shards') > 0)
      await c.sh('resume', 'node3')
      await until(() => /replica-in-sync replica=node3/.test(c.log('node2')), 'node3 in sync again', 20000)
      const after = writers.count
      await until(() => writers.count >= after + 200, 'writes acknowledged after the resume', 30000)
      console.log(`# acknowledged while node3 was paused: ${during}; in sync again after the resume`)
      const checked = await failOverByHand(c, writers)
      console.log(`# ${writers.count} acknowledged writes to ${checked} records of node2, all on node3`)
    } finally { await finish(c) }
  })
})
