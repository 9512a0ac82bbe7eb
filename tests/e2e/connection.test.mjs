// connection.test.mjs - handshake, login (auth none and file), lockout, the
// unauthenticated timeout, heartbeats, the health check, and the command line.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, runEddy, sleep, until, MODE } from './lib/server.mjs'
import { connect, newClient, closeAll, Raw, TOPIC, CONN, AUTH } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

describe(`auth none (${MODE})`, () => {
  const server = serverPerSuite()

  test('login with a username and with no data both resolve with null clientData', async () => {
    const a = await connect(server.url, { username: 'alice' })
    assert.equal(a.loginResult, null)
    const b = await connect(server.url)
    assert.equal(b.loginResult, null)
    assert.equal(a.getConnectionState(), 'OPEN')
    await until(() => /login session=\d+ user=alice/.test(server.stderr()), 'login line for alice')
    await until(() => /login session=\d+ user=open/.test(server.stderr()), 'login line for the anonymous user')
  })

  test('health check answers 200 on the websocket port, other paths 404', async () => {
    const ok = await fetch(`http://127.0.0.1:${server.port}/health-check`)
    assert.equal(ok.status, 200)
    const missing = await fetch(`http://127.0.0.1:${server.port}/nope`)
    assert.equal(missing.status, 404)
  })

  test('PING gets PONG, before and after login', async () => {
    const raw = await Raw.open(server.url)
    raw.send(TOPIC.CONNECTION, { action: CONN.PING })
    await raw.next(m => m.topic === TOPIC.CONNECTION && m.action === CONN.PONG)
    await raw.login()
    raw.send(TOPIC.CONNECTION, { action: CONN.PING })
    await raw.next(m => m.topic === TOPIC.CONNECTION && m.action === CONN.PONG)
    raw.close()
  })

  test('a websocket on another path is refused', async () => {
    const raw = new Raw(`ws://127.0.0.1:${server.port}/elsewhere`)
    await raw.waitClosed()
    assert.equal(raw.messages.length, 0)
  })

  test('the query string is ignored when matching the path', async () => {
    const raw = await Raw.open(`${server.url}?x=1`)
    await raw.login()
    raw.close()
  })
})

describe(`auth file (${MODE})`, () => {
  let server, dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-users-'))
    const alice = runEddy(['hash', 'pw'])
    const bob = runEddy(['hash', 'pw2'])
    assert.equal(alice.code, 0)
    assert.match(alice.stdout, /^\$argon2id\$/)
    assert.notEqual(alice.stdout, runEddy(['hash', 'pw']).stdout, 'hashes are salted')
    const users = `alice:\n  password: "${alice.stdout.trim()}"\n  clientData: { favouriteColor: red }\n  serverData: { role: admin }\n` +
                  `bob:\n  password: "${bob.stdout.trim()}"\n`
    writeFileSync(join(dir, 'users.yml'), users)
    server = await startServer({ extra: ['--auth', 'file', '--users', join(dir, 'users.yml'), '--max-auth-attempts', '3'] })
  })
  after(async () => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('right password resolves with clientData; a user without clientData gets null', async () => {
    const a = await connect(server.url, { username: 'alice', password: 'pw' })
    assert.deepEqual(a.loginResult, { favouriteColor: 'red' })
    const b = await connect(server.url, { username: 'bob', password: 'pw2' })
    assert.equal(b.loginResult, null)
  })

  test('wrong password, unknown user and missing password are rejected; the socket stays usable', async () => {
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'alice', password: 'wrong' }), e => e.reason === 'INVALID_AUTHENTICATION_DETAILS')
    await assert.rejects(c.login({ username: 'alice' }), e => /missing authentication parameter/.test(e.reason.error))
    const ok = await c.login({ username: 'alice', password: 'pw' })
    assert.deepEqual(ok, { favouriteColor: 'red' })
  })

  test('the third failure gets TOO_MANY_AUTH_ATTEMPTS and a close', async () => {
    const c = newClient(server.url)
    const errors = []
    c.on('error', (msg, event) => errors.push(event))
    for (let i = 0; i < 3; i++) {
      await assert.rejects(c.login({ username: 'nobody', password: 'x' }))
    }
    await until(() => errors.includes('TOO_MANY_AUTH_ATTEMPTS'), 'TOO_MANY_AUTH_ATTEMPTS error')
    await until(() => c.getConnectionState() === 'TOO_MANY_AUTH_ATTEMPTS', 'client state')
    // the server logs every failure
    assert.equal(server.stderr().match(/login-failed session=\d+ user=nobody/g).length, 3)
  })

  test('a raw socket is closed by the server after the lockout', async () => {
    const raw = await Raw.open(server.url)
    raw.send(TOPIC.CONNECTION, { action: CONN.CHALLENGE, url: 'ws://x/deepstream' })
    await raw.next(m => m.action === CONN.ACCEPT)
    for (let i = 0; i < 3; i++) {
      raw.send(TOPIC.AUTH, { action: AUTH.REQUEST, data: '{"username":"bob","password":"no"}' })
      await raw.next(m => m.topic === TOPIC.AUTH && m.action === AUTH.AUTH_UNSUCCESSFUL)
    }
    await raw.next(m => m.topic === TOPIC.AUTH && m.action === AUTH.TOO_MANY_AUTH_ATTEMPTS)
    await raw.waitClosed()
  })
})

describe(`timeouts (${MODE})`, () => {
  const server = serverPerSuite({ extra: ['--unauthenticated-timeout', '500', '--heartbeat-interval', '400'] })

  test('a connection that does not log in gets AUTHENTICATION_TIMEOUT and is closed', async () => {
    const raw = await Raw.open(server.url)
    raw.send(TOPIC.CONNECTION, { action: CONN.CHALLENGE, url: 'ws://x/deepstream' })
    await raw.next(m => m.action === CONN.ACCEPT)
    raw.send(TOPIC.CONNECTION, { action: CONN.PING }) // traffic does not extend the login deadline
    const t0 = Date.now()
    await raw.next(m => m.topic === TOPIC.CONNECTION && m.action === CONN.AUTHENTICATION_TIMEOUT, 3000)
    await raw.waitClosed()
    assert.ok(Date.now() - t0 < 2000)
  })

  test('a logged-in connection that goes silent is closed after twice the heartbeat interval', async () => {
    const raw = await Raw.open(server.url)
    await raw.login()
    const t0 = Date.now()
    await raw.waitClosed(4000)
    const silent = Date.now() - t0
    assert.ok(silent >= 700, `closed after ${silent} ms`)
    assert.match(server.stderr(), /session-closed session=\d+ reason=heartbeat-timeout/)
  })

  test('a client that keeps pinging stays connected', async () => {
    const c = await connect(server.url, {}, { heartbeatInterval: 150 })
    await sleep(1500)
    assert.equal(c.getConnectionState(), 'OPEN')
  })
})

describe('command line', { skip: MODE !== 'standalone' }, () => {
  test('--version and --help', () => {
    assert.match(runEddy(['--version']).stdout, /^eddy \d+\.\d+\.\d+/)
    const help = runEddy(['--help'])
    assert.equal(help.code, 0)
    for (const flag of ['--port', '--config', '--auth', '--users', '--max-message-size', '--log-level', '--node']) {
      assert.ok(help.stdout.includes(flag), `help mentions ${flag}`)
    }
  })

  for (const [args, key] of [
    [['standalone', '--port', '70000'], 'port'],
    [['standalone', '--log-level', 'loud'], 'logLevel'],
    [['standalone', '--auth', 'file'], 'auth.users'],
    [['standalone', '--max-message-size', '-5'], 'maxMessageSize'],
    [['broker', '--port', '0'], 'cluster.nodes'],
    [['standalone', '--bogus', '1'], '--bogus'],
    [['frobnicate'], 'frobnicate']
  ]) {
    test(`bad configuration ${args.join(' ')} exits 2 naming ${key}`, () => {
      const r = runEddy(args)
      assert.equal(r.code, 2)
      const lines = r.stderr.trim().split('\n')
      assert.equal(lines.length, 1, r.stderr)
      assert.ok(lines[0].includes(key), lines[0])
    })
  }

  test('a config file with an unknown key, and a users file with a plain password, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-cfg-'))
    try {
      writeFileSync(join(dir, 'bad.yml'), 'port: 6020\nauth:\n  tipe: file\n')
      let r = runEddy(['standalone', '--config', join(dir, 'bad.yml')])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /auth\.tipe: unknown key/)
      writeFileSync(join(dir, 'users.yml'), 'alice:\n  password: secret\n')
      r = runEddy(['standalone', '--port', '0', '--host', '127.0.0.1', '--data', join(dir, 'data'), '--auth', 'file', '--users', join(dir, 'users.yml')])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /auth\.users.*alice.*Argon2id/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
