// presence.test.mjs - presence with the official client: join and leave once
// per user however many connections it has, never to the user itself,
// per-user and everyone subscriptions, getAll with and without names; and the
// raw protocol answers.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC } from './lib/client.mjs'
import { createRequire } from 'node:module'
import { serverPerSuite } from './lib/suite.mjs'

const pb = createRequire(import.meta.url)('@deepstream/protobuf/dist/generated/protobuf.js')
const P = Object.fromEntries(Object.entries(pb.PRESENCE_ACTION).map(([k, v]) => [k.replace(/^PRESENCE_/, ''), v]))
const SETTLE = 400

describe(`presence (${MODE})`, () => {
  const server = serverPerSuite()

  test('join and leave once per user, to everyone-watchers and user-watchers, not to the user', async () => {
    const watcher = await connect(server.url, { username: 'watcher' })
    const all = []
    const bobOnly = []
    watcher.presence.subscribe((user, online) => all.push([user, online]))
    watcher.presence.subscribe('bob', (user, online) => bobOnly.push([user, online]))
    await sleep(SETTLE)
    const bob1 = await connect(server.url, { username: 'bob' })
    const bobSeen = []
    bob1.presence.subscribe((user, online) => bobSeen.push([user, online]))
    await sleep(SETTLE)
    const carol = await connect(server.url, { username: 'carol' })
    const bob2 = await connect(server.url, { username: 'bob' }) // a second connection: no news
    await until(() => all.length === 2, 'bob and carol joined')
    assert.deepEqual(all, [['bob', true], ['carol', true]])
    assert.deepEqual(bobOnly, [['bob', true]])
    bob1.close()
    await sleep(SETTLE)
    assert.equal(all.length, 2, 'bob is still online on his second connection')
    bob2.close()
    await until(() => all.length === 3, 'bob left')
    assert.deepEqual(all[2], ['bob', false])
    assert.deepEqual(bobOnly, [['bob', true], ['bob', false]])
    carol.close()
    await until(() => all.length === 4, 'carol left')
    assert.ok(bobSeen.every(([user]) => user !== 'bob'), 'bob never hears about himself')
  })

  test('getAll lists online users except the requester; getAll(names) answers each', async () => {
    const a = await connect(server.url, { username: 'qa' })
    assert.deepEqual(await a.presence.getAll(), [])
    const others = await Promise.all(['qb', 'qc', 'qb'].map(u => connect(server.url, { username: u })))
    // with several brokers a login reaches the user's owning node a moment after login() resolves
    await until(async () => (await a.presence.getAll()).length === 2, 'both logins known')
    assert.deepEqual((await a.presence.getAll()).sort(), ['qb', 'qc'])
    assert.deepEqual(await a.presence.getAll(['qb', 'qc', 'nobody', 'qa']), { qb: true, qc: true, nobody: false, qa: true })
    others[1].close()
    await until(async () => (await a.presence.getAll()).length === 1, 'qc gone')
    assert.deepEqual(await a.presence.getAll(), ['qb'])
  })

  test('unsubscribe stops notifications', async () => {
    const w = await connect(server.url, { username: 'w2' })
    const seen = []
    const cb = (user, online) => seen.push(user)
    w.presence.subscribe('dan', cb)
    await sleep(SETTLE)
    const dan = await connect(server.url, { username: 'dan' })
    await until(() => seen.length === 1, 'dan joined')
    w.presence.unsubscribe('dan')
    await sleep(SETTLE)
    dan.close()
    await sleep(SETTLE)
    assert.deepEqual(seen, ['dan'])
  })
})

describe(`presence, raw protocol (${MODE})`, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server.stop() })

  test('acks, MULTIPLE_SUBSCRIPTIONS for a second SUBSCRIBE_ALL, empty QUERY_ALL_RESPONSE has no names', async () => {
    const r = await (await Raw.open(server.url)).login({ username: 'raw' })
    const pres = pred => r.next(m => m.topic === TOPIC.PRESENCE && pred(m))
    r.send(TOPIC.PRESENCE, { action: P.SUBSCRIBE_ALL })
    await pres(m => m.action === P.SUBSCRIBE_ALL && m.isAck)
    r.send(TOPIC.PRESENCE, { action: P.SUBSCRIBE_ALL })
    const dup = await pres(m => m.action === P.MULTIPLE_SUBSCRIPTIONS)
    assert.equal(dup.name, '%_EVERYONE_%')
    await pres(m => m.action === P.SUBSCRIBE_ALL && m.isAck)
    r.send(TOPIC.PRESENCE, { action: P.SUBSCRIBE, names: ['x'], correlationId: '4' })
    await pres(m => m.action === P.SUBSCRIBE && m.isAck && m.correlationId === '4')
    r.send(TOPIC.PRESENCE, { action: P.QUERY_ALL })
    const all = await pres(m => m.action === P.QUERY_ALL_RESPONSE)
    assert.ok(!('names' in all) || all.names.length === 0)
    r.send(TOPIC.PRESENCE, { action: P.QUERY, names: ['raw', 'y'], correlationId: '9' })
    const q = await pres(m => m.action === P.QUERY_RESPONSE)
    assert.equal(q.correlationId, '9')
    assert.deepEqual(JSON.parse(q.data), { raw: true, y: false })
    r.close()
  })
})
