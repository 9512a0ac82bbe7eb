// deepstream-config.test.mjs - a deepstream 7 user's config.yml, copied as it
// is (fixtures/deepstream-config.yml mirrors deepstream 7.0.2's shipped one,
// with fileLoad(permissions.yml) beside it): eddy starts with it, names the
// settings it ignores in one line, serves the websocket (the official client
// logs in, writes and reads a record, and the permissions file is honoured)
// and the HTTP API (POST /api); a config naming an endpoint type eddy does not
// serve (mqtt), or TLS, is refused with one line and exit code 2, and one
// without an http endpoint has no HTTP API.
import { test, describe, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startServer, runEddy, MODE } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const FIXTURE = resolve('tests/e2e/fixtures/deepstream-config.yml')
const shipped = readFileSync(FIXTURE, 'utf8')
const dir = mkdtempSync(join(tmpdir(), 'eddy-ds-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))
afterEach(closeAll)

// A variant of the fixture in dir, with permissions.yml beside it.
function variant (name, text) {
  copyFileSync(resolve('tests/e2e/fixtures/permissions.yml'), join(dir, 'permissions.yml'))
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

// The server, every process of it given the file (a cluster's node applies data rules).
const start = file => startServer({ extra: ['--config', file], nodeExtra: MODE === 'cluster' ? ['--config', file] : [] })

async function post (port, path, body) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
  })
  return { status: res.status, text: await res.text() }
}

describe(`deepstream 7's config.yml (${MODE})`, () => {
  test('eddy starts with the shipped config.yml unchanged: websocket, permissions file, HTTP API', async () => {
    const server = await start(FIXTURE)
    try {
      const line = server.stderr().match(/INFO  config-ignored keys=(\S+)/)
      assert.ok(line, server.stderr())
      assert.deepEqual(line[1].split(','), ['serverName', 'showLogo', 'dependencyInitializationTimeout',
        'exitOnFatalError', 'telemetry', 'record.cacheRetrievalTimeout', 'record.storageRetrievalTimeout',
        'connectionEndpoints[0].options.outgoingBufferTimeout', 'connectionEndpoints[0].options.maxBufferByteSize',
        'connectionEndpoints[0].options.logInvalidAuthData', 'logger', 'monitoring'])
      assert.equal(server.stderr().match(/config-ignored/g).length, { standalone: 1, cluster: 2, haproxy: 5 }[MODE]) // once a process

      // the official client on ws-binary's urlPath, auth type none
      const a = await connect(server.url, { username: 'alice' })
      assert.equal(a.getConnectionState(), 'OPEN')
      await a.record.setDataWithAck('ds-config/r1', { from: 'config.yml', n: 1 })
      const b = await connect(server.url, { username: 'bob' })
      assert.deepEqual(await b.record.snapshot('ds-config/r1'), { from: 'config.yml', n: 1 })
      // fileLoad(permissions.yml), relative to the config file: its one deny rule holds
      await assert.rejects(a.record.setDataWithAck('read-only/1', { x: 1 }), err => String(err).includes('MESSAGE_DENIED'))

      // connectionEndpoints' http entry: POST /api (postPath) reads the record written over the websocket
      const r = await post(server.port, '/api', { body: [{ topic: 'record', action: 'read', recordName: 'ds-config/r1' }] })
      assert.equal(r.status, 200, r.text)
      const answer = JSON.parse(r.text)
      assert.equal(answer.result, 'SUCCESS', r.text)
      assert.equal(answer.body[0].success, true, r.text)
      assert.deepEqual(answer.body[0].data, { from: 'config.yml', n: 1 })
      // httpServer.options.healthCheckPath
      const health = await fetch(`http://127.0.0.1:${server.port}/health-check`)
      assert.equal(health.status, 200)
    } finally {
      await closeAll()
      await server.stop()
    }
  })

  test('no http entry in connectionEndpoints: no HTTP API, the websocket still served', async () => {
    const p = variant('no-http.yml', shipped.replace(/\n {2}- type: http\n(?: {4}.*\n| {6}.*\n)+/, '\n'))
    assert.ok(!/type: http\b/.test(readFileSync(p, 'utf8')))
    const server = await start(p)
    try {
      const c = await connect(server.url, { username: 'carol' })
      assert.equal(c.getConnectionState(), 'OPEN')
      const r = await post(server.port, '/api', { body: [{ topic: 'record', action: 'read', recordName: 'x' }] })
      assert.equal(r.status, 404, r.text)
    } finally {
      await closeAll()
      await server.stop()
    }
  })

  test('an mqtt endpoint is refused at start with one line naming the entry, exit code 2', () => {
    const text = shipped.replace(/ {2}# - type: mqtt\n {2}# {3}options:\n {2}# {7}port: 1883\n/,
      '  - type: mqtt\n    options:\n        port: 1883\n')
    assert.notEqual(text, shipped)
    const p = variant('mqtt.yml', text)
    const r = runEddy(['standalone', '--config', p, '--port', '0', '--data', join(dir, 'data')])
    assert.equal(r.code, 2, r.stderr)
    assert.equal(r.stderr, 'eddy: config error: connectionEndpoints[2].type: mqtt is not served by eddy ' +
      '(ws-binary and http are)\n')
  })

  test('httpServer ssl names tls.key and tls.cert, relative to the config file (missing here: exit code 2)', () => {
    const text = shipped.replace('    # ssl:\n    #   key: fileLoad(ssl/key.pem)\n    #   cert: fileLoad(ssl/cert.pem)\n',
      '    ssl:\n      key: fileLoad(ssl/key.pem)\n      cert: fileLoad(ssl/cert.pem)\n')
    assert.notEqual(text, shipped)
    const r = runEddy(['standalone', '--config', variant('ssl.yml', text), '--port', '0', '--data', join(dir, 'data')])
    assert.equal(r.code, 2, r.stderr)
    assert.ok(r.stderr.includes(`config error: tls.cert (--tls-cert): ${dir}/ssl/cert.pem: No such file or directory`), r.stderr)
  })
})
