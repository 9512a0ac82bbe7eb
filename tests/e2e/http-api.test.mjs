// http-api.test.mjs - deepstream's HTTP API (POST /api, /api/auth) with
// node's fetch, every effect checked by official websocket clients: emits
// received, records written and read, RPCs answered by a websocket provider,
// presence of a logged-in client; version conflicts, delete then read, a
// batch of 100 operations run in order, tokens from /api/auth, permission
// denials per operation, and bad input (not JSON, a 10 MiB body, 10,000
// operations, an unknown action, a wrong content type) answered with
// deepstream's exact errors and changing nothing. Request deadlines, the
// bound on requests in flight, CORS.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import http from 'node:http'
import { join } from 'node:path'
import { startServer, runEddy, sleep, until, MODE, Proc } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

const SETTLE = 300
const SECRET = 'a-test-secret-that-is-long-enough-for-eddy'

// POSTs json (an object, or text as it is) to path; { status, text, json, headers }.
async function post (server, path, json, headers = {}) {
  const res = await fetch(`http://127.0.0.1:${server.port}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof json === 'string' ? json : JSON.stringify(json)
  })
  const text = await res.text()
  let parsed = null
  try { parsed = JSON.parse(text) } catch {}
  return { status: res.status, text, json: parsed, headers: res.headers }
}

const api = (server, body, extra = {}) => post(server, '/api', { ...extra, body })
const emit = (eventName, data) => ({ topic: 'event', action: 'emit', eventName, data })
const read = recordName => ({ topic: 'record', action: 'read', recordName })
const head = recordName => ({ topic: 'record', action: 'head', recordName })
const write = (recordName, data, more = {}) => ({ topic: 'record', action: 'write', recordName, data, ...more })
const del = recordName => ({ topic: 'record', action: 'delete', recordName })
const unique = p => `${p}-${Math.random().toString(36).slice(2, 10)}`

describe(`HTTP API: every operation (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--rpc-response-timeout', '2000'] })

  test('an event emit reaches a websocket subscriber', async () => {
    const ws = await connect(server.url)
    const got = []
    ws.event.subscribe('http/news', d => got.push(d))
    await sleep(SETTLE)
    const r = await api(server, [emit('http/news', { n: 1 }), emit('http/news', 'two')])
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, { result: 'SUCCESS', body: [{ success: true }, { success: true }] })
    await until(() => got.length === 2, 'both events')
    assert.deepEqual(got, [{ n: 1 }, 'two'])
  })

  test('a record written over HTTP updates a websocket subscriber; read and head answer it', async () => {
    const name = unique('http/rec')
    const ws = await connect(server.url)
    const rec = ws.record.getRecord(name)
    await rec.whenReady()
    const seen = []
    rec.subscribe(d => seen.push(d))
    const w = await api(server, [write(name, { a: 1, list: [1, 2] })])
    assert.deepEqual(w.json, { result: 'SUCCESS', body: [{ success: true, version: 1 }] })
    await until(() => seen.length > 0 && seen.at(-1).a === 1, 'the update')
    const r = await api(server, [read(name), head(name)])
    assert.deepEqual(r.json.body, [{ success: true, version: 1, data: { a: 1, list: [1, 2] } }, { success: true, version: 1 }])
    // a write by path, with the version that follows
    const p = await api(server, [write(name, 7, { path: 'list[1]', version: 2 })])
    assert.deepEqual(p.json.body, [{ success: true, version: 2 }])
    await until(() => rec.version === 2 && rec.get('list')[1] === 7, 'the patch')
    // a websocket write is seen by an HTTP read
    await rec.setWithAck('b', 'from ws')
    const again = await api(server, [read(name)])
    assert.deepEqual(again.json.body[0], { success: true, version: 3, data: { a: 1, list: [1, 7], b: 'from ws' } })
  })

  test('a write with a version that exists, or one that skips ahead, fails with the current version and data', async () => {
    const name = unique('http/conflict')
    await api(server, [write(name, { v: 1 })])
    const exists = await api(server, [write(name, { v: 'stale' }, { version: 1 })])
    assert.equal(exists.status, 200)
    assert.deepEqual(exists.json, {
      result: 'FAILURE',
      body: [{ success: false, errorTopic: 'record', errorEvent: 102, error: `Record update failed. Version 1 exists for record "${name}".`, currentVersion: 1, currentData: { v: 1 } }]
    })
    const ahead = await api(server, [write(name, { v: 'ahead' }, { version: 9 })])
    assert.equal(ahead.json.body[0].errorEvent, 108)
    assert.equal(ahead.json.body[0].currentVersion, 1)
    const r = await api(server, [read(name)])
    assert.deepEqual(r.json.body[0], { success: true, version: 1, data: { v: 1 } })
  })

  test('delete, then read: the record is gone (errorEvent 107) and its subscriber hears it', async () => {
    const name = unique('http/del')
    await api(server, [write(name, { x: 1 })])
    const ws = await connect(server.url)
    const rec = ws.record.getRecord(name)
    await rec.whenReady()
    let deleted = false
    rec.on('delete', () => { deleted = true })
    const r = await api(server, [del(name), read(name), head(name)])
    assert.deepEqual(r.json, {
      result: 'PARTIAL_SUCCESS',
      body: [
        { success: true },
        { success: false, errorTopic: 'record', errorEvent: 107, error: `Record read failed. Record "${name}" could not be found.` },
        { success: true, version: -1 }
      ]
    })
    await until(() => deleted, 'the delete event')
  })

  test('lists: write, read, delete', async () => {
    const name = unique('http/list')
    const r = await api(server, [
      { topic: 'list', action: 'write', listName: name, data: ['a', 'b'] },
      { topic: 'list', action: 'read', listName: name },
      { topic: 'list', action: 'delete', listName: name },
      { topic: 'list', action: 'read', listName: name }
    ])
    assert.equal(r.json.result, 'PARTIAL_SUCCESS')
    assert.deepEqual(r.json.body.slice(0, 3), [{ success: true, version: 1 }, { success: true, version: 1, data: ['a', 'b'] }, { success: true }])
    assert.equal(r.json.body[3].errorEvent, 107)
    const ws = await connect(server.url)
    const list = ws.record.getList(unique('http/list2'))
    await list.whenReady()
    list.setEntries(['x'])
    await until(async () => (await api(server, [{ topic: 'list', action: 'read', listName: list.name }])).json.body[0].success, 'list written')
    const got = await api(server, [{ topic: 'list', action: 'read', listName: list.name }])
    assert.deepEqual(got.json.body[0].data, ['x'])
  })

  test('notify: records changed in the storage behind eddy', async () => {
    const r = await api(server, [{ topic: 'record', action: 'notify', recordNames: [unique('http/n1'), unique('http/n2')] }])
    assert.deepEqual(r.json, { result: 'SUCCESS', body: [{ success: true }] })
  })

  test('RPC: answered by a websocket provider, its error, and no provider', async () => {
    const p = await connect(server.url)
    p.rpc.provide('http/double', (data, res) => res.send(data * 2))
    p.rpc.provide('http/fail', (data, res) => res.error('no way'))
    await sleep(SETTLE)
    const r = await api(server, [
      { topic: 'rpc', action: 'make', rpcName: 'http/double', data: 21 },
      { topic: 'rpc', action: 'make', rpcName: 'http/fail', data: 1 },
      { topic: 'rpc', action: 'make', rpcName: 'http/nobody' }
    ])
    assert.deepEqual(r.json, {
      result: 'PARTIAL_SUCCESS',
      body: [
        { success: true, data: 42 },
        { success: false, errorTopic: 'rpc', error: 'no way' },
        { success: false, errorTopic: 'rpc', errorEvent: 100, error: 'No provider was available to handle the RPC "http/nobody".' }
      ]
    })
  })

  test('backends: an RPC answered by `eddy ctl provide`, records shared with `eddy ctl`', { skip: MODE === 'haproxy' && 'the backend address is cluster.sh\'s' }, async () => {
    const cluster = server.stderr().match(/(?:backends|node)-listening request=(\S+)/)[1]
    const provider = new Proc('provider', ['ctl', '--cluster', cluster, 'provide', 'http/upper', '--', 'tr', 'a-z', 'A-Z'])
    try {
      const call = () => api(server, [{ topic: 'rpc', action: 'make', rpcName: 'http/upper', data: 'shout' }])
      const r = await until(async () => { const x = await call(); return x.json.result === 'SUCCESS' && x }, 'the backend provider', 10000)
      assert.deepEqual(r.json.body, [{ success: true, data: 'SHOUT' }])
    } finally {
      await provider.stop()
    }
    const name = unique('http/ctl')
    assert.equal(runEddy(['ctl', '--cluster', cluster, 'set', name, '{"from":"ctl"}']).code, 0)
    const got = await api(server, [read(name), write(name, { from: 'http' }, { version: 2 })])
    assert.deepEqual(got.json.body, [{ success: true, version: 1, data: { from: 'ctl' } }, { success: true, version: 2 }])
    const ctl = runEddy(['ctl', '--cluster', cluster, 'get', name])
    assert.deepEqual(JSON.parse(ctl.stdout), { from: 'http' })
  })

  test('presence: the users logged in over websockets, all or by name', async () => {
    const user = unique('http-user')
    await connect(server.url, { username: user })
    await sleep(SETTLE)
    const r = await api(server, [
      { topic: 'presence', action: 'query' },
      { topic: 'presence', action: 'query', names: [user, 'nobody-here'] }
    ])
    assert.equal(r.json.result, 'SUCCESS')
    assert.ok(r.json.body[0].users.includes(user), JSON.stringify(r.json))
    assert.deepEqual(r.json.body[1], { success: true, users: { [user]: true, 'nobody-here': false } })
  })

  test('a batch of 100 operations runs in order: each read sees the write before it', async () => {
    const name = unique('http/batch')
    const ws = await connect(server.url)
    const events = []
    ws.event.subscribe('http/batch', d => events.push(d))
    await sleep(SETTLE)
    const body = []
    for (let i = 0; i < 25; i++) body.push(write(name, { i }), read(name), emit('http/batch', i), head(name))
    const r = await api(server, body)
    assert.equal(r.json.result, 'SUCCESS')
    assert.equal(r.json.body.length, 100)
    for (let i = 0; i < 25; i++) {
      assert.deepEqual(r.json.body[4 * i], { success: true, version: i + 1 })
      assert.deepEqual(r.json.body[4 * i + 1], { success: true, version: i + 1, data: { i } })
      assert.deepEqual(r.json.body[4 * i + 3], { success: true, version: i + 1 })
    }
    await until(() => events.length === 25, 'every emit')
    assert.deepEqual(events, [...Array(25).keys()])
  })

  test('bad input is answered with deepstream\'s errors and changes nothing', async () => {
    const name = unique('http/bad')
    const cases = [
      ['not json', 400, /^Failed to parse body of request: /],
      [JSON.stringify({ body: [write(name, { a: 1 }), { topic: 'record', action: 'bogus', recordName: name }] }), 400,
        /^Failed to parse JIF object at index 1\. Reason: unknown action 'bogus' for topic 'record' \(read, head, delete, write, notify\)\r\n\r\n$/],
      [JSON.stringify({ body: [write(name, { a: 1 }), { topic: 'event', action: 'emit' }] }), 400,
        /^Failed to parse JIF object at index 1\. Reason: property 'eventName' is required for topic 'event'\r\n\r\n$/],
      [JSON.stringify({ body: [write(name, { a: 1 }), { topic: 'mystery', action: 'emit' }] }), 400, /index 1\. Reason: unknown topic 'mystery'/],
      [JSON.stringify({ body: [write(name, 5)] }), 400, /Reason: property '\.data' should be object,array/],
      [JSON.stringify({ body: [] }), 400, /^Invalid message: the "body" parameter must be a non-empty array of Objects\./],
      [JSON.stringify({}), 400, /^Invalid message: the "body" parameter must exist\./],
      [JSON.stringify({ token: 5, body: [emit('x')] }), 400, /^Invalid message: the "token" parameter must be a non-empty string/],
      [JSON.stringify({ authData: 'me', body: [emit('x')] }), 400, /^Invalid message: the "authData" parameter must be an object/]
    ]
    for (const [body, status, re] of cases) {
      const r = await post(server, '/api', body)
      assert.equal(r.status, status, body.slice(0, 80))
      assert.match(r.text, re, body.slice(0, 80))
      assert.match(r.headers.get('content-type'), /^text\/plain/)
    }
    // 10,000 operations: over http.maxOperations (1000)
    const many = await api(server, Array.from({ length: 10000 }, () => write(name, { a: 1 })))
    assert.equal(many.status, 400)
    assert.equal(many.text, 'Invalid message: the "body" parameter holds 10000 operations; at most 1000 are allowed (http.maxOperations).\r\n\r\n')
    // a 10 MiB body: over maxMessageSize (1 MiB)
    const big = await post(server, '/api', JSON.stringify({ body: [write(name, { pad: 'x'.repeat(10 << 20) })] }))
    assert.equal(big.status, 400)
    assert.equal(big.text, 'Failed to parse body of request: request entity too large\r\n\r\n')
    // not JSON by its content type
    const typed = await post(server, '/api', JSON.stringify({ body: [write(name, { a: 1 })] }), { 'Content-Type': 'text/plain' })
    assert.equal(typed.status, 415)
    assert.equal(typed.text, 'Invalid "Content-Type" header. Supported media types: "application/json"\r\n\r\n')
    // a body without a length (chunked): refused, as lws reads bodies by their length
    const chunked = await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: server.port, path: '/api', method: 'POST', headers: { 'Content-Type': 'application/json' } },
        res => { let t = ''; res.on('data', d => { t += d }); res.on('end', () => resolve({ status: res.statusCode, text: t })) })
      req.on('error', reject)
      req.write(JSON.stringify({ body: [write(name, { a: 1 })] }))
      req.end()
    })
    assert.equal(chunked.status, 411)
    assert.equal(chunked.text, 'Length Required: send the body with a Content-Length header.\r\n\r\n')
    // no body at all reads as {}
    const empty = await fetch(`http://127.0.0.1:${server.port}/api`, { method: 'POST', headers: { 'Content-Type': 'application/json' } })
    assert.equal(empty.status, 400)
    assert.equal(await empty.text(), 'Invalid message: the "body" parameter must exist.\r\n\r\n')
    // none of them wrote the record
    const r = await api(server, [head(name)])
    assert.deepEqual(r.json.body[0], { success: true, version: -1 })
    // the connection is still good for the next request, and the server for everyone
    const ok = await api(server, [write(name, { a: 2 }), read(name)])
    assert.deepEqual(ok.json.body[1], { success: true, version: 1, data: { a: 2 } })
  })

  test('GET, other methods, other paths, and the CORS preflight, as deepstream answers them', async () => {
    const base = `http://127.0.0.1:${server.port}`
    const get = await fetch(`${base}/api`)
    assert.equal(get.status, 400)
    assert.equal(await get.text(), 'Reading records via HTTP GET is not yet implemented, please use a post request instead.\r\n\r\n')
    assert.equal(get.headers.get('access-control-allow-origin'), '*')
    const nf = await post(server, '/elsewhere', { body: [] })
    assert.equal(nf.status, 404)
    assert.equal(nf.text, 'Endpoint not found.\r\n\r\n')
    const put = await fetch(`${base}/api`, { method: 'PUT', body: '{}' })
    assert.equal(put.status, 405)
    const pre = await fetch(`${base}/api`, { method: 'OPTIONS', headers: { 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'Content-Type' } })
    assert.equal(pre.status, 204)
    assert.equal(pre.headers.get('access-control-allow-methods'), 'GET, POST, OPTIONS')
    assert.equal(pre.headers.get('access-control-allow-headers'), 'X-Requested-With, X-HTTP-Method-Override, Content-Type, Accept')
    const bad = await fetch(`${base}/api`, { method: 'OPTIONS', headers: { 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'X-Evil' } })
    assert.equal(bad.status, 403)
    assert.match(await bad.text(), /^Header X-Evil is forbidden\./)
  })
})

describe(`HTTP API: tokens, permissions, limits (${MODE})`, () => {
  let server, dir
  const perms = `
presence:
  "*":
    allow: true
  "hidden":
    allow: false
record:
  "*":
    create: true
    write: true
    read: true
    delete: true
    listen: true
    notify: true
  "secret/*":
    read: false
    write: false
    create: false
    delete: false
  "mine/$owner":
    write: "user.id === $owner"
    create: "user.id === $owner"
  "count/*":
    write: "oldData === null || data.n > oldData.n"
event:
  "*":
    publish: true
    subscribe: true
    listen: true
  "noemit/*":
    publish: false
  "vip/*":
    publish: "user.data.role === 'vip'"
rpc:
  "*":
    provide: true
    request: true
  "norpc/*":
    request: false
`
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-http-'))
    writeFileSync(join(dir, 'permissions.yml'), perms)
    const hash = pw => {
      const h = runEddy(['hash', '--auth-argon2-ops-limit', '1', '--auth-argon2-mem-limit', '8192', pw])
      assert.equal(h.code, 0, h.stderr)
      return h.stdout.trim()
    }
    writeFileSync(join(dir, 'users.yml'),
      `ann:\n  password: "${hash('ann-pw')}"\n  serverData: { role: vip }\n  clientData: { greeting: hi }\n` +
      `bob:\n  password: "${hash('bob-pw')}"\n`)
    const edge = ['--auth', 'file', '--users', join(dir, 'users.yml'), '--http-token-secret', SECRET,
      '--http-max-in-flight', '2', '--http-request-timeout', '1500']
    const rules = ['--permission', 'config', '--permissions', join(dir, 'permissions.yml')]
    server = await startServer({ extra: MODE === 'cluster' ? [...edge, ...rules] : [...edge, ...rules], nodeExtra: MODE === 'cluster' ? rules : [] })
  })
  after(async () => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('/api/auth answers a token that later requests use; a bad login or token is refused', async () => {
    const login = await post(server, '/api/auth', { username: 'ann', password: 'ann-pw' })
    assert.equal(login.status, 200)
    assert.deepEqual(login.json.clientData, { greeting: 'hi' })
    assert.match(login.json.token, /^eddy1\./)
    const ok = await api(server, [write('mine/ann', { by: 'ann' })], { token: login.json.token })
    assert.deepEqual(ok.json.body, [{ success: true, version: 1 }])
    // the token carries ann's serverData: a rule on user.data passes
    const vip = await api(server, [emit('vip/x')], { token: login.json.token })
    assert.equal(vip.json.result, 'SUCCESS')
    const wrong = await post(server, '/api/auth', { username: 'ann', password: 'nope' })
    assert.equal(wrong.status, 401)
    assert.equal(wrong.text, 'Invalid authentication data.\r\n\r\n')
    const forged = login.json.token.slice(0, -4) + (login.json.token.endsWith('AAAA') ? 'BBBB' : 'AAAA')
    const refused = await api(server, [write('mine/ann', { by: 'mallory' })], { token: forged })
    assert.equal(refused.status, 401)
    const none = await api(server, [emit('x')])
    assert.equal(none.status, 401)
    assert.equal(none.text, 'Unsuccessful authentication attempt.\r\n\r\n')
    const r = await api(server, [read('mine/ann')], { authData: { username: 'bob', password: 'bob-pw' } })
    assert.deepEqual(r.json.body[0], { success: true, version: 1, data: { by: 'ann' } })
  })

  test('each operation gets its permission as the request\'s user, as deepstream words the denials', async () => {
    const auth = { authData: { username: 'bob', password: 'bob-pw' } }
    const p = await connect(server.url, { username: 'ann', password: 'ann-pw' })
    p.rpc.provide('norpc/x', (d, res) => res.send('should not run'))
    await sleep(SETTLE)
    const r = await api(server, [
      emit('noemit/a'),
      emit('ok/a'),
      read('secret/a'),
      write('secret/a', { x: 1 }),
      write('mine/ann', { by: 'bob' }),
      write('mine/bob', { n: 1 }),
      { topic: 'rpc', action: 'make', rpcName: 'norpc/x' },
      emit('vip/x'),
      { topic: 'presence', action: 'query', names: ['hidden'] }
    ], auth)
    assert.equal(r.json.result, 'PARTIAL_SUCCESS')
    const denied = (topic, event, action, name) => ({ success: false, errorTopic: topic, errorEvent: event, action, error: `Message denied. Action "${name}" is not permitted.` })
    const emitDenied = { success: false, error: 'Message denied. Action \'emit\' is not permitted.', errorEvent: 'MESSAGE_DENIED', errorAction: 'emit', errorTopic: 'event' }
    assert.deepEqual(r.json.body, [
      emitDenied,
      { success: true },
      denied('record', 115, 3, 'READ'),
      denied('record', 115, 16, 'CREATEANDUPDATE'),
      denied('record', 115, 16, 'CREATEANDUPDATE'),
      { success: true, version: 1 },
      denied('rpc', 107, 2, 'REQUEST'),
      emitDenied,
      denied('presence', 102, 4, 'QUERY')
    ])
    // a rule on the data the write leaves (applied by the owning node)
    const c = await api(server, [write('count/a', { n: 5 }), write('count/a', { n: 3 }), read('count/a')], auth)
    assert.deepEqual(c.json.body[0], { success: true, version: 1 })
    assert.equal(c.json.body[1].success, false)
    assert.deepEqual(c.json.body[2], { success: true, version: 1, data: { n: 5 } })
  })

  // (maxRequestsInFlight is per broker: through haproxy a third request may find the other one free)
  test('requestTimeout fails what is unanswered; maxRequestsInFlight answers 503 beyond it', { skip: MODE === 'haproxy' && 'a bound per broker' }, async () => {
    const auth = { authData: { username: 'bob', password: 'bob-pw' } }
    const p = await connect(server.url, { username: 'ann', password: 'ann-pw' })
    p.rpc.provide('slow', () => {}) // accepts, never answers
    await sleep(SETTLE)
    const slow = [api(server, [{ topic: 'rpc', action: 'make', rpcName: 'slow' }, emit('after')], auth),
      api(server, [{ topic: 'rpc', action: 'make', rpcName: 'slow' }], auth)]
    await sleep(300)
    const third = await api(server, [emit('x')], auth)
    assert.equal(third.status, 503)
    assert.equal(third.headers.get('retry-after'), '1')
    assert.match(third.text, /^Server busy: too many HTTP requests in flight/)
    const [first] = await Promise.all(slow)
    const timeout = { success: false, error: 'Request exceeded timeout before a response was received.', errorTopic: 'connection', errorEvent: 'HTTP_REQUEST_TIMEOUT' }
    assert.deepEqual(first.json, { result: 'FAILURE', body: [timeout, timeout] })
    // the bound frees up once they are answered
    const after = await api(server, [emit('x')], auth)
    assert.equal(after.json.result, 'SUCCESS')
  })

  test('a client that leaves before its answer costs nothing further', { skip: MODE === 'haproxy' && 'a bound per broker' }, async () => {
    const auth = { authData: { username: 'bob', password: 'bob-pw' } }
    const p = await connect(server.url, { username: 'ann', password: 'ann-pw' })
    p.rpc.provide('slow2', () => {})
    await sleep(SETTLE)
    for (let i = 0; i < 5; i++) {
      const ctl = new AbortController()
      const pending = fetch(`http://127.0.0.1:${server.port}/api`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ctl.signal,
        body: JSON.stringify({ ...auth, body: [{ topic: 'rpc', action: 'make', rpcName: 'slow2' }] })
      }).catch(() => null)
      await sleep(100)
      ctl.abort()
      await pending
    }
    await sleep(200)
    // the two slots are free again
    const r = await Promise.all([api(server, [emit('x')], auth), api(server, [emit('y')], auth)])
    assert.deepEqual(r.map(x => x.status), [200, 200])
  })
})

describe(`HTTP API: CORS with a list of origins, and the API turned off (${MODE})`, () => {
  let server
  before(async () => {
    server = await startServer({ extra: ['--http-allow-all-origins', 'false', '--http-origins', 'https://app.example,https://admin.example'] })
  })
  after(async () => server && server.stop())

  test('an allowed origin is echoed with credentials; another one, or none, is refused', async () => {
    const ok = await api(server, [emit('x')], {})
    assert.equal(ok.status, 403)
    assert.equal(ok.text, 'CORS is configured for this. All requests must set a valid "Origin" header.\r\n\r\n')
    const good = await post(server, '/api', { body: [emit('x')] }, { Origin: 'https://admin.example' })
    assert.equal(good.status, 200)
    assert.equal(good.headers.get('access-control-allow-origin'), 'https://admin.example')
    assert.equal(good.headers.get('access-control-allow-credentials'), 'true')
    const bad = await post(server, '/api', { body: [emit('x')] }, { Origin: 'https://evil.example' })
    assert.equal(bad.status, 403)
    assert.equal(bad.text, 'Origin "https://evil.example" is forbidden.\r\n\r\n')
    // health checks need no origin
    const health = await fetch(`http://127.0.0.1:${server.port}/health-check`)
    assert.equal(health.status, 200)
  })

  test('--http false: /api is not served', async () => {
    const off = await startServer({ extra: ['--http', 'false'] })
    try {
      const r = await post(off, '/api', { body: [emit('x')] })
      assert.equal(r.status, 404)
    } finally {
      await off.stop()
    }
  })
})

describe(`HTTP API: an answered write is durable (${MODE})`, () => {
  test('SIGKILL right after the answers loses none of the writes they acknowledged', async () => {
    let server = await startServer({ nodeExtra: ['--sync', 'batch'] })
    // 20 requests at once, each writing 5 records and patching one of them
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => api(server, [
      ...Array.from({ length: 5 }, (_, j) => write(`http-dur/${i}/${j}`, { i, j })),
      write(`http-dur/${i}/0`, 'patched', { path: 'p.q', version: 2 })
    ])))
    for (const r of results) assert.equal(r.json.result, 'SUCCESS', r.text)
    await server.kill()
    server = await server.restart()
    try {
      for (let i = 0; i < 20; i++) {
        const r = await api(server, Array.from({ length: 5 }, (_, j) => read(`http-dur/${i}/${j}`)))
        assert.deepEqual(r.json.body[0], { success: true, version: 2, data: { i, j: 0, p: { q: 'patched' } } })
        for (let j = 1; j < 5; j++) assert.deepEqual(r.json.body[j], { success: true, version: 1, data: { i, j } })
      }
    } finally {
      await server.stop()
    }
  })
})
