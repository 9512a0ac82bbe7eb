// cluster.test.mjs - a real cluster from cluster.sh: 3 nodes, 2 brokers and
// haproxy, its links over TLS. Clients spread over the brokers (directly and through haproxy) use
// events, records, RPC, presence and listening; then a broker is killed (its
// clients reconnect through haproxy and resubscribe) and a node is killed
// (operations for its shards fail at once; after a restart on its data the
// brokers re-register everything and every acknowledged write is there).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { sleep, until, assertNoSanitizerReport, shardOwner, namesOn } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const SETTLE = 400
const NODES = 3

const owner = name => shardOwner(name, NODES)
const ownedBy = (node, prefix, n) => namesOn(node, NODES, prefix, n)

describe('cluster: 3 nodes, 2 brokers, haproxy', () => {
  let dir, brokers, lb
  const sh = (...args) => execFileSync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-cluster-'))
    execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '2', '--lb', '--tls', '--bin', BIN,
      '--', '--broker-timeout', '2000'], { encoding: 'utf8', timeout: 60000 })
    brokers = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
    lb = readFileSync(join(dir, 'lb'), 'utf8').trim()
  })
  after(async () => {
    await closeAll()
    sh('down')
    for (const f of readdirSync(dir).filter(f => f.endsWith('.log'))) {
      const log = readFileSync(join(dir, f), 'utf8')
      assertNoSanitizerReport(log, f)
      if (f !== 'lb.log') { // every eddy process (restarted ones too) ended with a clean stop
        const last = log.trim().split('\n').pop()
        assert.match(last, /stopped role=\w+ exit=0/, `${f} did not stop cleanly:\n${log.slice(-2000)}`)
      }
    }
    if (process.env.EDDY_KEEP) console.log(`# kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('the shard map in the tests matches the nodes', () => {
    assert.deepEqual([owner('a'), owner('{x}/1'), owner('{x}/2')].map(n => n >= 1 && n <= NODES), [true, true, true])
    assert.equal(owner('{game-7}/board'), owner('{game-7}/players'))
  })

  test('events, records, RPC, presence and listening with clients on both brokers', async () => {
    const a = await connect(brokers[0], { username: 'ca' })
    const b = await connect(brokers[1], { username: 'cb' })
    const c = await connect(lb, { username: 'cc' })
    const names = [1, 2, 3].flatMap(n => ownedBy(n, 'ev/', 3))
    const got = {}
    for (const n of names) b.event.subscribe(n, d => { got[n] = d })
    await sleep(SETTLE)
    for (const n of names) a.event.emit(n, n)
    await until(() => Object.keys(got).length === names.length, 'events from every node')
    const recs = [1, 2, 3].flatMap(n => ownedBy(n, 'rec/', 2))
    await Promise.all(recs.map(n => c.record.setDataWithAck(n, { n })))
    for (const n of recs) assert.deepEqual(await b.record.snapshot(n), { n })
    a.rpc.provide('twice', (d, res) => res.send(d * 2))
    await sleep(SETTLE)
    assert.equal(await c.rpc.make('twice', 21), 42)
    await until(async () => (await c.presence.getAll()).length === 2, 'both logins known cluster-wide')
    assert.deepEqual((await c.presence.getAll()).sort(), ['ca', 'cb'])
    const heard = []
    a.record.listen('lrec/.*', (name, res) => { heard.push(name); res.accept() })
    await sleep(SETTLE)
    const lr = b.record.getRecord('lrec/1')
    await lr.whenReady()
    await until(() => lr.hasProvider === true && heard.includes('lrec/1'), 'record listener across brokers')
  })

  test('two writers on different brokers: one document per version, both last values kept', async () => {
    const name = 'consistency/1'
    // the writers hold no copy of the record: their writes carry version -1 ("next"),
    // so none of them conflicts and the owner orders them
    const w1 = await connect(brokers[0])
    const w2 = await connect(brokers[1])
    const readers = await Promise.all([connect(brokers[0]), connect(brokers[1]), connect(lb)])
    const seen = readers.map(() => new Map())
    const rrs = readers.map(r => r.record.getRecord(name))
    await Promise.all(rrs.map(r => r.whenReady()))
    rrs.forEach((r, i) => r.subscribe(data => {
      const doc = JSON.stringify(data)
      const before = seen[i].get(r.version)
      assert.ok(before === undefined || before === doc, `reader ${i} saw version ${r.version} twice, differently`)
      seen[i].set(r.version, doc)
    }))
    const N = 150
    await Promise.all([
      (async () => { for (let i = 1; i <= N; i++) await w1.record.setDataWithAck(name, 'p1', i) })(),
      (async () => { for (let i = 1; i <= N; i++) await w2.record.setDataWithAck(name, 'p2', i) })()
    ])
    const check = await connect(lb)
    const final = await check.record.snapshot(name)
    assert.equal(final.p1, N)
    assert.equal(final.p2, N)
    assert.equal(await check.record.head(name), 2 * N)
    await until(() => rrs.every(r => r.version === 2 * N), 'every reader converges on the server\'s version')
    for (const r of rrs) assert.deepEqual(r.get(), final)
    // any version two readers both saw holds the same document for both
    for (let i = 1; i < seen.length; i++) {
      for (const [v, doc] of seen[0]) if (seen[i].has(v)) assert.equal(seen[i].get(v), doc, `version ${v}`)
    }
  })

  test('a broker killed: clients through haproxy reconnect and resubscribe', async () => {
    const sub = await connect(lb, { username: 'mover' }, { reconnectIntervalIncrement: 200, maxReconnectAttempts: 20 })
    const pub = await connect(brokers[1])
    const got = []
    sub.event.subscribe('move/1', d => got.push(d))
    await sleep(SETTLE)
    // the subscriber sits on one of the two brokers: kill both, bring both back
    const t0 = Date.now()
    sh('kill', 'broker1')
    sh('kill', 'broker2')
    sh('start', 'broker1')
    sh('start', 'broker2')
    await until(() => sub.getConnectionState() === 'OPEN', 'reconnected', 20000)
    const pub2 = await connect(lb)
    let n = 0
    await until(async () => {
      pub2.event.emit('move/1', ++n)
      await sleep(100)
      return got.length > 0
    }, 'resubscribed after the broker kill', 20000)
    console.log(`# broker kill to resubscribed: ${Date.now() - t0} ms`)
    pub.close()
  })

  test('a node killed: its shards fail at once; after a restart every acknowledged write is there', async () => {
    const c = await connect(brokers[0])
    const on2 = ownedBy(2, 'nk/', 5)
    const on1 = ownedBy(1, 'nk/', 2)
    await Promise.all([...on2, ...on1].map((n, i) => c.record.setDataWithAck(n, { i })))
    const sub = await connect(brokers[1])
    const got = []
    const evName = ownedBy(2, 'nkev/', 1)[0]
    sub.event.subscribe(evName, d => got.push(d))
    await sleep(SETTLE)
    // writers keep acknowledged writes in flight on node2 up to the kill: each
    // must be answered (acknowledged, or refused) at once, none may hang
    const loadNames = ownedBy(2, 'nkload/', 4)
    const acked = {}
    let killedAt = 0
    const writers = loadNames.map(async n => {
      for (let k = 1; ; k++) {
        try {
          await c.record.setDataWithAck(n, { k })
          acked[n] = k
        } catch (e) {
          return { error: e, after: Date.now() - killedAt }
        }
      }
    })
    await sleep(300)
    killedAt = Date.now()
    const killing = execFileAsync('bash', [SH, 'kill', 'node2', '--dir', dir]) // the event loop stays free
    const ends = await Promise.race([Promise.all(writers), sleep(5000).then(() => null)])
    assert.ok(ends !== null, 'every write in flight at the kill was answered')
    for (const e of ends) {
      assert.equal(e.error, 'MESSAGE_DENIED')
      assert.ok(e.after < 2000, `answered ${e.after} ms after the kill`)
    }
    await killing
    console.log(`# node kill to the last in-flight write answered: ${Math.max(...ends.map(e => e.after))} ms`)
    await sleep(200)
    const t0 = Date.now()
    await assert.rejects(c.record.snapshot(on2[0]), e => e === 'MESSAGE_DENIED')
    assert.ok(Date.now() - t0 < 2000, 'answered at once, no hang')
    assert.deepEqual(await c.record.snapshot(on1[0]), { i: 5 }, 'other nodes keep serving')
    sh('start', 'node2')
    // ask until node2 serves again; each ask is bounded so a slow answer cannot stall the loop
    const bounded = p => Promise.race([p, sleep(1000).then(() => 'no answer')])
    await until(async () => {
      try { return (await bounded(c.record.head(on2[0]))) === 1 } catch { return false }
    }, 'node2 serves again', 30000)
    for (const [i, n] of on2.entries()) assert.deepEqual(await c.record.snapshot(n), { i })
    for (const n of loadNames) { // every acknowledged write survived (a refused one may have landed too)
      const { k } = await c.record.snapshot(n)
      assert.ok(k >= acked[n], `${n}: acknowledged k=${acked[n]}, stored k=${k}`)
    }
    const pub = await connect(brokers[0])
    let k = 0
    await until(async () => {
      pub.event.emit(evName, ++k)
      await sleep(100)
      return got.length > 0
    }, 'subscription restored on the restarted node', 10000)
  })
})
