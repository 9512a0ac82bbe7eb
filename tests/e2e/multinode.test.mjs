// multinode.test.mjs - two nodes sharing the shard map and two brokers
// connected to both: every feature works when names live on different nodes
// (events, records, RPC, presence merged across nodes, listening), and a node
// refuses to run with a node id missing from the map.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sleep, until, MODE, LINK, Proc, assertNoSanitizerReport, runEddy } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const SETTLE = 400

// A free port below 32768 (outside the ephemeral range, DEPENDENCIES.md pitfall 12).
async function freePort () {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000)
    const ok = await new Promise(resolve => {
      const srv = createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
    })
    if (ok) return port
  }
}

describe('two nodes, two brokers', { skip: MODE !== 'cluster' && 'two-process mode only' }, () => {
  const procs = []
  let dir, urls, nodeFlags, seed
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-multi-'))
    const ports = []
    while (ports.length < 4) {
      const p = await freePort()
      if (!ports.includes(p)) ports.push(p)
    }
    const addr = p => `${LINK}://127.0.0.1:${p}`
    // an explicit, uneven map: node1 owns a quarter at each end, node2 the middle half
    nodeFlags = ['--node', `${addr(ports[0])},${addr(ports[1])},0-1023,3072-4095`, '--node', `${addr(ports[2])},${addr(ports[3])},1024-3071`]
    seed = addr(ports[2])
    for (const [i, id] of ['node1', 'node2'].entries()) {
      const n = new Proc(id, ['node', '--node-id', id, '--request', addr(ports[2 * i]), '--delivery', addr(ports[2 * i + 1]),
        '--metrics', '127.0.0.1:0', '--data', join(dir, id), ...nodeFlags])
      procs.push(n)
      await n.waitFor(/node-listening/)
    }
    urls = []
    for (const id of ['broker1', 'broker2']) {
      const b = new Proc(id, ['broker', '--host', '127.0.0.1', '--port', '0', ...nodeFlags])
      procs.push(b)
      urls.push(`ws://127.0.0.1:${(await b.waitFor(/broker-listening port=(\d+)/))[1]}/deepstream`)
    }
  })
  after(async () => {
    await closeAll()
    for (const p of procs.reverse()) {
      const { code } = await p.stop()
      assertNoSanitizerReport(p.stderr, p.name)
      assert.equal(code, 0, `${p.name}:\n${p.stderr}`)
    }
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('a node id that is not in the map is refused', () => {
    const r = runEddy(['node', '--node-id', 'node9', '--data', join(dir, 'x'), ...nodeFlags])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /node\.id.*node9/)
  })

  test('a broker with another shard map epoch is refused and does not serve', async () => {
    const b = new Proc('broker-epoch2', ['broker', '--host', '127.0.0.1', '--port', '0', '--epoch', '2', ...nodeFlags])
    const { code } = await b.exited
    assert.equal(code, 1)
    assert.match(b.stderr, /epoch-mismatch node=node\d node_epoch=1 our_epoch=2/)
    assert.ok(!/broker-listening/.test(b.stderr))
    await until(() => /epoch-mismatch peer=[0-9a-f]+ peer_epoch=2 node_epoch=1/.test(procs[0].stderr), 'the node logs it too')
  })

  test('a broker with the same epoch but another shard assignment is refused', async () => {
    const even = nodeFlags.map(f => f.replace(/,((?:tls\+)?tcp:\/\/[^,]+),.*$/, ',$1')) // the same nodes, spread evenly
    const b = new Proc('broker-evenmap', ['broker', '--host', '127.0.0.1', '--port', '0', ...even])
    const { code } = await b.exited
    assert.equal(code, 1)
    assert.match(b.stderr, /epoch-mismatch node=node\d node_epoch=1 our_epoch=1/)
    await until(() => /epoch-mismatch peer=[0-9a-f]+ peer_epoch=1 node_epoch=1 same_assignment=no/.test(procs[0].stderr),
      'the node logs it too')
  })

  test('a broker given one node (--seed) learns the map and serves names on every node', async () => {
    const b = new Proc('broker-seeded', ['broker', '--host', '127.0.0.1', '--port', '0', '--seed', seed])
    try {
      const url = `ws://127.0.0.1:${(await b.waitFor(/broker-listening port=(\d+)/))[1]}/deepstream`
      assert.match(b.stderr, /cluster-map-learned seed=\S+ epoch=1 nodes=2/)
      const a = await connect(url)
      const other = await connect(urls[0])
      const names = Array.from({ length: 20 }, (_, i) => `seeded/${i}`)
      await Promise.all(names.map((n, i) => a.record.setDataWithAck(n, { i })))
      for (const [i, n] of names.entries()) assert.deepEqual(await other.record.snapshot(n), { i })
      const got = []
      a.event.subscribe('seeded/ev', d => got.push(d))
      await sleep(SETTLE)
      other.event.emit('seeded/ev', 7)
      await until(() => got.length === 1, 'event across brokers')
      await a.close()
    } finally {
      const { code } = await b.stop()
      assertNoSanitizerReport(b.stderr, b.name)
      assert.equal(code, 0, b.stderr)
    }
  })

  test('events and records on names spread over both nodes', async () => {
    const a = await connect(urls[0])
    const b = await connect(urls[1])
    const names = Array.from({ length: 40 }, (_, i) => `spread/${i}`)
    const got = {}
    for (const n of names) b.event.subscribe(n, d => { got[n] = d })
    await sleep(SETTLE)
    names.forEach((n, i) => a.event.emit(n, i))
    await until(() => Object.keys(got).length === names.length, 'every event delivered')
    await Promise.all(names.map((n, i) => a.record.setDataWithAck(n, { i })))
    for (const [i, n] of names.entries()) assert.deepEqual(await b.record.snapshot(n), { i })
    // both nodes served operations
    for (const p of procs.slice(0, 2)) {
      assert.match(p.stderr, /peer-joined/)
      assert.ok(!/wrong-shard|malformed/.test(p.stderr), p.stderr)
    }
  })

  test('RPC, presence and listening across nodes and brokers', async () => {
    const p = await connect(urls[0], { username: 'prov' })
    const c = await connect(urls[1], { username: 'caller' })
    const names = Array.from({ length: 10 }, (_, i) => `double/${i}`)
    for (const n of names) p.rpc.provide(n, (d, res) => res.send(d * 2))
    await sleep(SETTLE)
    for (const [i, n] of names.entries()) assert.equal(await c.rpc.make(n, i), i * 2)
    const users = await Promise.all(['u1', 'u2', 'u3', 'u4', 'u5'].map((u, i) => connect(urls[i % 2], { username: u })))
    // logins reach the users' owning nodes a moment after login() resolves (another broker)
    await until(async () => (await c.presence.getAll()).length === 6, 'all logins known cluster-wide')
    assert.deepEqual((await c.presence.getAll()).sort(), ['prov', 'u1', 'u2', 'u3', 'u4', 'u5'])
    assert.deepEqual(await c.presence.getAll(['u1', 'u5', 'nobody']), { u1: true, u5: true, nobody: false })
    const log = []
    p.event.listen('lst/.*', (name, res) => { log.push(name); res.accept() })
    await sleep(SETTLE)
    const lnames = Array.from({ length: 10 }, (_, i) => `lst/${i}`)
    for (const n of lnames) c.event.subscribe(n, () => {})
    await until(() => log.length === lnames.length, 'listener offered every name, whichever node owns it')
    assert.deepEqual([...log].sort(), [...lnames].sort())
    users.forEach(u => u.close())
  })
})
