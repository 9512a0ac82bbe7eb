// auth-jwt.test.mjs - auth type jwt with tokens signed here with node's
// crypto: HS256 with a secret, RS256 and ES256 with a public key file (the
// list form of the config, publicKey: fileLoad(...)); valid tokens with
// claims mapped to the user id, clientData and serverData; expired,
// not-yet-valid, wrong key, wrong audience, wrong issuer, alg none and an
// HS256 token "signed" with the RS256 public key are refused; a token logs in
// again from the cache.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, until, sleep, MODE } from './lib/server.mjs'
import { connect, newClient, closeAll } from './lib/client.mjs'
import { signJwt } from './lib/jwt.mjs'

const now = () => Math.floor(Date.now() / 1000)

// Logs in with token on a fresh client and expects a refusal with this error.
async function refused (url, token, error) {
  const c = newClient(url)
  c.on('error', () => {})
  await assert.rejects(c.login({ token }), e => {
    assert.deepEqual(e.reason, { error })
    return true
  })
}

async function metric (server, name) {
  const res = await fetch(`http://127.0.0.1:${server.port}/metrics`)
  const m = (await res.text()).match(new RegExp(`^${name} (\\d+)`, 'm'))
  return m ? Number(m[1]) : 0
}

describe(`auth jwt HS256 (${MODE})`, () => {
  const secret = 'a-secret-of-32-bytes-or-so-12345'
  let server
  before(async () => {
    server = await startServer({ extra: ['--auth', 'jwt', '--auth-secret', secret, '--auth-audience', 'eddy',
      '--auth-issuer', 'tests', '--max-auth-attempts', '20', '--rpc-requestor-name', 'true', '--rpc-requestor-data', 'true'] })
  })
  after(async () => { await server.stop() })
  afterEach(closeAll)
  const good = (extra = {}) => ({ sub: 'ann', aud: 'eddy', iss: 'tests', exp: now() + 60, ...extra })

  test('a valid token logs in: sub is the user, clientData and serverData claims are mapped', async () => {
    const token = signJwt('HS256', secret, good({ clientData: { theme: 'dark' }, serverData: { role: 'admin' } }))
    const c = await connect(server.url, { token })
    assert.deepEqual(c.loginResult, { theme: 'dark' })
    await until(() => /login session=\d+ user=ann/.test(server.stderr()), 'login line for ann')
    const p = await connect(server.url, { token: signJwt('HS256', secret, good({ sub: 'provider' })) })
    p.rpc.provide('who', (data, res, requestor) => res.send(requestor))
    await sleep(400) // the provider's registration reaches its node
    const got = await c.rpc.make('who', null)
    assert.equal(got.requestorName, 'ann')
    const sd = typeof got.requestorData === 'string' ? JSON.parse(got.requestorData) : got.requestorData
    assert.deepEqual(sd, { role: 'admin' })
    // an aud array that holds the audience, and a token without exp or clientData
    const c2 = await connect(server.url, { token: signJwt('HS256', secret, { sub: 'bo', aud: ['x', 'eddy'], iss: 'tests' }) })
    assert.equal(c2.loginResult, null)
    await until(() => /login session=\d+ user=bo\b/.test(server.stderr()), 'login line for bo')
  })

  test('expired, not yet valid, wrong key, wrong audience, wrong issuer, alg none, no token: refused', async () => {
    await refused(server.url, signJwt('HS256', secret, good({ exp: now() - 5 })), 'token expired')
    await refused(server.url, signJwt('HS256', secret, good({ nbf: now() + 120 })), 'token not yet valid')
    await refused(server.url, signJwt('HS256', 'another secret', good()), 'invalid token')
    await refused(server.url, signJwt('HS256', secret, good({ aud: 'someone-else' })), 'token audience mismatch')
    await refused(server.url, signJwt('HS256', secret, good({ iss: 'mallory' })), 'token issuer mismatch')
    await refused(server.url, signJwt('none', '', good()), 'invalid token')
    await refused(server.url, signJwt('HS256', secret, { aud: 'eddy', iss: 'tests' }), 'token has no sub claim')
    await refused(server.url, 'not.a.token', 'invalid token')
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'ann', password: 'x' }),
      e => e.reason && e.reason.error === 'missing authentication parameter: token')
  })

  test('the same token logs in again from the cache', { skip: MODE === 'haproxy' && 'two brokers: each has its cache' }, async () => {
    const token = signJwt('HS256', secret, good({ sub: 'cached' }))
    await connect(server.url, { token })
    const hits = await metric(server, 'eddy_auth_cache_hits_total')
    await connect(server.url, { token })
    await connect(server.url, { token })
    assert.equal(await metric(server, 'eddy_auth_cache_hits_total'), hits + 2)
    // an expired token is not served from the cache
    const short = signJwt('HS256', secret, good({ sub: 'short', exp: now() + 2 }))
    await connect(server.url, { token: short })
    await new Promise(resolve => setTimeout(resolve, 2200))
    await refused(server.url, short, 'token expired')
  })
})

describe(`auth jwt RS256 and ES256 with a public key file, list form (${MODE})`, () => {
  let server, server2, dir
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = k => k.export({ type: 'spki', format: 'pem' })
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-jwt-'))
    writeFileSync(join(dir, 'rsa.pem'), pem(rsa.publicKey))
    writeFileSync(join(dir, 'ec.pem'), pem(ec.publicKey))
    writeFileSync(join(dir, 'config.yml'),
      'auth:\n  - type: jwt\n    options:\n      publicKey: fileLoad(rsa.pem)\n      algorithm: RS256\n' +
      '      userIdClaim: uid\n      clientDataClaim: profile\n      reportInvalidParameters: true\n' +
      'auth.maxAuthAttempts: 20\n')
    writeFileSync(join(dir, 'config-ec.yml'),
      'auth:\n  - type: jwt\n    options: {publicKey: fileLoad(ec.pem), algorithm: ES256}\n')
    server = await startServer({ extra: ['--config', join(dir, 'config.yml')] })
    server2 = await startServer({ extra: ['--config', join(dir, 'config-ec.yml')] })
  })
  after(async () => {
    await server.stop()
    await server2.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('RS256: valid logs in with the configured claims; another key, HS256 with the public key, expired: refused', async () => {
    const c = await connect(server.url, { token: signJwt('RS256', rsa.privateKey, { uid: 42, profile: { n: 1 }, exp: now() + 60 }) })
    assert.deepEqual(c.loginResult, { n: 1 })
    await until(() => /login session=\d+ user=42\b/.test(server.stderr()), 'login line for user 42')
    await refused(server.url, signJwt('RS256', other.privateKey, { uid: 'x' }), 'invalid token')
    await refused(server.url, signJwt('HS256', pem(rsa.publicKey), { uid: 'x' }), 'invalid token')
    await refused(server.url, signJwt('RS256', rsa.privateKey, { uid: 'x', exp: now() - 1 }), 'token expired')
    await refused(server.url, signJwt('RS256', rsa.privateKey, { sub: 'x' }), 'token has no uid claim')
  })

  test('ES256: valid logs in; an RS256 token is refused', async () => {
    const c = await connect(server2.url, { token: signJwt('ES256', ec.privateKey, { sub: 'eve', clientData: [1, 2] }) })
    assert.deepEqual(c.loginResult, [1, 2])
    await refused(server2.url, signJwt('RS256', rsa.privateKey, { sub: 'eve' }), 'invalid token')
  })
})
