// listen.test.mjs - listening with the official client, for events and records:
// the provider hears of the first subscriber and the last one leaving; reject
// and response timeouts move to the next listener; a late listener is offered
// names that have none; provider loss restarts the search; record subscribers
// learn whether a provider is active; bad patterns are refused.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC, EVENT } from './lib/client.mjs'

const SETTLE = 400

describe(`listening (${MODE})`, () => {
  let server
  before(async () => { server = await startServer({ nodeExtra: ['--listen-response-timeout', '300'] }) })
  after(async () => { await server.stop() })
  afterEach(closeAll)

  test('an event provider hears of the first subscriber and of the last one leaving', async () => {
    const p = await connect(server.url)
    const s1 = await connect(server.url)
    const s2 = await connect(server.url)
    const log = []
    p.event.listen('news/.*', (name, res) => {
      log.push(`start ${name}`)
      res.accept()
      res.onStop(() => log.push(`stop ${name}`))
    })
    await sleep(SETTLE)
    const got = []
    s1.event.subscribe('news/sports', d => got.push(d))
    await until(() => log.length === 1, 'provider started')
    s2.event.subscribe('news/sports', () => {}) // a second subscriber: the provider hears nothing new
    await sleep(SETTLE)
    p.event.emit('news/sports', 'goal!')
    await until(() => got.length === 1, 'subscriber receives the provider\'s event')
    s1.event.unsubscribe('news/sports')
    await sleep(SETTLE)
    assert.deepEqual(log, ['start news/sports'], 'one subscriber left: no stop yet')
    s2.event.unsubscribe('news/sports')
    await until(() => log.length === 2, 'provider stopped')
    assert.deepEqual(log, ['start news/sports', 'stop news/sports'])
    s1.event.subscribe('other/1', () => {})
    await sleep(SETTLE)
    assert.equal(log.length, 2, 'names that do not match are not offered')
  })

  test('reject moves on; a late listener is offered names without a provider; unlisten hands over', async () => {
    const rejecter = await connect(server.url)
    const late = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    rejecter.event.listen('weather/.*', (name, res) => { log.push(`reject ${name}`); res.reject() })
    await sleep(SETTLE)
    sub.event.subscribe('weather/berlin', () => {})
    await until(() => log.length === 1, 'first listener asked')
    late.event.listen('weather/.*', (name, res) => {
      log.push(`late ${name}`)
      res.accept()
      res.onStop(() => log.push(`late stop ${name}`))
    })
    await until(() => log.includes('late weather/berlin'), 'late listener offered the name')
    // the active provider unlistens: the search starts again (it gets no stop)
    const third = await connect(server.url)
    third.event.listen('weather/.*', (name, res) => { log.push(`third ${name}`); res.accept() })
    await sleep(SETTLE)
    late.event.unlisten('weather/.*')
    await until(() => log.includes('third weather/berlin'), 'handed over to the third listener')
    assert.ok(!log.includes('late stop weather/berlin'))
  })

  test('a listener that never answers gets LISTEN_RESPONSE_TIMEOUT and the next one is asked', async () => {
    const raw = await (await Raw.open(server.url)).login()
    raw.send(TOPIC.EVENT, { action: EVENT.LISTEN, name: 'slow/.*' })
    await raw.next(m => m.action === EVENT.LISTEN && m.isAck && m.name === 'slow/.*')
    const quick = await connect(server.url)
    const log = []
    await sleep(SETTLE)
    quick.event.listen('slow/.*', (name, res) => { log.push(name); res.accept() })
    await sleep(SETTLE)
    const sub = await connect(server.url)
    sub.event.subscribe('slow/1', () => {})
    // whichever listener is asked first, both end up consistent:
    await until(() => log.includes('slow/1') || raw.messages.some(m => m.action === EVENT.SUBSCRIPTION_FOR_PATTERN_FOUND), 'someone asked')
    if (!log.includes('slow/1')) {
      const found = await raw.next(m => m.action === EVENT.SUBSCRIPTION_FOR_PATTERN_FOUND)
      assert.equal(found.name, 'slow/.*')
      assert.equal(found.subscription, 'slow/1')
      const timeout = await raw.next(m => m.action === EVENT.LISTEN_RESPONSE_TIMEOUT, 3000)
      assert.equal(timeout.subscription, 'slow/1')
      await until(() => log.includes('slow/1'), 'next listener asked after the timeout')
    }
    raw.close()
  })

  test('a provider disconnecting: another listener takes over', async () => {
    const first = await connect(server.url)
    const second = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    first.event.listen('handover/.*', (name, res) => { log.push('first'); res.accept() })
    await sleep(SETTLE)
    sub.event.subscribe('handover/1', () => {})
    await until(() => log.includes('first'), 'first provides')
    second.event.listen('handover/.*', (name, res) => { log.push('second'); res.accept() })
    await sleep(SETTLE)
    assert.ok(!log.includes('second'), 'one active provider per name')
    first.close()
    await until(() => log.includes('second'), 'second takes over', 5000)
  })

  test('record listening: subscribers learn whether a provider is active', async () => {
    const p = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    p.record.listen('users/.*', (name, res) => {
      log.push(`start ${name}`)
      res.accept()
      res.onStop(() => log.push(`stop ${name}`))
    })
    await sleep(SETTLE)
    const r = sub.record.getRecord('users/1')
    await r.whenReady()
    await until(() => r.hasProvider === true, 'has provider')
    // a later subscriber is told at once
    const other = await connect(server.url)
    const r2 = other.record.getRecord('users/1')
    await r2.whenReady()
    await until(() => r2.hasProvider === true, 'later subscriber told')
    p.close()
    await until(() => r.hasProvider === false && r2.hasProvider === false, 'provider gone')
    assert.deepEqual(log, ['start users/1'])
  })

  test('an invalid pattern gets INVALID_LISTEN_REGEX', async () => {
    const raw = await (await Raw.open(server.url)).login()
    raw.send(TOPIC.EVENT, { action: EVENT.LISTEN, name: 'bad[regex' })
    const bad = await raw.next(m => m.action === EVENT.INVALID_LISTEN_REGEX)
    assert.equal(bad.name, 'bad[regex')
    raw.send(TOPIC.EVENT, { action: EVENT.UNLISTEN, name: 'never' })
    await raw.next(m => m.action === EVENT.UNLISTEN && m.isAck)
    raw.close()
  })
})
