// auth-http.test.mjs - auth type http (deepstream's webhook) against a small
// webhook started here with node's http module: logins allowed with id,
// clientData and serverData, allowed by a plain-text answer, denied (JSON and
// text answers), a webhook slower than requestTimeout, one that is down, one
// that answers a retryStatusCode first, promoteToHeader and the request body
// deepstream sends; and that a slow webhook never holds up other logins.
// run-tests: alone (it bounds how long honest work takes: nothing else may load the machine)
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { startServer, until, sleep, MODE } from './lib/server.mjs'
import { connect, newClient, closeAll } from './lib/client.mjs'

// A webhook on a free port; answer(body, req, res) per request. Keeps every request.
async function webhook (answer) {
  const requests = []
  const server = http.createServer((req, res) => {
    let text = ''
    req.on('data', d => { text += d })
    req.on('end', () => {
      const body = JSON.parse(text)
      requests.push({ headers: req.headers, method: req.method, url: req.url, body })
      answer(body, req, res)
    })
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const sockets = new Set()
  server.on('connection', s => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  return {
    url: `http://127.0.0.1:${server.address().port}/auth`,
    requests,
    close: () => { for (const s of sockets) s.destroy(); return new Promise(resolve => server.close(resolve)) }
  }
}

const json = (res, status, value) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(value))
}

const HTTP_FLAGS = url => ['--auth', 'http', '--auth-endpoint-url', url, '--auth-request-timeout', '400',
  '--auth-retry-status-codes', '503,504', '--auth-retry-attempts', '2', '--auth-retry-interval', '100',
  '--auth-promote-to-header', 'token', '--max-auth-attempts', '10']

describe(`auth http (${MODE})`, () => {
  let hook, server
  const flaky = new Map() // username -> requests seen
  before(async () => {
    hook = await webhook((body, req, res) => {
      const { username } = body.authData
      if (username === 'allowed') return json(res, 200, { id: 'alice-id', clientData: { color: 'blue' }, serverData: { role: 'admin' } })
      if (username === 'byname') return json(res, 201, { username: 'carol' })
      if (username === 'text') { res.writeHead(200, { 'content-type': 'text/plain' }); return res.end('bob') }
      if (username === 'denied') return json(res, 401, { reason: 'nope' })
      if (username === 'denied-text') { res.writeHead(403, { 'content-type': 'text/plain' }); return res.end('go away') }
      if (username === 'invalid') return json(res, 200, { isValid: false, clientData: { why: 'banned' } })
      if (username === 'slow') return setTimeout(() => json(res, 200, { id: 'late' }), 3000)
      if (username.startsWith('flaky')) {
        const n = (flaky.get(username) || 0) + 1
        flaky.set(username, n)
        return n === 1 ? json(res, 503, {}) : json(res, 200, { id: username })
      }
      if (username === 'always-503') return json(res, 503, { down: true })
      json(res, 500, {})
    })
    server = await startServer({ extra: [...HTTP_FLAGS(hook.url), '--auth-permitted-status-codes', '200,201',
      '--rpc-requestor-name', 'true', '--rpc-requestor-data', 'true'] })
  })
  after(async () => {
    await server.stop()
    await hook.close()
  })
  afterEach(closeAll)

  test('allowed: the answer\'s id, clientData and serverData; deepstream\'s request body and promoted headers', async () => {
    const c = await connect(server.url, { username: 'allowed', password: 'x', token: 'tok-1' })
    assert.deepEqual(c.loginResult, { color: 'blue' })
    await until(() => /login session=\d+ user=alice-id/.test(server.stderr()), 'login line with the webhook\'s id')
    const r = hook.requests.find(q => q.body.authData.username === 'allowed')
    assert.equal(r.method, 'POST')
    assert.match(r.headers['content-type'], /^application\/json/)
    assert.equal(r.headers.accept, 'application/json')
    assert.equal(r.headers.token, 'tok-1')
    assert.deepEqual(r.body.authData, { username: 'allowed', password: 'x', token: 'tok-1' })
    assert.deepEqual(Object.keys(r.body), ['connectionData', 'authData'])
    assert.equal(typeof r.body.connectionData.remoteAddress, 'string')
    assert.ok(r.body.connectionData.remoteAddress.length > 0)
    assert.equal(typeof r.body.connectionData.headers, 'object')
    assert.ok(r.body.connectionData.headers.host)
    // serverData is the user's, as an RPC provider sees it
    const p = await connect(server.url, { username: 'text' })
    p.rpc.provide('who', (data, res, requestor) => res.send(requestor))
    await sleep(400) // the provider's registration reaches its node
    const got = await c.rpc.make('who', null)
    assert.equal(got.requestorName, 'alice-id')
    const sd = typeof got.requestorData === 'string' ? JSON.parse(got.requestorData) : got.requestorData
    assert.deepEqual(sd, { role: 'admin' })
  })

  test('a plain-text answer is the user id; username stands in for id; another permitted status', async () => {
    const c = await connect(server.url, { username: 'text' })
    assert.equal(c.loginResult, null)
    await until(() => /login session=\d+ user=bob/.test(server.stderr()), 'login as bob')
    await connect(server.url, { username: 'byname' })
    await until(() => /login session=\d+ user=carol/.test(server.stderr()), 'login as carol (status 201)')
  })

  test('denied: a JSON answer is the login\'s data, a text answer its error; isValid false refuses', async () => {
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'denied' }), e => e.reason && e.reason.reason === 'nope')
    await assert.rejects(c.login({ username: 'denied-text' }), e => e.reason && e.reason.error === 'go away')
    await assert.rejects(c.login({ username: 'invalid' }), e => e.reason && e.reason.why === 'banned')
    await assert.rejects(c.login({ username: 'someone-else' }), e => e.reason === 'INVALID_AUTHENTICATION_DETAILS')
    const ok = await c.login({ username: 'allowed' }) // the same connection logs in afterwards
    assert.deepEqual(ok, { color: 'blue' })
  })

  test('a retryStatusCode is retried: the second answer logs in', async () => {
    const c = await connect(server.url, { username: 'flaky-1' })
    assert.equal(c.loginResult, null)
    assert.equal(flaky.get('flaky-1'), 2)
    const c2 = newClient(server.url)
    c2.on('error', () => {})
    const before = hook.requests.filter(q => q.body.authData.username === 'always-503').length
    await assert.rejects(c2.login({ username: 'always-503' }), e => e.reason && e.reason.error === 'AUTH_RETRY_ATTEMPTS_EXCEEDED')
    assert.equal(hook.requests.filter(q => q.body.authData.username === 'always-503').length - before, 3, '1 + retryAttempts requests')
  })

  test('slower than requestTimeout: refused after the retries, and other logins go on meanwhile', async () => {
    const slow = newClient(server.url)
    slow.on('error', () => {})
    const started = Date.now()
    const refused = assert.rejects(slow.login({ username: 'slow' }), e => e.reason && e.reason.error === 'AUTH_RETRY_ATTEMPTS_EXCEEDED')
    const t0 = Date.now()
    const fast = await connect(server.url, { username: 'allowed' }) // not held up by the slow webhook
    assert.deepEqual(fast.loginResult, { color: 'blue' })
    assert.ok(Date.now() - t0 < 350, `a login took ${Date.now() - t0} ms behind a slow webhook`)
    await refused
    const took = Date.now() - started
    assert.ok(took >= 3 * 400 && took < 2900, `refused after ${took} ms (3 requests of 400 ms and 2 pauses of 100)`)
    assert.match(server.stderr(), /auth-http-error .*Timeout|auth-http-error .*timed out/i)
  })
})

describe(`auth http, the webhook is down (${MODE})`, () => {
  let server
  before(async () => {
    const hook = await webhook(() => {})
    const url = hook.url
    await hook.close() // nothing listens there any more
    server = await startServer({ extra: HTTP_FLAGS(url) })
  })
  after(async () => { await server.stop() })
  afterEach(closeAll)

  test('logins are refused with a clear reason, quickly; the connection stays usable', async () => {
    const c = newClient(server.url)
    c.on('error', () => {})
    const t0 = Date.now()
    await assert.rejects(c.login({ username: 'x' }), e => e.reason && e.reason.error === 'AUTH_RETRY_ATTEMPTS_EXCEEDED')
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`)
    assert.equal(c.getConnectionState(), 'AWAITING_AUTHENTICATION')
    await until(() => /auth-http-failed .*attempts=3/.test(server.stderr()), 'auth-http-failed line after 3 attempts')
  })
})
