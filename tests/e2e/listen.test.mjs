// listen.test.mjs - listening with the official client, for events and records:
// the provider hears of the first subscriber and the last one leaving; reject
// and response timeouts move to the next listener; a late listener is offered
// names that have none; provider loss restarts the search; record subscribers
// learn whether a provider is active; bad patterns are refused. Then the
// listen options: shuffleProviders (random order, the default; registration
// order when false), rematchInterval (names whose listeners all declined are
// offered again) and matchCooldown, on one broker and with the listeners on
// two brokers (cluster and haproxy modes).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, sleep, until, MODE, Proc, assertNoSanitizerReport } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC, EVENT } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

const SETTLE = 400

// Listens to pattern as `who`, logging every offer as [who, name]. decide(name,
// nth) says 'accept' or 'reject' for the nth offer (1, 2, ...) of name to this
// listener; the default rejects everything.
function listenAs (client, who, pattern, log, decide = () => 'reject', topic = 'event') {
  const seen = new Map()
  client[topic].listen(pattern, (name, res) => {
    const nth = (seen.get(name) || 0) + 1
    seen.set(name, nth)
    log.push([who, name])
    if (decide(name, nth) === 'accept') res.accept()
    else res.reject()
  })
}

// The listeners a name was offered to, in order.
const offersOf = (log, name) => log.filter(([, n]) => n === name).map(([who]) => who)

// True when seq is order repeated (a rematch asks the same listeners again), cut anywhere.
const rounds = (seq, order) => seq.every((who, i) => who === order[i % order.length])

describe(`listening (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--listen-response-timeout', '300'] })

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

  test('listen.shuffleProviders (on by default): the order of the listeners varies from name to name', { timeout: 30000 }, async () => {
    const clients = await Promise.all([1, 2, 3].map(() => connect(server.url)))
    const sub = await connect(server.url)
    const log = []
    for (const [i, who] of ['A', 'B', 'C'].entries()) {
      listenAs(clients[i], who, 'shuffle/.*', log)
      await sleep(SETTLE)
    }
    const names = Array.from({ length: 48 }, (_, i) => `shuffle/${i}`)
    for (const n of names) sub.event.subscribe(n, () => {})
    await until(() => names.every(n => offersOf(log, n).length === 3), 'every name offered to all three listeners', 10000)
    const orders = names.map(n => offersOf(log, n).join(''))
    assert.ok(orders.every(o => [...o].sort().join('') === 'ABC'), `each listener once per name: ${orders}`)
    // a uniform shuffle: each listener is first somewhere (all three: 1 - 3 * (2/3)^48),
    // and some orders are not a rotation of the registration order (1 - 2^-48)
    for (const who of 'ABC') assert.ok(orders.some(o => o[0] === who), `${who} asked first for some name: ${orders}`)
    assert.ok(orders.some(o => ['ACB', 'BAC', 'CBA'].includes(o)), `not only rotations of A, B, C: ${orders}`)
  })
})

// shuffleProviders false; a rematch every 1.2 s with no cooldown.
const ORDERED = ['--listen-response-timeout', '300', '--listen-shuffle-providers', 'false',
  '--listen-rematch-interval', '1200', '--listen-match-cooldown', '0']

describe(`listening in registration order, with rematch (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ORDERED })

  test('shuffleProviders false: every name is offered to the listeners in the order they registered', { timeout: 30000 }, async () => {
    const clients = await Promise.all([1, 2, 3].map(() => connect(server.url)))
    const sub = await connect(server.url)
    const log = []
    for (const [i, who] of ['A', 'B', 'C'].entries()) {
      listenAs(clients[i], who, 'order/.*', log)
      await sleep(SETTLE)
    }
    // names subscribed one after another (several land on each node of a cluster)
    for (let i = 0; i < 8; i++) {
      const name = `order/${i}`
      sub.event.subscribe(name, () => {})
      await until(() => offersOf(log, name).length >= 3, `${name} offered to every listener`)
    }
    for (let i = 0; i < 8; i++) {
      const seq = offersOf(log, `order/${i}`)
      assert.ok(rounds(seq, ['A', 'B', 'C']), `order/${i} offered A, B, C: got ${seq}`)
    }
  })

  test('shuffleProviders false: a listener that leaves and comes back goes to the end', { timeout: 30000 }, async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    listenAs(a, 'A', 'back/.*', log)
    await sleep(SETTLE)
    listenAs(b, 'B', 'back/.*', log)
    await sleep(SETTLE)
    a.event.unlisten('back/.*')
    await sleep(SETTLE)
    listenAs(a, 'A', 'back/.*', log)
    await sleep(SETTLE)
    for (const name of ['back/1', 'back/2']) {
      sub.event.subscribe(name, () => {})
      await until(() => offersOf(log, name).length >= 2, `${name} offered to both`)
      assert.ok(rounds(offersOf(log, name), ['B', 'A']), `${name}: B first: ${offersOf(log, name)}`)
    }
  })

  test('shuffleProviders false: as in deepstream, listeners are grouped by pattern, patterns in the order first listened', { timeout: 30000 }, async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => connect(server.url)))
    const sub = await connect(server.url)
    const log = []
    listenAs(a, 'A', 'group/.*', log)
    await sleep(SETTLE)
    listenAs(b, 'B', 'group/[0-9]+', log)
    await sleep(SETTLE)
    listenAs(c, 'C', 'group/.*', log)
    await sleep(SETTLE)
    sub.event.subscribe('group/1', () => {})
    await until(() => offersOf(log, 'group/1').length >= 3, 'offered to all three')
    assert.ok(rounds(offersOf(log, 'group/1'), ['A', 'C', 'B']), `A, C, B: ${offersOf(log, 'group/1')}`)
  })

  test('rematch: a name every listener declined is offered again; one that accepts then provides it', { timeout: 30000 }, async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    listenAs(a, 'A', 'rematch/.*', log, () => 'reject', 'record')
    await sleep(SETTLE)
    listenAs(b, 'B', 'rematch/.*', log, (name, nth) => nth >= 2 ? 'accept' : 'reject', 'record')
    await sleep(SETTLE)
    const r = sub.record.getRecord('rematch/1')
    await r.whenReady()
    await until(() => offersOf(log, 'rematch/1').length >= 2, 'first round: both declined')
    // the rematch asks both again, in order; B accepts this time
    await until(() => r.hasProvider === true, 'provider after the rematch', 5000)
    assert.deepEqual(offersOf(log, 'rematch/1'), ['A', 'B', 'A', 'B'])
    // a name with a provider is not offered again
    await sleep(2500)
    assert.deepEqual(offersOf(log, 'rematch/1'), ['A', 'B', 'A', 'B'])
    assert.equal(r.hasProvider, true)
  })

  test('rematch: a name without subscribers is not offered again', { timeout: 30000 }, async () => {
    const a = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    listenAs(a, 'A', 'gone/.*', log)
    await sleep(SETTLE)
    sub.event.subscribe('gone/1', () => {})
    await until(() => offersOf(log, 'gone/1').length === 1, 'offered once')
    sub.event.unsubscribe('gone/1')
    await sleep(SETTLE) // a rematch may have crossed the unsubscribe
    const offers = offersOf(log, 'gone/1').length
    await sleep(3000)
    assert.equal(offersOf(log, 'gone/1').length, offers, 'no offers once the name has no subscriber')
  })
})

// a rematch every 1.1 s, but not within 3 s of a name's last unsuccessful search
const COOLDOWN = 3000
const COOLING = ['--listen-response-timeout', '3000', '--listen-shuffle-providers', 'false',
  '--listen-rematch-interval', '1100', '--listen-match-cooldown', String(COOLDOWN)]

describe(`listen.matchCooldown (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: COOLING })

  test('a declined name is not offered again within the cooldown, and is after it', { timeout: 30000 }, async () => {
    const a = await connect(server.url)
    const sub = await connect(server.url)
    const times = []
    a.event.listen('cool/.*', (name, res) => { times.push(Date.now()); res.reject() })
    await sleep(SETTLE)
    sub.event.subscribe('cool/1', () => {})
    await until(() => times.length === 2, 'offered again', COOLDOWN + 1100 + 3000)
    const gap = times[1] - times[0]
    assert.ok(gap >= COOLDOWN - 50, `not within the cooldown (gap ${gap} ms)`)
    assert.ok(gap <= COOLDOWN + 1100 + 1500, `by the first rematch after it (gap ${gap} ms)`)
  })

  test('a listener arriving during a search is asked after the ones already in it', { timeout: 30000 }, async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    let rejectedAt = 0
    a.event.listen('during/.*', (name, res) => {
      log.push(['A', name])
      // B registers while A is still deciding (the response timeout is 3 s)
      listenAs(b, 'B', 'during/.*', log)
      setTimeout(() => { rejectedAt = Date.now(); res.reject() }, 600)
    })
    await sleep(SETTLE)
    sub.event.subscribe('during/1', () => {})
    await until(() => offersOf(log, 'during/1').length === 2, 'B asked after A declined', 3000)
    assert.deepEqual(offersOf(log, 'during/1'), ['A', 'B'])
    assert.ok(Date.now() - rejectedAt < COOLDOWN, 'in the same search, not by a rematch')
  })
})

describe(`listen.rematchInterval of a second or less (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--listen-rematch-interval', '1000', '--listen-match-cooldown', '0'] })

  test('turns rematching off, as in deepstream, and says so at start-up', { timeout: 30000 }, async () => {
    assert.match(server.stderr(), /listen-rematch-off rematch_interval_ms=1000/)
    const a = await connect(server.url)
    const sub = await connect(server.url)
    const log = []
    listenAs(a, 'A', 'norematch/.*', log)
    await sleep(SETTLE)
    sub.event.subscribe('norematch/1', () => {})
    await until(() => offersOf(log, 'norematch/1').length === 1, 'offered once')
    await sleep(2500)
    assert.deepEqual(offersOf(log, 'norematch/1'), ['A'])
  })
})

// Listeners on two different brokers (one node and two brokers in cluster mode;
// the two brokers of cluster.sh in haproxy mode).
describe(`listeners on two brokers (${MODE})`, { skip: MODE === 'standalone' && 'needs two brokers' }, () => {
  let server, b2, urls
  before(async () => {
    server = await startServer({ nodeExtra: ORDERED })
    if (MODE === 'haproxy') {
      urls = readFileSync(join(server.dataDir, 'brokers'), 'utf8').trim().split('\n')
    } else {
      const m = server.procs.node.stderr.match(/node-listening request=(\S+) delivery=(\S+)/)
      b2 = new Proc('broker2', ['broker', '--host', '127.0.0.1', '--port', '0', '--node', `${m[1]},${m[2]}`])
      urls = [server.url, `ws://127.0.0.1:${(await b2.waitFor(/broker-listening port=(\d+)/))[1]}/deepstream`]
    }
  })
  after(async () => {
    await closeAll()
    if (b2) {
      const { code } = await b2.stop()
      assertNoSanitizerReport(b2.stderr, 'broker2')
      assert.equal(code, 0, `broker2 exited with ${code}:\n${b2.stderr}`)
    }
    await server.stop()
  })
  afterEach(closeAll)

  test('registration order holds across brokers', { timeout: 30000 }, async () => {
    const a = await connect(urls[0])
    const b = await connect(urls[1])
    const c = await connect(urls[0])
    const subs = [await connect(urls[0]), await connect(urls[1])]
    const log = []
    listenAs(a, 'A', 'xorder/.*', log)
    await sleep(SETTLE)
    listenAs(b, 'B', 'xorder/.*', log)
    await sleep(SETTLE)
    listenAs(c, 'C', 'xorder/.*', log)
    await sleep(SETTLE)
    for (let i = 0; i < 8; i++) {
      const name = `xorder/${i}`
      subs[i % 2].event.subscribe(name, () => {})
      await until(() => offersOf(log, name).length >= 3, `${name} offered to every listener`)
    }
    for (let i = 0; i < 8; i++) {
      const seq = offersOf(log, `xorder/${i}`)
      assert.ok(rounds(seq, ['A', 'B', 'C']), `xorder/${i} offered A, B, C: got ${seq}`)
    }
  })

  test('rematch across brokers: the listener on the other broker accepts on the rematch and provides', { timeout: 30000 }, async () => {
    const a = await connect(urls[0])
    const b = await connect(urls[1])
    const sub = await connect(urls[0])
    const log = []
    listenAs(a, 'A', 'xrematch/.*', log)
    await sleep(SETTLE)
    listenAs(b, 'B', 'xrematch/.*', log, (name, nth) => nth >= 2 ? 'accept' : 'reject')
    await sleep(SETTLE)
    const got = []
    sub.event.subscribe('xrematch/1', d => got.push(d))
    await until(() => offersOf(log, 'xrematch/1').length === 4, 'offered again after both declined', 6000)
    assert.deepEqual(offersOf(log, 'xrematch/1'), ['A', 'B', 'A', 'B'])
    await sleep(SETTLE)
    b.event.emit('xrematch/1', 'from B')
    await until(() => got.includes('from B'), 'the provider\'s event reaches the subscriber on the other broker')
    await sleep(2500)
    assert.deepEqual(offersOf(log, 'xrematch/1'), ['A', 'B', 'A', 'B'], 'provided: no more offers')
  })
})
