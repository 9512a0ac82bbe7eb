// auth-file.test.mjs - file auth with a users file hashed the way deepstream
// hashes (node's crypto.pbkdf2, deepstream's format: base64 key + salt text)
// and deepstream's own config block copied unchanged (fileLoad relative to
// the config file); the auth list tried in order (jwt, then file, then a
// webhook); and the login storm: 200 official clients logging in at once
// with Argon2id file auth all succeed, although checking them takes many
// times auth.unauthenticatedClientTimeout, and again from the cache.
// run-tests: alone (it bounds how long honest work takes: nothing else may load the machine)
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import http from 'node:http'
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, runEddy, until, MODE } from './lib/server.mjs'
import { connect, newClient, closeAll } from './lib/client.mjs'
import { signJwt } from './lib/jwt.mjs'

// deepstream's createHash: pbkdf2(password, salt, iterations, keyLength, digest) with
// salt = 16 random bytes as base64 text; stored as base64(key) followed by the salt.
function deepstreamHash (password, { hash, iterations, keyLength }) {
  const salt = crypto.randomBytes(16).toString('base64')
  return crypto.pbkdf2Sync(password, salt, iterations, keyLength, hash).toString('base64') + salt
}

// deepstream's conf/users.yml, as shipped ("password", md5, 100 iterations, 32 bytes)
const SHIPPED = 'userA:\n  password: "rCOSZxJrgze2AZdVQh12c6ErDMOG0M+Rx5Yu7S5d91c=GS4SbTQYmoaGwjm2shEobg=="\n' +
  '  serverData:\n    someOptional: "auth-data"\n  clientData:\n    favouriteColor: "red"\n'

describe(`auth file with deepstream's hashes and config block (${MODE})`, () => {
  let server, dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-dsfile-'))
    mkdirSync(join(dir, 'conf'))
    const opts = { hash: 'sha256', iterations: 1000, keyLength: 48 }
    const argon = runEddy(['hash', '--auth-argon2-ops-limit', '1', '--auth-argon2-mem-limit', '8192', 'argon-pw'])
    assert.equal(argon.code, 0)
    assert.match(argon.stdout, /^\$argon2id\$v=19\$m=8192,t=1,p=1\$/)
    writeFileSync(join(dir, 'conf', 'users.yml'),
      `dana:\n  password: "${deepstreamHash('dana-pw', opts)}"\n  clientData: { team: blue }\n` +
      `eli:\n  password: "${argon.stdout.trim()}"\n`)
    // deepstream's block, as its conf/config.yml comments it, with its option names
    writeFileSync(join(dir, 'conf', 'config.yml'),
      'auth:\n  - type: file\n    options:\n      # Path to the user file. Can be json, js or yml\n' +
      '      users: fileLoad(users.yml)\n      # the name of a HMAC digest algorithm\n      hash: \'sha256\'\n' +
      '      # the number of times the algorithm should be applied\n      iterations: 1000\n' +
      '      # the length of the resulting key\n      keyLength: 48\n')
    // the server runs elsewhere: fileLoad() is relative to the config file, not to the working folder
    server = await startServer({ extra: ['--config', join(dir, 'conf', 'config.yml')] })
  })
  after(async () => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('a deepstream PBKDF2 hash and an Argon2id hash in one users file both log in', async () => {
    const d = await connect(server.url, { username: 'dana', password: 'dana-pw' })
    assert.deepEqual(d.loginResult, { team: 'blue' })
    const e = await connect(server.url, { username: 'eli', password: 'argon-pw' })
    assert.equal(e.loginResult, null)
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'dana', password: 'dana-pw ' }), e2 => e2.reason === 'INVALID_AUTHENTICATION_DETAILS')
    await assert.rejects(c.login({ username: 'nobody', password: 'dana-pw' }), e2 => e2.reason === 'INVALID_AUTHENTICATION_DETAILS')
  })

  test('deepstream\'s shipped users.yml and md5 settings, through the flat flags', async () => {
    writeFileSync(join(dir, 'shipped.yml'), SHIPPED)
    const s = await startServer({ extra: ['--auth', 'file', '--users', join(dir, 'shipped.yml'), '--auth-hash', 'md5',
      '--auth-iterations', '100', '--auth-key-length', '32'] })
    try {
      const c = await connect(s.url, { username: 'userA', password: 'password' })
      assert.deepEqual(c.loginResult, { favouriteColor: 'red' })
    } finally {
      await closeAll()
      await s.stop()
    }
  })
})

describe(`auth list tried in order: jwt, file, http (${MODE})`, () => {
  let server, dir, hook
  const secret = 'order-secret'
  const seen = []
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-order-'))
    hook = http.createServer((req, res) => {
      let body = ''
      req.on('data', d => { body += d })
      req.on('end', () => {
        const { authData } = JSON.parse(body)
        seen.push(authData.username)
        res.writeHead(authData.username === 'hooked' ? 200 : 401, { 'content-type': 'application/json' })
        res.end(JSON.stringify(authData.username === 'hooked' ? { id: 'hooked', clientData: { via: 'http' } } : { via: 'http-denied' }))
      })
    })
    await new Promise(resolve => hook.listen(0, '127.0.0.1', resolve))
    writeFileSync(join(dir, 'users.yml'),
      `fay:\n  password: "${deepstreamHash('fay-pw', { hash: 'md5', iterations: 100, keyLength: 32 })}"\n  clientData: { via: file }\n`)
    writeFileSync(join(dir, 'config.yml'),
      `auth:\n  - type: jwt\n    options:\n      secret: ${secret}\n` +
      '  - type: file\n    options:\n      users: fileLoad(users.yml)\n      hash: md5\n      iterations: 100\n      keyLength: 32\n' +
      `  - type: http\n    options:\n      endpointUrl: http://127.0.0.1:${hook.address().port}/\n` +
      '      permittedStatusCodes: [200]\n      requestTimeout: 2000\n      retryStatusCodes: []\n' +
      '      retryAttempts: 0\n      retryInterval: 100\n      reportInvalidParameters: true\n')
    server = await startServer({ extra: ['--config', join(dir, 'config.yml'), '--max-auth-attempts', '10'] })
  })
  after(async () => {
    await server.stop()
    await new Promise(resolve => hook.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('the first strategy that takes a login decides; the others are asked in order', async () => {
    const j = await connect(server.url, { token: signJwt('HS256', secret, { sub: 'tok', clientData: { via: 'jwt' } }) })
    assert.deepEqual(j.loginResult, { via: 'jwt' })
    const f = await connect(server.url, { username: 'fay', password: 'fay-pw' }) // no token: jwt passes
    assert.deepEqual(f.loginResult, { via: 'file' })
    const h = await connect(server.url, { username: 'hooked', password: 'x' }) // not in the file: file passes
    assert.deepEqual(h.loginResult, { via: 'http' })
    assert.deepEqual(seen, ['hooked'], 'the webhook heard only of the login the others passed')
    // a wrong password is passed on too (reportInvalidParameters is false in a list), and the
    // webhook's refusal is the answer
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'fay', password: 'wrong' }), e => e.reason && e.reason.via === 'http-denied')
    assert.deepEqual(seen, ['hooked', 'fay'])
    // a bad token is passed on as well: here to file, which knows fay
    const f2 = await connect(server.url, { token: 'bad.to.ken', username: 'fay', password: 'fay-pw' })
    assert.deepEqual(f2.loginResult, { via: 'file' })
  })
})

describe(`login storm: 200 clients at once with Argon2id file auth (${MODE})`, () => {
  const USERS = 20
  const CLIENTS = 200
  let server, dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-storm-'))
    let users = ''
    for (let i = 0; i < USERS; i++) {
      const h = runEddy(['hash', `pw-${i}`]) // the default cost (Argon2id, 64 MiB, 2 passes)
      assert.equal(h.code, 0)
      users += `user${i}:\n  password: "${h.stdout.trim()}"\n  clientData: { n: ${i} }\n`
    }
    writeFileSync(join(dir, 'users.yml'), users)
    // checking 200 passwords takes several seconds on 2 cores: far more than this timeout,
    // which bounds only how long a client takes to send its credentials
    server = await startServer({ extra: ['--auth', 'file', '--users', join(dir, 'users.yml'), '--unauthenticated-timeout', '1000'] })
  })
  after(async () => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  async function storm () {
    const errors = []
    const t0 = Date.now()
    const results = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, k) => {
      const i = k % USERS
      const c = newClient(server.url)
      c.on('error', (msg, event) => errors.push(event))
      return c.login({ username: `user${i}`, password: `pw-${i}` }).then(r => {
        assert.deepEqual(r, { n: i })
        assert.equal(c.getConnectionState(), 'OPEN')
      })
    }))
    const failed = results.filter(r => r.status === 'rejected')
    assert.equal(failed.length, 0, `${failed.length} logins failed: ${failed.slice(0, 3).map(r => r.reason && (r.reason.message || JSON.stringify(r.reason))).join('; ')}`)
    assert.deepEqual(errors, [])
    return Date.now() - t0
  }

  test('all log in the first time (no AUTHENTICATION_TIMEOUT), and again from the cache', async () => {
    const first = await storm()
    assert.doesNotMatch(server.stderr(), /auth-timeout/)
    await closeAll()
    const again = await storm()
    assert.doesNotMatch(server.stderr(), /auth-timeout/)
    console.log(`# ${CLIENTS} logins: first ${first} ms, again (cached) ${again} ms`)
    if (MODE !== 'haproxy') { // behind haproxy, two brokers each keep a cache and the proxy's cost dominates
      assert.ok(again < first, `cached logins (${again} ms) were not faster than the first (${first} ms)`)
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`)
      const hits = Number((await res.text()).match(/^eddy_auth_cache_hits_total (\d+)/m)[1])
      assert.ok(hits >= CLIENTS, `cache hits ${hits}`)
    }
  })
})
