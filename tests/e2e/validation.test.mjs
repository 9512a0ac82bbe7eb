// validation.test.mjs - writes validated by backend services (issue 17, README:
// Validating writes). Validators are real `eddy ctl validate` processes
// running tests/e2e/fixtures/validator.sh, which logs every request it gets
// and accepts, refuses (a negative "qty"), replaces ("fix": true) or hangs
// ("slow": true). Checked with the official client: what the writer and
// other subscribers see for each verdict (the writer's copy corrected after a
// refusal), a path patch validated as the whole document, writes from
// setData, the HTTP API, a backend and a changeset, deletes, several validators sharing
// the load, a validator killed with a validation pending, the timeout with
// both policies, validation.required with nobody validating, and the order of
// one record's versions under concurrent writers.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { execFileSync } from 'node:child_process'
import { startServer, runEddy, Proc, sleep, until, MODE, BIN, linkEnv, assertNoSanitizerReport } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const SCRIPT = resolve('tests/e2e/fixtures/validator.sh')
let n = 0
const unique = prefix => `${prefix}/${process.pid}-${++n}`
const denied = err => err === 'MESSAGE_DENIED' || err?.message === 'MESSAGE_DENIED' || String(err).includes('MESSAGE_DENIED')

// The requests a validator's log holds, parsed.
function requests (log) {
  if (!existsSync(log)) return []
  return readFileSync(log, 'utf8').split('\n').filter(Boolean).map(l => JSON.parse(l))
}

// A node's request address, for eddy ctl.
const nodeOf = server => server.stderr().match(/(?:backends|node)-listening request=(\S+)/)[1]

// Starts a validator for pattern logging to log (it answers "slow" writes after
// slow seconds); resolves once every node has it.
async function validator (server, pattern, log, slow = 2) {
  const p = new Proc('validator', ['ctl', '--cluster', nodeOf(server), '--timeout', '10000', 'validate', pattern, '--', SCRIPT, log],
    { SLOW: String(slow) })
  await p.waitFor(/validating/)
  return p
}

// POST /api on the server's port.
async function api (server, body) {
  const res = await fetch(server.url.replace(/^ws/, 'http').replace(/\/deepstream$/, '/api'),
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ body }) })
  return res.json()
}

describe(`validation by backends (${MODE})`, () => {
  let dir, server, v1, v2
  const log1 = () => join(dir, 'v1.log')
  const log2 = () => join(dir, 'v2.log')
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-validation-'))
    const flags = ['--validation-timeout', '1500', '--validation-required', 'req/.*',
      '--validation-accept-on-timeout', 'lax/.*']
    server = await startServer({ extra: flags, nodeExtra: flags })
    v1 = await validator(server, '^(orders|lax)/', log1())
  })
  after(async () => {
    for (const v of [v1, v2]) {
      if (!v) continue
      const { code } = await v.stop()
      assertNoSanitizerReport(v.stderr, 'eddy ctl validate')
      assert.equal(code, 0, v.stderr)
    }
    if (server) await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('accept, refuse with a reason, replace: what the writer and other subscribers see', async () => {
    const name = unique('orders')
    const a = await connect(server.url, { username: 'ann' })
    const b = await connect(server.url, { username: 'bob' })
    const seen = []
    const rb = b.record.getRecord(name)
    rb.subscribe(d => seen.push(JSON.stringify(d)))
    await rb.whenReady()
    const ra = a.record.getRecord(name)
    await ra.whenReady()
    await ra.setWithAck({ qty: 2 })
    await until(() => seen.includes('{"qty":2}'), 'the accepted write reaches the other subscriber')
    // refused: the promise rejects, the writer's copy is the server's again, nobody else saw it
    await assert.rejects(ra.setWithAck({ qty: -1 }), denied)
    await until(() => JSON.stringify(ra.get()) === '{"qty":2}', `the writer's copy corrected (${JSON.stringify(ra.get())})`)
    // replaced: everyone, the writer included, ends with the validator's document
    ra.set({ fix: true, qty: 3 })
    await until(() => JSON.stringify(ra.get()) === '{"fixed":true}' && seen.includes('{"fixed":true}'), 'the replacement everywhere')
    assert.ok(!seen.some(s => s.includes('-1') || s.includes('"fix":true')), `b saw ${seen}`)
    assert.equal(await b.record.head(name), 2, 'two writes were applied')
    // what the validator was told: writer, user, versions, both documents
    const got = requests(log1()).filter(r => r.name === name)
    assert.equal(got.length, 3)
    assert.deepEqual(got[1], {
      name, action: 'update', version: 1, next: 2, current: { qty: 2 }, proposed: { qty: -1 }, patch: null,
      writer: 'client', user: 'ann', serverData: null
    })
  })

  test('a plain set refused: the record\'s error event, and its copy corrected', async () => {
    const name = unique('orders')
    const a = await connect(server.url, { username: 'ann' })
    const errors = []
    const r = a.record.getRecord(name)
    r.on('error', (action, originalAction) => errors.push([action, originalAction]))
    await r.whenReady()
    await r.setWithAck({ qty: 5, note: 'x' })
    r.set('qty', -3)
    await until(() => errors.some(e => e[0] === 'MESSAGE_DENIED' && e[1] === 'PATCH'), 'MESSAGE_DENIED as an error event')
    await until(() => r.get('qty') === 5, 'the copy corrected')
    // the path patch went to the validator as the whole document, with the patch beside it
    const req = requests(log1()).filter(x => x.name === name).pop()
    assert.equal(req.action, 'patch')
    assert.deepEqual(req.proposed, { qty: -3, note: 'x' })
    assert.deepEqual(req.patch, { path: 'qty', value: -3 })
  })

  test('setData (no local copy), the HTTP API, a backend and deletes are validated too', async () => {
    const name = unique('orders')
    const a = await connect(server.url, { username: 'ann' })
    await assert.rejects(a.record.setDataWithAck(name, { qty: -1 }), denied)
    await a.record.setDataWithAck(name, { qty: 1, deny: true })
    const http = await api(server, [{ topic: 'record', action: 'write', recordName: name, data: { qty: -9 } }])
    assert.equal(http.result, 'FAILURE')
    assert.equal(http.body[0].success, false)
    assert.equal(http.body[0].reason, 'negative quantity')
    const ctl = runEddy(['ctl', '--cluster', nodeOf(server), 'set', name, '{"qty":-4}'])
    assert.equal(ctl.code, 6, ctl.stderr)
    assert.match(ctl.stderr, /refused by a validator: negative quantity/)
    assert.equal(runEddy(['ctl', '--cluster', nodeOf(server), 'set', name, 'qty', '7']).code, 0)
    // a delete is validated (this validator keeps records marked "deny")
    const r = a.record.getRecord(name)
    await r.whenReady()
    await assert.rejects(r.delete(), denied)
    assert.deepEqual(await a.record.snapshot(name), { qty: 7, deny: true })
    const writers = requests(log1()).filter(x => x.name === name).map(x => x.writer)
    assert.deepEqual(writers, ['client', 'client', 'client', 'backend', 'backend', 'client'])
  })

  test('a changeset: each member validated; one refused fails it whole, a replacement is applied in its place', async () => {
    const tag = `{${process.pid}-${++n}}`
    const [x, y] = [`orders/${tag}/x`, `orders/${tag}/y`]
    const txn = ops => {
      const args = ['ctl', '--cluster', nodeOf(server), 'txn']
      try {
        return { code: 0, out: JSON.parse(execFileSync(BIN, args, { input: JSON.stringify(ops), encoding: 'utf8', env: { ...process.env, ...linkEnv(args) } })) }
      } catch (err) {
        return { code: err.status, out: JSON.parse(err.stdout) }
      }
    }
    const refused = txn([{ op: 'set', name: x, data: { qty: 1 } }, { op: 'set', name: y, data: { qty: -1 } }])
    assert.equal(refused.code, 6)
    assert.equal(refused.out.ok, false)
    assert.equal(refused.out.failed, 1)
    assert.equal(refused.out.results[1].reason, 'negative quantity')
    const a = await connect(server.url, { username: 'ann' })
    assert.equal(await a.record.head(x), -1, 'nothing of it was applied')
    const replaced = txn([{ op: 'set', name: x, data: { qty: 2 } }, { op: 'set', name: y, data: { fix: true } }])
    assert.equal(replaced.code, 0, JSON.stringify(replaced.out))
    assert.deepEqual(await a.record.snapshot(x), { qty: 2 })
    assert.deepEqual(await a.record.snapshot(y), { fixed: true })
    const asked = requests(log1()).filter(r => r.name === x || r.name === y)
    assert.equal(asked.length, 4, 'every member of both went to the validator')
    assert.ok(asked.every(r => r.writer === 'backend'))
  })

  test('names no validator and no rule match are written unvalidated; validation.required refuses them', async () => {
    const a = await connect(server.url, { username: 'ann' })
    await a.record.setDataWithAck(unique('free'), { qty: -1 })
    await assert.rejects(a.record.setDataWithAck(unique('req'), { qty: 1 }), denied)
  })

  test('no answer in time: the next validator, then refused, or accepted for validation.acceptOnTimeout', async () => {
    const a = await connect(server.url, { username: 'ann' })
    let started = Date.now()
    await assert.rejects(a.record.setDataWithAck(unique('orders'), { slow: true }), denied)
    assert.ok(Date.now() - started >= 1400, `refused after ${Date.now() - started} ms`)
    started = Date.now()
    const lax = unique('lax')
    await a.record.setDataWithAck(lax, { slow: true })
    assert.ok(Date.now() - started >= 1400, `accepted after ${Date.now() - started} ms`)
    assert.deepEqual(await a.record.snapshot(lax), { slow: true })
    // the validator answers one request at a time: let it finish the slow ones before the next test
    await until(() => requests(log1()).some(r => r.name === lax), 'the validator took the second')
    await sleep(2200)
  })

  test('several validators share the load', async () => {
    v2 = await validator(server, '^(orders|lax)/', log2())
    const a = await connect(server.url, { username: 'ann' })
    const before1 = requests(log1()).length
    const names = Array.from({ length: 12 }, () => unique('orders'))
    await Promise.all(names.map(nm => a.record.setDataWithAck(nm, { qty: 1 })))
    const second = requests(log2()).filter(r => names.includes(r.name)).length
    const first = requests(log1()).length - before1
    assert.equal(first + second, 12)
    assert.ok(first >= 3 && second >= 3, `split ${first}/${second}`)
  })

  test('one record\'s writes are validated and applied in order under concurrent writers', async () => {
    const name = unique('orders')
    const clients = await Promise.all([1, 2, 3].map(i => connect(server.url, { username: `w${i}` })))
    await Promise.all(clients.flatMap((c, i) => Array.from({ length: 8 }, (_, k) => c.record.setDataWithAck(name, { qty: 1, w: i, k }))))
    assert.equal(await clients[0].record.head(name), 24)
    const nexts = [...requests(log1()), ...requests(log2())].filter(r => r.name === name).map(r => r.next).sort((x, y) => x - y)
    assert.deepEqual(nexts, Array.from({ length: 24 }, (_, i) => i + 1), 'each version validated once, none skipped')
  })
})

describe(`validation: a validator that goes away (${MODE})`, () => {
  let dir, server
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-validation-'))
    const flags = ['--validation-timeout', '20000', '--broker-timeout', '2000']
    server = await startServer({ extra: flags, nodeExtra: flags })
  })
  after(async () => {
    if (server) await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('its pending validations move to another validator at once, not after validation.timeout', async () => {
    // the first validator hangs on "slow"; the second is started after it, so the node asks the first
    const hung = await validator(server, '^orders/', join(dir, 'hung.log'), 60)
    const a = await connect(server.url, { username: 'ann' })
    const name = unique('orders')
    const write = a.record.setDataWithAck(name, { qty: 1, slow: true, once: true })
    await until(() => requests(join(dir, 'hung.log')).some(r => r.name === name), 'the first validator has it')
    const other = await validator(server, '^orders/', join(dir, 'other.log'), 60)
    const started = Date.now()
    await hung.stop('SIGKILL')
    // the other one hangs too on "slow": so it must have been asked, and the write is still pending
    await until(() => requests(join(dir, 'other.log')).some(r => r.name === name), 'moved to the other validator', 10000)
    assert.ok(Date.now() - started < 15000, 'moved before validation.timeout')
    await other.stop('SIGKILL')
    await assert.rejects(write, denied) // nobody left: refused (fail closed)
    assert.equal(await a.record.head(name), -1, 'nothing was written')
  })
})

describe(`validation.onTimeout: accept (${MODE})`, () => {
  let server
  before(async () => {
    const flags = ['--validation-on-timeout', 'accept', '--validation-required', 'must/.*']
    server = await startServer({ extra: flags, nodeExtra: flags })
  })
  after(async () => { if (server) await server.stop() })
  afterEach(closeAll)

  test('a required name with no validator connected is written unvalidated', async () => {
    const a = await connect(server.url, { username: 'ann' })
    const name = unique('must')
    await a.record.setDataWithAck(name, { qty: -1 })
    assert.deepEqual(await a.record.snapshot(name), { qty: -1 })
  })
})
