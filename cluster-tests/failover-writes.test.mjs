// failover-writes.test.mjs - the headline test of issue 18: official clients
// write as fast as they can while the primary of their records is killed, and
// nothing acknowledged is lost, nothing forks, and the writers go on within
// seconds without any process restarted.
// A real cluster from cluster.sh: 3 nodes, --raft, --replicas 2,
// cluster.nodeTimeout 2000 ms, 2 brokers. 8 writers (4 on each broker), each
// with its own record owned by node2, setWithAck in a loop, each document
// {w, k} (writer and sequence); a reader on each broker subscribed to all 8
// records notes every (version -> document) the broker sends it (on the wire),
// and an official client on each broker subscribed to them too. node2 is killed
// (-9) while they write; the metadata group fails it over to node3 (its
// in-sync replica), the brokers route by the new map.
//   - every writer's next write succeeds within 5 s of the kill (its own
//     retry: an error answer followed by a success is fine); kill -> first
//     success is printed per writer;
//   - no version was ever acknowledged, or shown to a reader, with two
//     documents (an acknowledged write the new primary lacked would be
//     written again at its version by the next write: a fork);
//   - each writer's first write after the failover is at a version above its
//     last one acknowledged before the kill;
//   - the final state of every record is its writer's last acknowledged write
//     (version and document);
//   - subscriptions keep delivering: a write after the failover reaches the
//     readers on both brokers.
// Then node2 is started again: it rejoins (NODE_UP, status shows it up), the
// cluster serves writes with all nodes running, the leader re-replicates
// (ADD_REPLICA: node2 an out-of-sync replica of the shards left with one
// copy; their primaries snapshot it and propose it in sync) until every shard
// is at 2 copies in sync, and a second kill, of node3 (now the records'
// primary), loses no acknowledged write either.
// Second test: after `eddy ctl cluster promote --from node2 --to node3`,
// node3 replicates the moved shards to node2 (snapshot, then SYNC_REPLICA
// in); killing node3 while clients write fails them over to node2 with
// every acknowledged write.
// run-tests: alone (timings of kills)
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { connect, closeAll, Raw, decode, TOPIC, RECORD, CONN } from '../tests/e2e/lib/client.mjs'
import { until, sleep, namesOn } from '../tests/e2e/lib/server.mjs'
import { startCluster as startRaftCluster, settled, stopCluster, BIN, execFileAsync } from './lib/raftcluster.mjs'

const NODES = 3
const T = 2000
const WRITERS = 8
const RECOVERY_MS = 5000
let running = null // the writers of the test under way (stopped after it, whatever happened)

const startCluster = () => startRaftCluster({ name: 'failover-writes', brokers: 2, replicas: 2,
  flags: ['--node-timeout', String(T), '--rereplicate', 'true'] })

const docKey = d => JSON.stringify({ w: d?.w, k: d?.k })

// The observations of the whole run: version -> document per record, from
// acknowledgements and from readers; a second document for one version is a fork.
function newLedger () {
  const seen = new Map() // name -> Map(version -> {key, who})
  const forks = []
  const note = (name, version, doc, who) => {
    if (!seen.has(name)) seen.set(name, new Map())
    const m = seen.get(name)
    const key = docKey(doc)
    const had = m.get(version)
    if (had === undefined) m.set(version, { key, who })
    else if (had.key !== key) forks.push(`${name} v${version}: ${had.key} (${had.who}) and ${key} (${who})`)
  }
  return { note, forks, seen }
}

// One reader per broker, subscribed to every name twice: an official client
// (what its application sees last: `latest`), and a wire-level reader whose
// every UPDATE and READ_RESPONSE (version, document) goes to the ledger. The
// official client's own view is not the ledger's: after a gap in the updates
// it shows a newer version with the older document until it has merged (its
// record-core), which says nothing of what the servers sent.
async function startReaders (urls, names, ledger) {
  const readers = []
  for (const [i, url] of urls.entries()) {
    const client = await connect(url, { username: `reader${i}` })
    const latest = {}
    for (const name of names) {
      const rec = client.record.getRecord(name)
      await rec.whenReady()
      rec.subscribe(data => {
        if (data && data.w !== undefined) latest[name] = { version: rec.version, k: data.k }
      }, true)
    }
    const wireLatest = {}
    const raw = await Raw.open(url)
    raw.ws.on('message', d => {
      const m = decode(d)
      if (m.topic === TOPIC.CONNECTION && m.action === CONN.PING) raw.send(TOPIC.CONNECTION, { action: CONN.PONG })
      if (m.topic === TOPIC.RECORD && (m.action === RECORD.UPDATE || m.action === RECORD.READ_RESPONSE) &&
        m.data && m.version > 0) {
        const doc = JSON.parse(m.data)
        if (doc && doc.w !== undefined) {
          ledger.note(m.name, m.version, doc, `wire${i}`)
          wireLatest[m.name] = Math.max(wireLatest[m.name] || 0, m.version)
        }
      }
    })
    await raw.login({ username: `wire${i}` })
    raw.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBECREATEANDREAD, names, correlationId: '1' })
    readers.push({ client, latest, raw, wireLatest })
  }
  return readers
}

// Writers: one per record, setWithAck in a loop on alternating brokers.
// state.start() sets the same clients writing again after a stop.
async function startWriters (urls, names, ledger) {
  const state = { writing: true, killAt: 0, acked: {}, ackedAtKill: {}, firstAfter: {}, recovery: {}, errors: {}, count: 0, loops: [], recs: {} }
  const next = {} // name -> the next k
  const loop = (w, name, rec) => (async () => {
    for (let k = next[name] ?? 1; state.writing; k++) {
      next[name] = k + 1
      const doc = { w, k }
      const sentAt = Date.now()
      try {
        await rec.setWithAck(doc)
      } catch {
        state.errors[name]++
        await sleep(20)
        continue
      }
      const now = Date.now()
      ledger.note(name, rec.version, doc, `ack w${w}`)
      const prev = state.acked[name]
      if (prev && rec.version <= prev.version) ledger.forks.push(`${name}: acked v${rec.version} after v${prev.version}`)
      state.acked[name] = { version: rec.version, k }
      state.count++
      if (state.killAt && sentAt > state.killAt && state.firstAfter[name] === undefined) {
        state.firstAfter[name] = { version: rec.version, k }
        state.recovery[name] = now - state.killAt
      }
    }
  })()
  for (const [w, name] of names.entries()) {
    const client = await connect(urls[w % urls.length], { username: `w${w}` })
    const rec = client.record.getRecord(name)
    await rec.whenReady()
    state.recs[name] = rec
    state.errors[name] = 0
  }
  state.start = () => {
    state.writing = true
    running = state
    state.loops = names.map((name, w) => loop(w, name, state.recs[name]))
  }
  state.start()
  return state
}

describe('cluster: writes across a failover (issue 18, headline)', () => {
  let c = null
  afterEach(async () => {
    if (running !== null) running.writing = false
    running = null
    await closeAll()
    await stopCluster(c)
    c = null
  })

  test('kill -9 the primary while 8 clients write: nothing acknowledged lost or forked, writes go on within 5 s; it rejoins', async () => {
    c = startCluster()
    await settled(c, [0, 1, 2], 'the map bootstrapped on every node')
    const names = namesOn(2, NODES, 'fw/', WRITERS)
    const ledger = newLedger()
    const readers = await startReaders(c.brokers, names, ledger)
    const writers = await startWriters(c.brokers, names, ledger)
    await until(() => names.every(n => writers.acked[n]?.version >= 20), 'every writer acknowledged 20 writes', 20000)
    await sleep(500)

    await c.sh('kill', 'node2')
    writers.killAt = Date.now() // the process is gone: writes sent from now on are timed
    writers.ackedAtKill = structuredClone(writers.acked)
    await until(() => names.every(n => writers.firstAfter[n] !== undefined),
      `every writer wrote again (so far: ${JSON.stringify(writers.recovery)})`, 15000).catch(e => {
      console.log('recovery so far', writers.recovery, 'errors', writers.errors)
      throw e
    })
    const times = names.map(n => writers.recovery[n])
    console.log(`kill -> first successful write per writer (ms): ${times.join(' ')}; max ${Math.max(...times)}; errors ${JSON.stringify(Object.values(writers.errors))}`)
    for (const n of names) {
      assert.ok(writers.recovery[n] <= RECOVERY_MS, `${n}: first write ${writers.recovery[n]} ms after the kill`)
      assert.ok(writers.firstAfter[n].version > writers.ackedAtKill[n].version,
        `${n}: first write after the failover at v${writers.firstAfter[n].version}, acknowledged v${writers.ackedAtKill[n].version} before`)
    }
    await until(async () => (await c.status(0))?.members.find(m => m.name === 'node2').down, 'node2 down in node1\'s map', 5000)
    await sleep(1000) // more writes on the new primary

    writers.writing = false
    await Promise.all(writers.loops)
    // subscriptions keep delivering: every reader reaches each writer's last acknowledged version
    await until(() => readers.every(r => names.every(n => r.latest[n]?.version === writers.acked[n].version &&
      r.wireLatest[n] === writers.acked[n].version)), 'the readers on both brokers see the last writes', 10000)
    for (const r of readers) {
      for (const n of names) assert.equal(r.latest[n].k, writers.acked[n].k, `${n}: a reader's last document`)
    }
    // the final state, read fresh on both brokers
    for (const url of c.brokers) {
      const check = await connect(url, { username: 'check' })
      for (const n of names) {
        const rec = check.record.getRecord(n)
        await rec.whenReady()
        ledger.note(n, rec.version, rec.get(), `check ${url}`)
        assert.equal(rec.version, writers.acked[n].version, `${n}: the last acknowledged version`)
        assert.equal(rec.get().k, writers.acked[n].k, `${n}: the last acknowledged document`)
      }
    }
    assert.deepEqual(ledger.forks, [], 'no version with two documents')
    console.log(`writes acknowledged: ${writers.count}`)
    for (const r of readers) r.raw.close()

    // the killed node comes back: it rejoins (NODE_UP), and the cluster serves with all nodes.
    // The same writers write through the rejoin: their sessions had writes refused while
    // node2 was down, and the corrections their brokers send once it is back must not take
    // a copy back under a write (the next setWithAck would reuse a version and never settle).
    writers.start()
    await c.sh('start', 'node2')
    await until(async () => {
      const s = await c.status(0)
      return s && s.members.every(m => !m.down)
    }, 'node2 up again in the map', 20000)
    await settled(c, [0, 1, 2], 'every node on one map after the rejoin')
    const atRejoin = structuredClone(writers.acked)
    await until(() => names.every(n => writers.acked[n].version >= atRejoin[n].version + 20),
      () => `every writer acknowledged 20 more writes after the rejoin (so far: ${JSON.stringify(names.map(n => writers.acked[n].version - atRejoin[n].version))})`, 15000)
    writers.writing = false
    await Promise.all(writers.loops)
    assert.deepEqual(ledger.forks, [], 'no version with two documents through the rejoin')
    const brokerLogs = c.log('broker1') + c.log('broker2')
    console.log(`through the rejoin: correction reads ${(brokerLogs.match(/records-converge .*reads=\d+/g) || []).join(', ') || 'none'}, ` +
      `held back ${(brokerLogs.match(/records-correction-held/g) || []).length}`)
    const after = await connect(c.brokers[1], { username: 'after' })
    for (const n of names) {
      const rec = after.record.getRecord(n)
      await rec.whenReady()
      await rec.setWithAck({ w: 'after', k: 0 })
    }
    const more = namesOn(1, NODES, 'fw-more/', 4) // node1's records: served as before
    for (const n of more) await after.record.setDataWithAck(n, { ok: true })
    assert.match(c.log('node1') + c.log('node3'), /meta-node-up .*name=node2/)

    // re-replication: node2 gets a copy of every shard again (ADD_REPLICA), is caught up by
    // snapshot and proposed in sync by the primaries: every shard at 2 copies in sync
    const rejoinAt = Date.now()
    let st = null
    await until(async () => {
      st = await c.status(0)
      return st && st.copiesMin === 2 && st.insyncMin === 2
    }, `every shard back at 2 copies in sync (${JSON.stringify(st && { copiesMin: st.copiesMin, insyncMin: st.insyncMin, under: st.underReplicatedShards })})`, 30000)
    console.log(`re-replicated: every shard at 2 copies in sync ${Date.now() - rejoinAt} ms after node2 was back`)

    // a second kill: node3, the primary of the records now, while they are written: nothing acknowledged lost
    const ledger2 = newLedger()
    const writers2 = await startWriters(c.brokers, names, ledger2)
    await until(() => names.every(n => writers2.acked[n]?.version >= writers.acked[n].version + 20), 'the writers write again', 20000)
    await c.sh('kill', 'node3')
    writers2.killAt = Date.now()
    writers2.ackedAtKill = structuredClone(writers2.acked)
    await until(() => names.every(n => writers2.firstAfter[n] !== undefined), 'every writer wrote again after the second kill', 15000)
    console.log(`second kill -> first successful write per writer (ms): ${names.map(n => writers2.recovery[n]).join(' ')}`)
    writers2.writing = false
    await Promise.all(writers2.loops)
    for (const n of names) {
      assert.ok(writers2.recovery[n] <= RECOVERY_MS, `${n}: first write ${writers2.recovery[n]} ms after the second kill`)
      assert.ok(writers2.firstAfter[n].version > writers2.ackedAtKill[n].version, `${n}: no version reused after the second kill`)
    }
    const check2 = await connect(c.brokers[0], { username: 'check2' })
    for (const n of names) {
      const rec = check2.record.getRecord(n)
      await rec.whenReady()
      ledger2.note(n, rec.version, rec.get(), 'check2')
      assert.equal(rec.version, writers2.acked[n].version, `${n}: the last acknowledged version after the second kill`)
    }
    assert.deepEqual(ledger2.forks, [], 'no version with two documents after the second kill')
  })

  test('after a planned move the new primary replicates: killing it loses no acknowledged write', async () => {
    c = startCluster()
    await settled(c, [0, 1, 2], 'the map bootstrapped on every node')
    // node2's shards move to node3 (copies node3, node2): node3 now ships them to node2
    const { stdout } = await execFileAsync(BIN, ['ctl', '--cluster', c.nodes[0], '--timeout', '3000', 'cluster',
      'promote', '--from', 'node2', '--to', 'node3'], { encoding: 'utf8', timeout: 70000 })
    assert.match(stdout, /done: node3 is the primary/)
    await until(async () => {
      const all = await Promise.all([0, 1, 2].map(i => c.status(i)))
      return all.every(s => s && s.version === all[0].version && s.members[1].primaries === 0)
    }, 'every node shows the move', 15000)
    const names = namesOn(2, NODES, 'fw-moved/', WRITERS) // node2's in the static map: node3's now
    const ledger = newLedger()
    const writers = await startWriters(c.brokers, names, ledger)
    await until(() => names.every(n => writers.acked[n]?.version >= 20), 'every writer acknowledged 20 writes', 20000)
    assert.match(c.log('node3'), /replica-snapshot-done replica=node2/, 'node3 brought node2 up to date with the moved shards')
    await sleep(500)

    await c.sh('kill', 'node3')
    writers.killAt = Date.now() // the process is gone: writes sent from now on are timed
    writers.ackedAtKill = structuredClone(writers.acked)
    await until(() => names.every(n => writers.firstAfter[n] !== undefined), 'every writer wrote again', 15000)
    const times = names.map(n => writers.recovery[n])
    console.log(`after a promote, kill -> first successful write per writer (ms): ${times.join(' ')}`)
    writers.writing = false
    await Promise.all(writers.loops)
    for (const n of names) {
      assert.ok(writers.recovery[n] <= RECOVERY_MS, `${n}: first write ${writers.recovery[n]} ms after the kill`)
      assert.ok(writers.firstAfter[n].version > writers.ackedAtKill[n].version,
        `${n}: first write after the failover at v${writers.firstAfter[n].version}, acknowledged v${writers.ackedAtKill[n].version} before`)
    }
    const check = await connect(c.brokers[0], { username: 'check' })
    for (const n of names) {
      const rec = check.record.getRecord(n)
      await rec.whenReady()
      ledger.note(n, rec.version, rec.get(), 'check')
      assert.equal(rec.version, writers.acked[n].version, `${n}: the last acknowledged version`)
    }
    assert.deepEqual(ledger.forks, [], 'no version with two documents')
    const s = await c.status(0)
    assert.equal(s.members.find(m => m.name === 'node2').primaries, 1365 + 0, 'node2 took the moved shards back (its own)')
  })
})
