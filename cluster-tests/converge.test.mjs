// converge.test.mjs - clients converge after writes refused during an outage
// (issue 18, item 5). A real cluster from cluster.sh (3 nodes, 2 brokers);
// official clients on both brokers, through the brokers' own URLs, write
// records owned by node2 in loops (setWithAck and plain set) and readers
// subscribe to them. node2 is killed (-9) while they write: their writes are
// refused, and each writer's client has raised its version for every one of
// them. Once node2 is started again, within 5 s every client's copy of every
// record (record.version, record.get()) equals what a fresh reader reads
// (head, snapshot), without the application doing anything, and each writer's
// next setWithAck succeeds. (Before eddy corrected such copies, a writer stayed
// ahead and every later write of it was refused as INVALID_VERSION.)
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
const NODES = 3

const owner = name => shardOwner(name, NODES)
const ownedBy = (node, prefix, n) => namesOn(node, NODES, prefix, n)

describe('cluster: clients converge after writes refused during an outage', () => {
  let dir, brokers
  const sh = (...args) => execFileSync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-converge-'))
    execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '2', '--bin', BIN,
      '--', '--broker-timeout', '2000'], { encoding: 'utf8', timeout: 60000 })
    brokers = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
  })
  after(async () => {
    await closeAll()
    sh('down')
    for (const f of readdirSync(dir).filter(f => f.endsWith('.log'))) {
      const log = readFileSync(join(dir, f), 'utf8')
      assertNoSanitizerReport(log, f)
      const last = log.trim().split('\n').pop()
      assert.match(last, /stopped role=\w+ exit=0/, `${f} did not stop cleanly:\n${log.slice(-2000)}`)
    }
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('writers refused while their node was down converge to the server and write again', async () => {
    // two writers per broker, each with a record written with setWithAck and one with plain set
    const names = ownedBy(2, 'conv/', 8)
    const writers = []
    for (let w = 0; w < 4; w++) {
      const client = await connect(brokers[w % 2], { username: `w${w}` })
      const acked = client.record.getRecord(names[2 * w])
      const plain = client.record.getRecord(names[2 * w + 1])
      await Promise.all([acked.whenReady(), plain.whenReady()])
      await acked.setWithAck({ w, k: 0 })
      await plain.setWithAck({ w, k: 0 })
      writers.push({ w, client, acked, plain, refused: 0, errors: 0 })
    }
    const readers = []
    for (const url of brokers) {
      const client = await connect(url, { username: 'reader' })
      const recs = names.map(n => client.record.getRecord(n))
      await Promise.all(recs.map(r => r.whenReady()))
      readers.push({ client, recs })
    }

    let writing = true
    const loops = writers.flatMap(wr => {
      wr.plain.on('error', () => { wr.errors++ }) // a plain set refused (MESSAGE_DENIED)
      return [
        (async () => {
          for (let k = 1; writing; k++) {
            try { await wr.acked.setWithAck({ w: wr.w, k, by: 'ack' }) } catch { wr.refused++; await sleep(20) }
          }
        })(),
        (async () => {
          for (let k = 1; writing; k++) {
            wr.plain.set({ w: wr.w, k, by: 'set' })
            await sleep(10)
          }
        })()
      ]
    })
    await sleep(500)
    await execFileAsync('bash', [SH, 'kill', 'node2', '--dir', dir]) // the event loop stays free
    // keep writing while node2 is down: every write is refused
    await until(() => writers.every(wr => wr.refused >= 3 && wr.errors >= 3), 'writes refused during the outage', 10000)
    writing = false
    await Promise.all(loops)
    const local = Object.fromEntries(writers.flatMap(wr => [[wr.acked.name, wr.acked.version], [wr.plain.name, wr.plain.version]]))

    await execFileAsync('bash', [SH, 'start', 'node2', '--dir', dir])
    const fresh = await connect(brokers[0], { username: 'fresh' })
    const bounded = p => Promise.race([p, sleep(1000).then(() => { throw new Error('no answer') })])
    await until(async () => { // node2 serves again
      try { await bounded(fresh.record.head(names[0])); return true } catch { return false }
    }, 'node2 serves again', 30000)
    const t0 = Date.now()
    const server = {}
    for (const n of names) server[n] = { version: await fresh.record.head(n), data: await fresh.record.snapshot(n) }
    // the writers' copies had run ahead of the records (what the test is about)
    const ahead = names.filter(n => local[n] > server[n].version).length
    assert.ok(ahead >= writers.length, `copies ahead after the outage: ${ahead}`)
    const copies = () => [
      ...writers.flatMap(wr => [[`w${wr.w}`, wr.acked], [`w${wr.w}`, wr.plain]]),
      ...readers.flatMap((rd, i) => rd.recs.map(r => [`reader${i}`, r]))
    ]
    const diverged = () => copies().filter(([, r]) => r.version !== server[r.name].version ||
      JSON.stringify(r.get()) !== JSON.stringify(server[r.name].data))
    const describeDiverged = () => diverged().map(([who, r]) =>
      `${who} ${r.name}: v${r.version} ${JSON.stringify(r.get())} (server v${server[r.name].version} ` +
      `${JSON.stringify(server[r.name].data)})`).join('; ')
    await until(() => diverged().length === 0, 'every copy equal to the server\'s', 5000)
      .catch(e => { throw new Error(`${e.message}: ${describeDiverged()}`) })
    console.log(`# node2 serving to every copy converged: ${Date.now() - t0} ms (copies that had run ahead: ${ahead} of ${names.length})`)

    // every writer's next write succeeds, and every reader sees it
    for (const wr of writers) {
      await wr.acked.setWithAck({ w: wr.w, after: true })
      await wr.plain.setWithAck({ w: wr.w, after: true })
    }
    for (const n of names) {
      assert.deepEqual(await fresh.record.snapshot(n), { w: Math.floor(names.indexOf(n) / 2), after: true })
      const v = await fresh.record.head(n)
      assert.equal(v, server[n].version + 1)
      await until(() => readers.every(rd => rd.recs[names.indexOf(n)].version === v), `readers at ${n} v${v}`)
    }
  })
})
