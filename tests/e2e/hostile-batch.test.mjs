// hostile-batch.test.mjs - one client's bad operation never takes other
// clients' operations with it. A hostile client sends, in one write, a record
// write whose correlation id is over the 4096-byte operation limit and an
// event subscription, while 20 honest clients write records with
// acknowledgements and subscribe to events in the same moment: every honest
// operation is answered and delivered, the hostile client gets the protocol's
// error for its own write and the ack for its subscription, and the server's
// round trip stays short. Also the write with isWriteAck and no correlationId
// that crashed the sanitizer build, an RPC request with an empty correlationId
// (undefined behaviour found by fuzz_frame), and a username over the limit.
// run-tests: alone (it bounds how long honest work takes: nothing else may load the machine)
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, until, MODE } from './lib/server.mjs'
import { connect, Raw, TOPIC, CONN, EVENT, RECORD, AUTH, RPC } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

// Round trip of one event between two honest clients, in ms.
async function roundTrip (pub, sub, name) {
  let got = null
  sub.event.subscribe(name, d => { got = d })
  await sleep(400) /* the client gathers subscriptions for a moment before sending them */
  const started = Date.now()
  pub.event.emit(name, started)
  await until(() => got === started, `round trip on ${name}`)
  sub.event.unsubscribe(name)
  return Date.now() - started
}

describe(`hostile operations in a batch (${MODE})`, () => {
  const server = serverPerSuite()

  test('an over-limit correlationId fails alone: 20 honest clients in the same turn are all answered', { timeout: 60000 }, async () => {
    const honest = []
    for (let i = 0; i < 20; i++) honest.push(await connect(server.url, { username: `h${i}` }))
    const records = await Promise.all(honest.map(async (c, i) => {
      const r = c.record.getRecord(`hostile/rec/${i}`)
      await r.whenReady()
      return r
    }))
    const publisher = await connect(server.url, { username: 'pub' })
    const hostile = await (await Raw.open(server.url)).login({ username: 'hostile' })

    // the hostile write and subscription, in one write on the socket
    const socket = hostile.ws._socket
    socket.cork()
    hostile.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'hostile/target', version: -1, data: '{"x":1}', isWriteAck: true, correlationId: 'c'.repeat(4097) })
    hostile.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['hostile/ev'], correlationId: '9' })
    // the honest ones, at the same moment
    const got = honest.map(() => [])
    honest.forEach((c, i) => c.event.subscribe(`honest/ev/${i}`, d => got[i].push(d)))
    const writes = records.map((r, i) => r.setWithAck('n', i))
    process.nextTick(() => socket.uncork())

    const results = await Promise.allSettled(writes)
    assert.deepEqual(results.map(r => r.status), Array(20).fill('fulfilled'), 'every honest write acknowledged')
    await sleep(300)
    honest.forEach((c, i) => publisher.event.emit(`honest/ev/${i}`, i))
    await until(() => got.every((g, i) => g.includes(i)), 'every honest subscription delivers')

    const err = await hostile.next(m => m.topic === TOPIC.RECORD && m.action === RECORD.INVALID_MESSAGE_DATA)
    assert.equal(err.isWriteAck, true)
    assert.equal(err.isError, true)
    await hostile.next(m => m.topic === TOPIC.EVENT && m.isAck === true && m.correlationId === '9')
    publisher.event.emit('hostile/ev', 'still')
    await hostile.next(m => m.topic === TOPIC.EVENT && m.action === EVENT.EMIT && m.name === 'hostile/ev')
    // nothing was written under the hostile name
    const check = honest[0].record.getRecord('hostile/target')
    await check.whenReady()
    assert.equal(check.version, 0)
    assert.ok(await roundTrip(publisher, honest[1], 'hostile/rt/1') < 100, 'round trip under 100 ms')
    hostile.close()
  })

  test('a write with isWriteAck and no correlationId is answered; the server carries on', { timeout: 30000 }, async () => {
    const raw = await (await Raw.open(server.url)).login()
    // RECORD UPDATE name "ub/1" data {} version -1 isWriteAck, no correlationId (the sanitizer crash)
    raw.sendBytes(Buffer.from('1d10051a19081012027b7d320475622f31580168ffffffffffffffffff01', 'hex'))
    const ack = await raw.next(m => m.topic === TOPIC.RECORD && m.isWriteAck === true)
    assert.equal(ack.action, RECORD.WRITE_ACKNOWLEDGEMENT)
    const a = await connect(server.url)
    const b = await connect(server.url)
    assert.ok(await roundTrip(a, b, 'hostile/rt/2') < 100)
    const r = a.record.getRecord('ub/1')
    await r.whenReady()
    assert.equal(r.version, 1)
    raw.close()
  })

  test('an RPC request with an empty correlationId gets INVALID_MESSAGE_DATA; the server carries on', { timeout: 30000 }, async () => {
    const raw = await (await Raw.open(server.url)).login()
    raw.send(TOPIC.RPC, { action: RPC.REQUEST, name: 'nobody/provides', correlationId: '', data: '1' })
    const no = await raw.next(m => m.topic === TOPIC.RPC)
    assert.equal(no.action, RPC.INVALID_MESSAGE_DATA)
    const a = await connect(server.url)
    const b = await connect(server.url)
    assert.ok(await roundTrip(a, b, 'hostile/rt/3') < 100)
    raw.close()
  })

  test('a username over 1024 bytes is refused at login; others log in and meet', { timeout: 30000 }, async () => {
    const raw = await Raw.open(server.url)
    raw.send(TOPIC.CONNECTION, { action: CONN.CHALLENGE, url: 'ws://x/deepstream' })
    await raw.next(m => m.topic === TOPIC.CONNECTION)
    raw.send(TOPIC.AUTH, { action: AUTH.REQUEST, data: JSON.stringify({ username: 'u'.repeat(5000) }) })
    const no = await raw.next(m => m.topic === TOPIC.AUTH)
    assert.equal(no.action, AUTH.AUTH_UNSUCCESSFUL)
    const watcher = await connect(server.url, { username: 'watcher' })
    const joined = []
    watcher.presence.subscribe((user, online) => { if (online) joined.push(user) })
    await sleep(300)
    await connect(server.url, { username: 'late' })
    await until(() => joined.includes('late'), 'presence still works')
    raw.close()
  })
})
