// streams.test.mjs - resumable event streams in a real cluster (cluster.sh: 3
// nodes, 1 broker, events.history on st/): `eddy ctl subscribe --from 0`
// prints the events held, then live ones, each with its offset, while a
// websocket client subscribed to the same name gets them as ever (brokers
// ignore offsets); the node owning the name is killed and restarted (its ring
// is memory-only): ctl prints one reset gap line naming the first offset it did
// not get, then every event of the new history from offset 1, none twice.
// The cluster runs the metadata group (3 nodes: cluster.raft auto), so the
// restarted owner refuses ctl's subscription until it holds its lease: libeddy
// registers it again until the node takes it (without that, the ctl stream
// stays silent after the restart).
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { until, assertNoSanitizerReport, shardOwner } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const execFileAsync = promisify(execFile)
const NODES = 3

const owner = name => shardOwner(name, NODES)

describe('cluster: event streams across a node restart', () => {
  let dir, nodes, brokers
  const sh = (...args) => execFileSync('bash', [SH, ...args, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-streams-'))
    execFileSync('bash', [SH, 'up', '--dir', dir, '--nodes', String(NODES), '--brokers', '1', '--bin', BIN,
      '--', '--broker-timeout', '2000', '--events-history', '1000,0,^st/'], { encoding: 'utf8', timeout: 60000 })
    nodes = readFileSync(join(dir, 'nodes'), 'utf8').trim().split('\n')
    brokers = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
  })
  after(async () => {
    await closeAll()
    sh('down')
    for (const f of readdirSync(dir).filter(f => f.endsWith('.log'))) assertNoSanitizerReport(readFileSync(join(dir, f), 'utf8'), f)
    if (process.env.EDDY_KEEP) console.log(`# kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  })

  test('eddy ctl subscribe --from: the ring, live events, and a reset after the owner restarts', async () => {
    let name = 'st/0'
    for (let i = 0; owner(name) === 1; i++) name = `st/${i}` // owned by node 2 or 3: ctl talks to node 1 first
    const node = `node${owner(name)}`
    const emit = async n => { // retried while the owner is away
      await until(async () => {
        try { await execFileAsync(BIN, ['ctl', '--cluster', nodes[0], 'emit', name, String(n)]); return true } catch { return false }
      }, `emit ${n}`, 30000)
    }
    for (let i = 1; i <= 5; i++) await emit(i) // held before anyone subscribes
    const ws = await connect(brokers[0])
    const wsGot = []
    ws.event.subscribe(name, d => wsGot.push(d))
    // a read of the record of the same name goes to the same node on the same link, after the interest
    const rec = ws.record.getRecord(name)
    await rec.whenReady()
    rec.discard()
    let out = ''
    const ctl = spawn(BIN, ['ctl', '--cluster', nodes[0], 'subscribe', name, '--from', '0'])
    ctl.stdout.on('data', d => { out += d })
    const lines = () => out.trim().split('\n').filter(Boolean).map(l => JSON.parse(l))
    try {
      await until(() => lines().length === 5, 'the ring held before subscribing', 30000)
      for (let i = 6; i <= 10; i++) await emit(i)
      await until(() => lines().length === 10 && wsGot.length === 5, 'live events, on ctl and on the websocket', 30000)
      assert.deepEqual(wsGot, [6, 7, 8, 9, 10])
      const first = lines()
      assert.deepEqual(first.map(l => [l.offset, l.data]), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(i => [i, i]))
      assert.ok(first.every(l => l.name === name && l.history === first[0].history && /^[0-9]+$/.test(l.history)))

      sh('kill', node)
      sh('start', node)
      // its lease first (cluster.raft): an emit is fire-and-forget, and one the
      // restarted node refuses before it serves would be lost, not retried
      sh('settle')
      for (let i = 11; i <= 20; i++) await emit(i)
      await until(() => lines().length === 21, () => `a reset line, then the new history (ctl printed ${out})`, 30000)
      const all = lines()
      const gap = all[10]
      assert.deepEqual(gap.gap && { from: gap.gap.from, to: gap.gap.to, reset: gap.gap.reset }, { from: 11, to: 0, reset: true })
      const after = all.slice(11)
      assert.deepEqual(after.map(l => [l.offset, l.data]), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(i => [i, i + 10]))
      assert.ok(after.every(l => l.history === after[0].history && l.history !== first[0].history))
    } finally {
      ctl.kill('SIGTERM')
    }
  })
})
