// pubsub.test.mjs - events end to end with the official client: several
// subscribers on several connections, every payload type, bulk subscribe,
// unsubscribe, no echo to the emitter, order per publisher, and the raw
// protocol answers (acks, MULTIPLE_SUBSCRIPTIONS, NOT_SUBSCRIBED).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC, EVENT } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

const SETTLE = 400 // the client batches subscriptions for 100 ms; the ack follows the node's

describe(`events (${MODE})`, () => {
  const server = serverPerSuite()

  test('every subscriber on every connection gets each payload type, in order', async () => {
    const subs = await Promise.all([1, 2, 3].map(i => connect(server.url, { username: `s${i}` })))
    const pub = await connect(server.url, { username: 'pub' })
    const got = subs.map(() => [])
    subs.forEach((c, i) => c.event.subscribe('chat/1', d => got[i].push(d)))
    await sleep(SETTLE)
    const payloads = [{ text: 'hi', n: 1 }, 'plain string', 42, null, undefined, [1, { a: [true, false] }], 'ünïcödé ✓']
    for (const p of payloads) pub.event.emit('chat/1', p)
    await until(() => got.every(g => g.length === payloads.length), 'all deliveries')
    for (const g of got) assert.deepEqual(g, payloads)
    await sleep(200)
    for (const g of got) assert.equal(g.length, payloads.length, 'no duplicates')
  })

  test('bursts of small and large payloads arrive whole and in order (gathered and lone frames)', async () => {
    // the broker gathers queued frames into one send up to 64 KiB; a larger
    // frame (64-bit websocket length) goes alone, between gathered ones
    const sub = await connect(server.url)
    const pub = await connect(server.url)
    const got = []
    sub.event.subscribe('sizes/1', d => got.push(d))
    await sleep(SETTLE)
    const sent = []
    for (let i = 0; i < 300; i++) {
      const size = i % 50 === 7 ? 300000 : i % 10 === 3 ? 70000 : i % 5 === 1 ? 200 : 20
      sent.push({ i, pad: String.fromCharCode(97 + (i % 26)).repeat(size) })
    }
    for (const p of sent) pub.event.emit('sizes/1', p)
    await until(() => got.length === sent.length, 'every payload', 20000)
    assert.deepEqual(got.map(p => p.i), sent.map(p => p.i))
    for (let i = 0; i < sent.length; i++) assert.equal(got[i].pad, sent[i].pad, `payload ${i} intact`)
  })

  test('the emitter does not get its own event back; others do', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const gotA = []
    const gotB = []
    a.event.subscribe('echo/1', d => gotA.push(d))
    b.event.subscribe('echo/1', d => gotB.push(d))
    await sleep(SETTLE)
    a.event.emit('echo/1', 'from a')
    await until(() => gotB.length === 1, 'b receives')
    await sleep(300)
    assert.deepEqual(gotA, ['from a']) // fired once, locally, by the client library
    assert.deepEqual(gotB, ['from a'])
  })

  test('names subscribed in one tick travel as one bulk subscribe and all deliver', async () => {
    const sub = await connect(server.url)
    const pub = await connect(server.url)
    const got = {}
    const names = Array.from({ length: 20 }, (_, i) => `bulk/${i}`)
    for (const n of names) sub.event.subscribe(n, d => { got[n] = d })
    await sleep(SETTLE)
    names.forEach((n, i) => pub.event.emit(n, i))
    await until(() => Object.keys(got).length === names.length, 'all names delivered')
    names.forEach((n, i) => assert.equal(got[n], i))
  })

  test('unsubscribe stops delivery to that client only', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const pub = await connect(server.url)
    const gotA = []
    const gotB = []
    const cb = d => gotA.push(d)
    a.event.subscribe('unsub/1', cb)
    b.event.subscribe('unsub/1', d => gotB.push(d))
    await sleep(SETTLE)
    pub.event.emit('unsub/1', 1)
    await until(() => gotA.length === 1 && gotB.length === 1, 'first delivery')
    a.event.unsubscribe('unsub/1', cb)
    await sleep(SETTLE)
    pub.event.emit('unsub/1', 2)
    await until(() => gotB.length === 2, 'b keeps receiving')
    await sleep(200)
    assert.deepEqual(gotA, [1])
    assert.deepEqual(gotB, [1, 2])
  })

  test('500 emits from one publisher arrive in order at two subscribers', async () => {
    const s1 = await connect(server.url)
    const s2 = await connect(server.url)
    const pub = await connect(server.url)
    const g1 = []
    const g2 = []
    s1.event.subscribe('order/1', d => g1.push(d))
    s2.event.subscribe('order/1', d => g2.push(d))
    await sleep(SETTLE)
    const want = Array.from({ length: 500 }, (_, i) => i)
    for (const i of want) pub.event.emit('order/1', i)
    await until(() => g1.length === 500 && g2.length === 500, '500 deliveries each', 15000)
    assert.deepEqual(g1, want)
    assert.deepEqual(g2, want)
  })

  test('a client that disconnects stops receiving and does not disturb the others', async () => {
    const leaving = await connect(server.url)
    const staying = await connect(server.url)
    const pub = await connect(server.url)
    const provider = await connect(server.url)
    const got = []
    const gotLeaving = []
    const log = []
    // the server's side of "stops receiving": the leaving client's subscriptions
    // end with it, which a listener sees as the name losing its last subscriber
    provider.event.listen('leave/.*', (name, res) => {
      log.push(`start ${name}`)
      res.accept()
      res.onStop(() => log.push(`stop ${name}`))
    })
    leaving.event.subscribe('leave/1', d => gotLeaving.push(d))
    leaving.event.subscribe('leave/solo', d => gotLeaving.push(d))
    staying.event.subscribe('leave/1', d => got.push(d))
    await until(() => log.includes('start leave/solo') && log.includes('start leave/1'), 'both names provided')
    await sleep(SETTLE) // the staying client's subscription is acknowledged too
    pub.event.emit('leave/1', 'before')
    await until(() => got.length === 1 && gotLeaving.length === 1, 'both get the event before leaving')
    leaving.close()
    await until(() => log.includes('stop leave/solo'), 'its only subscription ends with the connection')
    for (let i = 0; i < 10; i++) pub.event.emit('leave/1', i)
    pub.event.emit('leave/solo', 'nobody')
    await until(() => got.length === 11, 'staying client gets all')
    await sleep(100)
    assert.deepEqual(gotLeaving, ['before'])
    assert.ok(!log.includes('stop leave/1'), 'leave/1 keeps its other subscriber')
  })

  test('an event with no subscribers goes nowhere and breaks nothing', async () => {
    const pub = await connect(server.url)
    const sub = await connect(server.url)
    const got = []
    pub.event.emit('nobody/listens', 1)
    sub.event.subscribe('after/1', d => got.push(d))
    await sleep(SETTLE)
    pub.event.emit('after/1', 'ok')
    await until(() => got.length === 1, 'later delivery')
  })
})

describe(`events, raw protocol (${MODE})`, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server.stop() })

  const ack = (action, cid) => m => m.topic === TOPIC.EVENT && m.action === action && m.isAck === true && m.correlationId === cid

  test('subscribe acks carry the correlation id; duplicates get MULTIPLE_SUBSCRIPTIONS then the ack', async () => {
    const r = await (await Raw.open(server.url)).login()
    r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['dup'], correlationId: '7' })
    await r.next(ack(EVENT.SUBSCRIBE, '7'))
    r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['dup'], correlationId: '8' })
    const dup = await r.next(m => m.action === EVENT.MULTIPLE_SUBSCRIPTIONS)
    assert.equal(dup.name, 'dup')
    assert.equal(dup.originalAction, EVENT.SUBSCRIBE)
    await r.next(ack(EVENT.SUBSCRIBE, '8'))
    // bulk with one duplicate inside: one MULTIPLE_SUBSCRIPTIONS, one ack, the others registered
    r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['m1', 'm2', 'dup'], correlationId: '10' })
    const dup2 = await r.next(m => m.action === EVENT.MULTIPLE_SUBSCRIPTIONS)
    assert.equal(dup2.name, 'dup')
    await r.next(ack(EVENT.SUBSCRIBE, '10'))
    const p = await (await Raw.open(server.url)).login()
    p.send(TOPIC.EVENT, { action: EVENT.EMIT, name: 'm2', data: '"to m2"' })
    const got = await r.next(m => m.action === EVENT.EMIT)
    assert.equal(got.name, 'm2')
    assert.equal(got.data, '"to m2"')
    // an emit without data arrives without data (never data: "")
    p.send(TOPIC.EVENT, { action: EVENT.EMIT, name: 'm1' })
    const bare = await r.next(m => m.action === EVENT.EMIT)
    assert.equal(bare.name, 'm1')
    assert.ok(!('data' in bare))
    assert.equal(r.messages.length, 0, JSON.stringify(r.messages))
    r.close()
    p.close()
  })

  test('unsubscribe: bulk of an unknown name is acked silently; single name gets NOT_SUBSCRIBED', async () => {
    const r = await (await Raw.open(server.url)).login()
    r.send(TOPIC.EVENT, { action: EVENT.UNSUBSCRIBE, names: ['never'], correlationId: '9' })
    await r.next(ack(EVENT.UNSUBSCRIBE, '9'))
    assert.equal(r.messages.length, 0)
    r.send(TOPIC.EVENT, { action: EVENT.UNSUBSCRIBE, name: 'never' })
    const ns = await r.next(m => m.action === EVENT.NOT_SUBSCRIBED)
    assert.equal(ns.name, 'never')
    // a single-name subscribe is acked and registered
    r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, name: 'single' })
    await r.next(m => m.action === EVENT.SUBSCRIBE && m.isAck === true)
    const p = await (await Raw.open(server.url)).login()
    p.send(TOPIC.EVENT, { action: EVENT.EMIT, name: 'single', data: '1' })
    await r.next(m => m.action === EVENT.EMIT && m.name === 'single')
    r.close()
    p.close()
  })

  test('an ack means the subscription is live: an emit right after it is delivered', async () => {
    const p = await (await Raw.open(server.url)).login()
    for (let i = 0; i < 20; i++) {
      const r = await (await Raw.open(server.url)).login()
      r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: [`live/${i}`], correlationId: '1' })
      await r.next(ack(EVENT.SUBSCRIBE, '1'))
      p.send(TOPIC.EVENT, { action: EVENT.EMIT, name: `live/${i}`, data: String(i) })
      const got = await r.next(m => m.action === EVENT.EMIT)
      assert.equal(got.data, String(i))
      r.close()
    }
    p.close()
  })

  test('empty and oversized names are refused with INVALID_MESSAGE_DATA', async () => {
    const r = await (await Raw.open(server.url)).login()
    r.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['', 'x'.repeat(5000)], correlationId: '3' })
    const e1 = await r.next(m => m.action === EVENT.INVALID_MESSAGE_DATA)
    const e2 = await r.next(m => m.action === EVENT.INVALID_MESSAGE_DATA)
    assert.equal(e1.originalAction, EVENT.SUBSCRIBE)
    assert.equal(e2.originalAction, EVENT.SUBSCRIBE)
    await r.next(ack(EVENT.SUBSCRIBE, '3'))
    r.send(TOPIC.EVENT, { action: EVENT.EMIT, name: '', data: '1' })
    await r.next(m => m.action === EVENT.INVALID_MESSAGE_DATA && m.originalAction === EVENT.EMIT)
    r.close()
  })
})
