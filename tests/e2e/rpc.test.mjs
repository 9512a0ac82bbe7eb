// rpc.test.mjs - RPC with the official client: every JSON type, provider errors,
// reject and reroute, NO_RPC_PROVIDER, both server-side timeouts, balancing,
// unprovide, providers disconnecting with calls in flight, hundreds of
// concurrent calls, requestorName/Data; and the raw protocol answers.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, runEddy, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC } from './lib/client.mjs'
import { createRequire } from 'node:module'
import { serverPerSuite } from './lib/suite.mjs'

const pb = createRequire(import.meta.url)('@deepstream/protobuf/dist/generated/protobuf.js')
const RPC = Object.fromEntries(Object.entries(pb.RPC_ACTION).map(([k, v]) => [k.replace('RPC_', ''), v]))
const SETTLE = 400

describe(`rpc (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--rpc-ack-timeout', '500', '--rpc-response-timeout', '1000'] })

  test('request and response with data of every JSON type', async () => {
    const p = await connect(server.url)
    const c = await connect(server.url)
    p.rpc.provide('echo', (data, res) => res.send(data))
    await sleep(SETTLE)
    for (const v of [{ a: [1, { b: null }] }, [1, 'two', false], 'text ✓', 42, 4.5, true, false, null]) {
      assert.deepEqual(await c.rpc.make('echo', v), v)
    }
    assert.equal(await c.rpc.make('echo', undefined), undefined)
  })

  test('provider error rejects the call with its data', async () => {
    const p = await connect(server.url)
    const c = await connect(server.url)
    p.rpc.provide('fail', (data, res) => res.error('something bad'))
    await sleep(SETTLE)
    await assert.rejects(c.rpc.make('fail', 1), e => e === 'something bad')
  })

  test('NO_RPC_PROVIDER when nobody provides, and after unprovide', async () => {
    const p = await connect(server.url)
    const c = await connect(server.url)
    await assert.rejects(c.rpc.make('nobody/provides', 1), e => e === 'NO_RPC_PROVIDER')
    p.rpc.provide('brief', (d, res) => res.send('ok'))
    await sleep(SETTLE)
    assert.equal(await c.rpc.make('brief', 1), 'ok')
    p.rpc.unprovide('brief')
    await sleep(SETTLE)
    await assert.rejects(c.rpc.make('brief', 1), e => e === 'NO_RPC_PROVIDER')
  })

  test('a reject moves the call to another provider; when all reject the caller gets NO_RPC_PROVIDER', async () => {
    const rejecter = await connect(server.url)
    const acceptor = await connect(server.url)
    const c = await connect(server.url)
    let rejected = 0
    rejecter.rpc.provide('picky', (d, res) => { rejected++; res.reject() })
    acceptor.rpc.provide('picky', (d, res) => res.send('accepted'))
    await sleep(SETTLE)
    for (let i = 0; i < 6; i++) assert.equal(await c.rpc.make('picky', i), 'accepted')
    assert.ok(rejected >= 1, 'the rejecting provider was tried at least once')
    const r2 = await connect(server.url)
    const seen = []
    rejecter.rpc.provide('nobody-wants', (d, res) => { seen.push('a'); res.reject() })
    r2.rpc.provide('nobody-wants', (d, res) => { seen.push('b'); res.reject() })
    await sleep(SETTLE)
    await assert.rejects(c.rpc.make('nobody-wants', 1), e => e === 'NO_RPC_PROVIDER')
    assert.deepEqual(seen.sort(), ['a', 'b'], 'each provider was asked exactly once')
  })

  test('ACCEPT_TIMEOUT and RESPONSE_TIMEOUT come from the server', async () => {
    const p = await connect(server.url)
    const c = await connect(server.url)
    p.rpc.provide('never-accepts', (d, res) => { res.autoAccept = false })
    p.rpc.provide('never-answers', () => {})
    await sleep(SETTLE)
    let t = Date.now()
    await assert.rejects(c.rpc.make('never-accepts', 1), e => e === 'ACCEPT_TIMEOUT')
    assert.ok(Date.now() - t >= 450, `accept timeout after ${Date.now() - t} ms`)
    t = Date.now()
    await assert.rejects(c.rpc.make('never-answers', 1), e => e === 'RESPONSE_TIMEOUT')
    assert.ok(Date.now() - t >= 950, `response timeout after ${Date.now() - t} ms`)
  })

  test('calls are balanced across providers', async () => {
    const providers = await Promise.all([0, 1, 2].map(() => connect(server.url)))
    const c = await connect(server.url)
    const counts = [0, 0, 0]
    providers.forEach((p, i) => p.rpc.provide('balanced', (d, res) => { counts[i]++; res.send(i) }))
    await sleep(SETTLE)
    for (let i = 0; i < 60; i++) await c.rpc.make('balanced', i)
    for (const n of counts) assert.ok(n >= 15, `every provider served a share: ${counts}`)
  })

  test('a provider disconnecting: unaccepted calls move, accepted ones fail, none hang', async () => {
    const leaving = await connect(server.url)
    const staying = await connect(server.url)
    const c = await connect(server.url)
    const held = []
    leaving.rpc.provide('fragile', (d, res) => { res.autoAccept = false; held.push(res) })
    await sleep(SETTLE)
    const unaccepted = c.rpc.make('fragile', 1)
    await until(() => held.length === 1, 'leaving provider holds the call')
    staying.rpc.provide('fragile', (d, res) => res.send('rescued'))
    await sleep(SETTLE)
    leaving.close()
    assert.equal(await unaccepted, 'rescued')

    const accepting = await connect(server.url)
    const got = []
    accepting.rpc.provide('accepted-then-gone', (d, res) => { res.accept(); got.push(res) })
    await sleep(SETTLE)
    const accepted = c.rpc.make('accepted-then-gone', 1)
    await until(() => got.length === 1, 'accepted')
    await sleep(100)
    accepting.close()
    await assert.rejects(accepted, e => e === 'RPC_PROVIDER_GONE')
  })

  test('three hundred concurrent calls over two providers', async () => {
    const p1 = await connect(server.url)
    const p2 = await connect(server.url)
    const callers = await Promise.all([0, 1, 2].map(() => connect(server.url)))
    p1.rpc.provide('sum', (d, res) => res.send(d.a + d.b))
    p2.rpc.provide('sum', (d, res) => setTimeout(() => res.send(d.a + d.b), 5))
    await sleep(SETTLE)
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => callers[i % 3].rpc.make('sum', { a: i, b: 1 })))
    results.forEach((v, i) => assert.equal(v, i + 1))
  })
})

describe(`rpc requestor (${MODE})`, () => {
  let server, dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-users-'))
    const hash = runEddy(['hash', 'pw']).stdout.trim()
    writeFileSync(join(dir, 'users.yml'), `carol:\n  password: "${hash}"\n  serverData: { role: admin }\n`)
    server = await startServer({ extra: ['--auth', 'file', '--users', join(dir, 'users.yml'), '--rpc-requestor-name', 'true', '--rpc-requestor-data', 'true'] })
  })
  after(async () => {
    await closeAll()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('providers see requestorName and requestorData when configured', async () => {
    const p = await connect(server.url, { username: 'carol', password: 'pw' })
    const c = await connect(server.url, { username: 'carol', password: 'pw' })
    p.rpc.provide('who', (data, res, requestor) => res.send(requestor))
    await sleep(SETTLE)
    const got = await c.rpc.make('who', {})
    assert.equal(got.requestorName, 'carol')
    const data = typeof got.requestorData === 'string' ? JSON.parse(got.requestorData) : got.requestorData
    assert.deepEqual(data, { role: 'admin' })
  })
})

describe(`rpc, raw protocol (${MODE})`, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server.stop() })

  const rpc = (r, pred) => r.next(m => m.topic === TOPIC.RPC && pred(m))

  test('duplicate PROVIDE gets MULTIPLE_PROVIDERS; late answers get INVALID_RPC_CORRELATION_ID; double ACCEPT gets MULTIPLE_ACCEPT', async () => {
    const p = await (await Raw.open(server.url)).login()
    p.send(TOPIC.RPC, { action: RPC.PROVIDE, names: ['dupe'], correlationId: '1' })
    await rpc(p, m => m.action === RPC.PROVIDE && m.isAck && m.correlationId === '1')
    p.send(TOPIC.RPC, { action: RPC.PROVIDE, names: ['dupe'], correlationId: '2' })
    const dup = await rpc(p, m => m.action === RPC.MULTIPLE_PROVIDERS)
    assert.equal(dup.name, 'dupe')
    await rpc(p, m => m.action === RPC.PROVIDE && m.isAck && m.correlationId === '2')
    p.send(TOPIC.RPC, { action: RPC.RESPONSE, name: 'dupe', correlationId: 'nope', data: '1' })
    const inv = await rpc(p, m => m.action === RPC.INVALID_RPC_CORRELATION_ID)
    assert.equal(inv.correlationId, 'nope')
    assert.equal(inv.isError, true)

    const c = await (await Raw.open(server.url)).login()
    c.send(TOPIC.RPC, { action: RPC.REQUEST, name: 'dupe', correlationId: 'call-1', data: '{"x":1}' })
    const req = await rpc(p, m => m.action === RPC.REQUEST)
    assert.equal(req.data, '{"x":1}')
    p.send(TOPIC.RPC, { action: RPC.ACCEPT, name: 'dupe', correlationId: req.correlationId })
    p.send(TOPIC.RPC, { action: RPC.ACCEPT, name: 'dupe', correlationId: req.correlationId })
    await rpc(p, m => m.action === RPC.MULTIPLE_ACCEPT)
    const acc = await rpc(c, m => m.action === RPC.ACCEPT)
    assert.equal(acc.correlationId, 'call-1', 'the caller sees its own correlation id')
    p.send(TOPIC.RPC, { action: RPC.RESPONSE, name: 'dupe', correlationId: req.correlationId, data: '"first"' })
    p.send(TOPIC.RPC, { action: RPC.RESPONSE, name: 'dupe', correlationId: req.correlationId, data: '"second"' })
    const res = await rpc(c, m => m.action === RPC.RESPONSE)
    assert.equal(res.data, '"first"')
    await rpc(p, m => m.action === RPC.INVALID_RPC_CORRELATION_ID)
    await sleep(200)
    assert.equal(c.messages.filter(m => m.topic === TOPIC.RPC).length, 0, 'the second response went nowhere')
    // unprovide of a name not provided: NOT_PROVIDED
    p.send(TOPIC.RPC, { action: RPC.UNPROVIDE, name: 'never' })
    await rpc(p, m => m.action === RPC.NOT_PROVIDED)
    p.close()
    c.close()
  })
})
