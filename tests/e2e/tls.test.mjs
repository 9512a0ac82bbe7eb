// tls.test.mjs - TLS on the websocket port (tls.cert, tls.key, tls.ca), with
// certificates made at test time by the openssl command line: the official
// client over wss:// (through haproxy terminating TLS in haproxy mode), the
// HTTP API and /health-check over https://, a client that does not trust the
// certificate refused, client certificates required by tls.ca, a certificate
// rotated by SIGHUP while connections stay, and start-up refusing unreadable
// or mismatched files with one line and exit code 2.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, readFileSync, copyFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { startServer, runEddy, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const dir = mkdtempSync(join(tmpdir(), 'eddy-tls-'))
const at = f => join(dir, f)
const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })

// A CA, and a certificate it signs for CN (server certificates for localhost and 127.0.0.1).
function makeCa (name) {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`,
    '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=eddy test ${name}`)
}
function makeCert (name, ca, cn, server) {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`,
    '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
  writeFileSync(at(`${name}.ext`), server ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n')
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`)
}
makeCa('ca')
makeCa('other-ca')
makeCert('server', 'ca', 'localhost', true)
makeCert('server2', 'ca', 'localhost', true)
makeCert('client', 'ca', 'client one', false)
makeCert('stranger', 'other-ca', 'localhost', true)
writeFileSync(at('server-combined.pem'), readFileSync(at('server.pem')) + readFileSync(at('server.key')))
const ca = readFileSync(at('ca.pem'))
const otherCa = readFileSync(at('other-ca.pem'))
const fingerprint = pem => new X509Certificate(pem).fingerprint256

// GET or POST over https: { status, text } (or an error).
function request (port, path, { body = null, caCert = ca, cert = null, key = null } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', ca: caCert, cert, key,
      servername: 'localhost', headers: body ? { 'Content-Type': 'application/json' } : {} }, res => {
      let text = ''
      res.on('data', d => { text += d })
      res.on('end', () => resolve({ status: res.statusCode, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

// Opens a websocket; resolves true when the upgrade succeeds, rejects with the TLS error otherwise.
function tryWebsocket (url, options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.on('open', () => { ws.close(); resolve(true) })
    ws.on('error', reject)
  })
}

// The certificate a new TLS connection to port is shown.
function peerFingerprint (port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(s.getPeerCertificate().fingerprint256)
      s.end()
    })
    s.on('error', reject)
  })
}

const serve = (extra = []) => MODE === 'haproxy'
  ? startServer({ lbTls: at('server-combined.pem') })
  : startServer({ extra: ['--tls-cert', at('server.pem'), '--tls-key', at('server.key'), ...extra] })
const wss = server => server.url.replace(/^ws:/, 'wss:')

after(() => rmSync(dir, { recursive: true, force: true }))

describe(`TLS on the websocket port (${MODE})`, () => {
  let server
  before(async () => { server = await serve() })
  after(async () => server && server.stop())
  afterEach(closeAll)

  test('the official client over wss:// logs in, writes and reads; the HTTP API and health check over https://', async () => {
    assert.match(wss(server), /^wss:\/\//)
    const a = await connect(wss(server), {}, { socketOptions: { ca } })
    const b = await connect(wss(server), {}, { socketOptions: { ca } })
    const got = []
    b.event.subscribe('tls/news', d => got.push(d))
    await sleep(300)
    await a.record.setDataWithAck('tls/rec', { secret: 'carried encrypted' })
    assert.deepEqual(await b.record.snapshot('tls/rec'), { secret: 'carried encrypted' })
    a.event.emit('tls/news', 1)
    await until(() => got.length === 1, 'the event over wss')
    const health = await request(server.port, '/health-check')
    assert.equal(health.status, 200)
    const r = await request(server.port, '/api', { body: JSON.stringify({ body: [{ topic: 'record', action: 'read', recordName: 'tls/rec' }] }) })
    assert.deepEqual(JSON.parse(r.text).body[0].data, { secret: 'carried encrypted' })
  })

  test('a client that does not trust the certificate is refused, and so is plain ws://', async () => {
    await assert.rejects(tryWebsocket(wss(server), { ca: otherCa }), /self[- ]signed|unable to (get|verify)/i)
    await assert.rejects(request(server.port, '/health-check', { caCert: otherCa }), /self[- ]signed|unable to (get|verify)/i)
    await assert.rejects(tryWebsocket(server.url.replace(/^wss:/, 'ws:'), {}))
  })
})

describe(`client certificates and rotation (${MODE})`, { skip: MODE === 'haproxy' && 'brokers behind haproxy serve plain ws' }, () => {
  afterEach(closeAll)

  test('with tls.ca a client must show a certificate it signed', async () => {
    const server = await serve(['--tls-ca', at('ca.pem')])
    try {
      assert.match(server.stderr(), /tls=on,client-certificates/)
      const cert = readFileSync(at('client.pem'))
      const key = readFileSync(at('client.key'))
      const c = await connect(wss(server), {}, { socketOptions: { ca, cert, key } })
      await c.record.setDataWithAck('tls/mutual', { ok: true })
      await assert.rejects(tryWebsocket(wss(server), { ca }))
      await assert.rejects(tryWebsocket(wss(server), { ca, cert: readFileSync(at('stranger.pem')), key: readFileSync(at('stranger.key')) }))
      const r = await request(server.port, '/health-check', { cert, key })
      assert.equal(r.status, 200)
    } finally {
      await closeAll()
      await server.stop()
    }
  })

  test('SIGHUP with a new certificate: connections stay, new ones get it', async () => {
    copyFileSync(at('server.pem'), at('live.pem'))
    copyFileSync(at('server.key'), at('live.key'))
    const server = await startServer({ extra: ['--tls-cert', at('live.pem'), '--tls-key', at('live.key')] })
    try {
      const first = await peerFingerprint(server.port)
      assert.equal(first, fingerprint(readFileSync(at('server.pem'))))
      const c = await connect(wss(server), {}, { socketOptions: { ca } })
      copyFileSync(at('server2.pem'), at('live.pem'))
      copyFileSync(at('server2.key'), at('live.key'))
      server.edge.child.kill('SIGHUP')
      await server.edge.waitFor(/tls-reloaded/)
      assert.equal(await peerFingerprint(server.port), fingerprint(readFileSync(at('server2.pem'))))
      await c.record.setDataWithAck('tls/after-rotation', { still: 'here' }) // the open connection stayed
      assert.equal(c.getConnectionState(), 'OPEN')
      // a broken pair is refused and the certificate in use stays
      copyFileSync(at('server.key'), at('live.key'))
      server.edge.child.kill('SIGHUP')
      await server.edge.waitFor(/tls-reload-failed.*does not match/)
      assert.equal(await peerFingerprint(server.port), fingerprint(readFileSync(at('server2.pem'))))
    } finally {
      await closeAll()
      await server.stop()
    }
  })
})

describe('TLS start-up errors', { skip: MODE !== 'standalone' && 'the same binary check' }, () => {
  const start = (...args) => runEddy(['standalone', '--port', '0', '--data', at('data'), '--request', 'none', ...args])
  test('a missing file, a key that does not match, half a pair: one line, exit code 2', () => {
    let r = start('--tls-cert', at('nope.pem'), '--tls-key', at('server.key'))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /config error: tls\.cert \(--tls-cert\): .*nope\.pem: No such file or directory/)
    r = start('--tls-cert', at('server.pem'), '--tls-key', at('server2.key'))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /config error: tls\.key \(--tls-key\): .*server2\.key: does not match the certificate of tls\.cert/)
    r = start('--tls-cert', at('server.pem'))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /tls\.key \(--tls-key\): tls\.cert is given: give its private key too/)
    r = start('--tls-cert', at('server.key'), '--tls-key', at('server.key'))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /config error: tls\.cert \(--tls-cert\): .*server\.key: /)
  })
})
