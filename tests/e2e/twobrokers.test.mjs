// twobrokers.test.mjs - one node, two brokers (separate processes over tcp):
// events, records, RPC, presence and listening across brokers, and a broker
// killed with calls in flight (its unaccepted calls move to a provider on the
// other broker once the node drops it).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE, Proc, assertNoSanitizerReport } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const SETTLE = 400

describe('two brokers on one node', { skip: MODE !== 'cluster' && 'two-process mode only' }, () => {
  let server, b2, url2
  before(async () => {
    server = await startServer({ nodeExtra: ['--broker-timeout', '2000', '--rpc-ack-timeout', '15000'] })
    const m = server.procs.node.stderr.match(/node-listening request=(\S+) delivery=(\S+)/)
    b2 = new Proc('broker2', ['broker', '--host', '127.0.0.1', '--port', '0', '--node', `${m[1]},${m[2]}`])
    url2 = `ws://127.0.0.1:${(await b2.waitFor(/broker-listening port=(\d+)/))[1]}/deepstream`
  })
  after(async () => {
    await closeAll()
    await b2.stop('SIGKILL')
    assertNoSanitizerReport(b2.stderr, 'broker2')
    await server.stop()
  })
  afterEach(closeAll)

  test('events and records cross brokers', async () => {
    const a = await connect(server.url)
    const b = await connect(url2)
    const got = []
    b.event.subscribe('x/1', d => got.push(d))
    await sleep(SETTLE)
    a.event.emit('x/1', 'hello')
    await until(() => got.length === 1, 'event crossed')
    const ra = a.record.getRecord('xr/1')
    const rb = b.record.getRecord('xr/1')
    await Promise.all([ra.whenReady(), rb.whenReady()])
    await ra.setWithAck('k', 'v')
    await until(() => rb.get('k') === 'v' && rb.version === 1, 'record update crossed')
  })

  test('presence counts a user once across brokers', async () => {
    const w = await connect(server.url, { username: 'watch' })
    const seen = []
    w.presence.subscribe((user, online) => seen.push([user, online]))
    await sleep(SETTLE)
    const u1 = await connect(server.url, { username: 'multi' })
    const u2 = await connect(url2, { username: 'multi' })
    await until(() => seen.length === 1, 'joined once')
    assert.deepEqual(await w.presence.getAll(), ['multi'])
    u1.close()
    await sleep(SETTLE)
    assert.equal(seen.length, 1)
    u2.close()
    await until(() => seen.length === 2, 'left once')
    assert.deepEqual(seen, [['multi', true], ['multi', false]])
  })

  test('a listener on one broker provides for subscribers on the other', async () => {
    const p = await connect(server.url)
    const s = await connect(url2)
    const log = []
    p.event.listen('cross/.*', (name, res) => { log.push(name); res.accept() })
    await sleep(SETTLE)
    s.event.subscribe('cross/1', () => {})
    await until(() => log.includes('cross/1'), 'listener found across brokers')
  })

  test('a killed broker: its provider\'s unaccepted call moves to a provider on the other broker', async () => {
    const held = []
    const doomed = await connect(url2)
    doomed.rpc.provide('survive', (d, res) => { res.autoAccept = false; held.push(res) })
    await sleep(SETTLE)
    const caller = await connect(server.url)
    const call = caller.rpc.make('survive', 1)
    await until(() => held.length === 1, 'call held by the provider on broker 2')
    const rescuer = await connect(server.url)
    rescuer.rpc.provide('survive', (d, res) => res.send('rescued'))
    await sleep(SETTLE)
    await b2.stop('SIGKILL')
    assert.equal(await call, 'rescued')
    await server.procs.node.waitFor(/peer-expired peer=[0-9a-f]+/, 5000)
  })
})
