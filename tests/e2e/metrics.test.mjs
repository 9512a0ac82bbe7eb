// metrics.test.mjs - GET /metrics as an operator reads it, driven by the
// official client: messages received and sent per topic and action (an
// event to two subscribers counts two sends), denials by the broker's rules
// and by the owning node's (MESSAGE_DENIED, on the client counters and the
// permission counters), logins accepted and refused, connections opened and
// closed; the node's operations by kind, its batch apply and group-commit
// histograms, and its storage size after writes (standalone: the same body;
// cluster: the node's own listener, node.metrics, which also answers
// /health-check). Every body must be valid Prometheus text, also with an
// auth list of two webhooks (each family once, a sample per strategy).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, runEddy, sleep, until, MODE } from './lib/server.mjs'
import { connect, newClient, closeAll } from './lib/client.mjs'
import { metrics, nodeMetrics, nodeMetricsUrls, assertValidPrometheus } from './lib/metrics.mjs'

const RULES = `
presence:
  "*":
    allow: true
record:
  "*":
    create: true
    write: true
    read: true
    delete: true
    listen: true
    notify: true
  "ro/*":
    write: false
  "counter/*":
    write: "oldData === null || data.n > oldData.n"
event:
  "*":
    publish: true
    subscribe: true
    listen: true
  "secret/*":
    publish: false
rpc:
  "*":
    provide: true
    request: true
`

const SENT = 'eddy_client_messages_sent_total'
const RECEIVED = 'eddy_client_messages_received_total'
const on = (topic, action) => [`topic="${topic}"`, `action="${action}"`]

describe(`metrics (${MODE})`, () => {
  let dir, server
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-metrics-'))
    writeFileSync(join(dir, 'permissions.yml'), RULES)
    const hash = runEddy(['hash', '--auth-argon2-ops-limit', '1', '--auth-argon2-mem-limit', '8192', 'pw'])
    assert.equal(hash.code, 0)
    writeFileSync(join(dir, 'users.yml'), `ada:\n  password: "${hash.stdout.trim()}"\n` +
      `bob:\n  password: "${hash.stdout.trim()}"\n`)
    const perm = ['--permission', 'config', '--permissions', join(dir, 'permissions.yml')]
    server = await startServer({ extra: [...perm, '--auth', 'file', '--users', join(dir, 'users.yml')], nodeExtra: perm })
  })
  after(async () => {
    await closeAll()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  test('every body is valid Prometheus text, each family once', async () => {
    const m = await metrics(server)
    for (const t of m.texts) {
      const types = assertValidPrometheus(t, 'broker')
      for (const f of [RECEIVED, SENT, 'eddy_connections_opened_total', 'eddy_connections_closed_total',
        'eddy_auth_logins_total', 'eddy_permission_denied_total', 'process_cpu_seconds_total']) {
        assert.ok(types.has(f), `the broker's /metrics has ${f}`)
      }
    }
    const n = await nodeMetrics(server)
    for (const t of n.texts) {
      const types = assertValidPrometheus(t, 'node')
      assert.equal(types.get('eddy_node_batch_apply_seconds'), 'histogram')
      assert.equal(types.get('eddy_node_persist_seconds'), 'histogram')
      for (const f of ['eddy_node_operations_total', 'eddy_node_storage_sst_bytes', 'eddy_node_storage_wal_bytes',
        'eddy_node_storage_memtable_bytes', 'eddy_node_records_cached', 'eddy_node_peers',
        'eddy_node_deliveries_published_total', 'eddy_node_delivery_batches_dropped_total', 'eddy_build_info']) {
        assert.ok(types.has(f), `the node's /metrics has ${f}`)
      }
    }
    if (MODE !== 'standalone') assert.match(n.text, /^eddy_build_info\{version="[^"]+",role="node"\} 1$/m)
    else assert.match(n.text, /^eddy_build_info\{version="[^"]+",role="standalone"\} 1$/m)
  })

  test('logins accepted and refused, connections opened and closed', async () => {
    const m0 = await metrics(server)
    await connect(server.url, { username: 'ada', password: 'pw' })
    const c = newClient(server.url)
    c.on('error', () => {})
    await assert.rejects(c.login({ username: 'bob', password: 'wrong' }))
    const m1 = await metrics(server)
    assert.equal(m1.sum('eddy_auth_logins_total', 'result="accepted"') - m0.sum('eddy_auth_logins_total', 'result="accepted"'), 1)
    assert.equal(m1.sum('eddy_auth_logins_total', 'result="refused"') - m0.sum('eddy_auth_logins_total', 'result="refused"'), 1)
    assert.equal(m1.sum('eddy_connections_opened_total') - m0.sum('eddy_connections_opened_total'), 2)
    assert.equal(m1.sum('eddy_connections') - m0.sum('eddy_connections'), 2)
    assert.equal(m1.sum(RECEIVED, on('auth', 'REQUEST')) - m0.sum(RECEIVED, on('auth', 'REQUEST')), 2)
    assert.equal(m1.sum(SENT, on('auth', 'AUTH_SUCCESSFUL')) - m0.sum(SENT, on('auth', 'AUTH_SUCCESSFUL')), 1)
    assert.equal(m1.sum(SENT, on('auth', 'AUTH_UNSUCCESSFUL')) - m0.sum(SENT, on('auth', 'AUTH_UNSUCCESSFUL')), 1)
    assert.ok(m1.sum(RECEIVED, on('connection', 'CHALLENGE')) - m0.sum(RECEIVED, on('connection', 'CHALLENGE')) >= 2)
    await closeAll()
    await until(async () => (await metrics(server)).sum('eddy_connections_closed_total') -
      m0.sum('eddy_connections_closed_total') >= 2, 'both closes counted')
  })

  test('messages per topic and action: an event to two subscribers is two sends', async () => {
    const [pub, s1, s2] = await Promise.all(['ada', 'bob', 'ada'].map(u => connect(server.url, { username: u, password: 'pw' })))
    const got = []
    s1.event.subscribe('m/ev', d => got.push(d))
    s2.event.subscribe('m/ev', d => got.push(d))
    await sleep(300)
    const m0 = await metrics(server)
    pub.event.emit('m/ev', 'one')
    await until(() => got.length === 2, 'both subscribers got it')
    await pub.record.setDataWithAck('m/rec', { a: 1 })
    const m1 = await metrics(server)
    assert.equal(m1.sum(RECEIVED, on('event', 'EMIT')) - m0.sum(RECEIVED, on('event', 'EMIT')), 1)
    assert.equal(m1.sum(SENT, on('event', 'EMIT')) - m0.sum(SENT, on('event', 'EMIT')), 2)
    assert.equal(m1.sum(RECEIVED, on('record', 'CREATEANDUPDATE')) - m0.sum(RECEIVED, on('record', 'CREATEANDUPDATE')), 1)
    assert.equal(m1.sum(SENT, on('record', 'WRITE_ACKNOWLEDGEMENT')) - m0.sum(SENT, on('record', 'WRITE_ACKNOWLEDGEMENT')), 1)
  })

  test('denials: by the broker\'s rules and by the owning node\'s, visible as MESSAGE_DENIED', async () => {
    const a = await connect(server.url, { username: 'ada', password: 'pw' })
    const errors = []
    a.on('error', (msg, event, topic) => errors.push([event, topic]))
    const m0 = await metrics(server)
    const n0 = await nodeMetrics(server)
    a.event.emit('secret/x', 1)
    await until(() => errors.length === 1, 'the emit was denied')
    await assert.rejects(a.record.setDataWithAck('ro/x', { v: 1 }), err => String(err).includes('MESSAGE_DENIED'))
    await a.record.setDataWithAck('counter/x', { n: 5 })
    await assert.rejects(a.record.setDataWithAck('counter/x', { n: 3 }), err => String(err).includes('MESSAGE_DENIED'))
    const m1 = await metrics(server)
    const n1 = await nodeMetrics(server)
    assert.equal(m1.sum(SENT, on('event', 'MESSAGE_DENIED')) - m0.sum(SENT, on('event', 'MESSAGE_DENIED')), 1)
    assert.equal(m1.sum(SENT, on('record', 'MESSAGE_DENIED')) - m0.sum(SENT, on('record', 'MESSAGE_DENIED')), 2)
    assert.equal(m1.sum('eddy_permission_denied_total') - m0.sum('eddy_permission_denied_total'), 2) // the broker's two
    assert.equal(n1.sum('eddy_node_permission_denied_total') - n0.sum('eddy_node_permission_denied_total'), 1)
  })

  test('the node: operations by kind, apply and persist histograms, storage size after writes', async () => {
    const a = await connect(server.url, { username: 'ada', password: 'pw' })
    const n0 = await nodeMetrics(server)
    for (let i = 0; i < 20; i++) await a.record.setDataWithAck(`m/store-${i}`, { i, pad: 'x'.repeat(200) })
    const n1 = await nodeMetrics(server)
    assert.ok(n1.sum('eddy_node_operations_total', 'kind="RECORD_WRITE"') - n0.sum('eddy_node_operations_total', 'kind="RECORD_WRITE"') >= 20)
    assert.ok(n1.sum('eddy_node_batch_apply_seconds_count') - n0.sum('eddy_node_batch_apply_seconds_count') >= 20)
    assert.ok(n1.sum('eddy_node_batch_apply_seconds_sum') > n0.sum('eddy_node_batch_apply_seconds_sum'))
    assert.ok(n1.sum('eddy_node_persist_seconds_count') - n0.sum('eddy_node_persist_seconds_count') >= 1)
    assert.ok(n1.sum('eddy_node_persisted_writes_total') - n0.sum('eddy_node_persisted_writes_total') >= 20)
    assert.ok(n1.sum('eddy_node_deliveries_published_total') > n0.sum('eddy_node_deliveries_published_total'))
    // gauges: the executor publishes them once per turn (100 ms at most)
    await until(async () => {
      const n = await nodeMetrics(server)
      return n.sum('eddy_node_records_cached') >= 20 && n.sum('eddy_node_records_cached_bytes') > 20 * 200 &&
        n.sum('eddy_node_peers') >= 1
    }, 'records cached and peers', 2000)
    // the storage thread reads the sizes once a second
    await until(async () => {
      const n = await nodeMetrics(server)
      return n.sum('eddy_node_storage_memtable_bytes') + n.sum('eddy_node_storage_sst_bytes') > 0 &&
        n.sum('eddy_node_storage_wal_bytes') > 4000
    }, 'storage size after writes', 5000)
  })

  test('the node\'s own listener answers /health-check; other paths 404', { skip: MODE === 'standalone' && 'standalone serves the node on its websocket port' }, async () => {
    for (const u of nodeMetricsUrls(server)) {
      const base = u.replace(/\/metrics$/, '')
      const health = await fetch(`${base}/health-check`)
      assert.equal(health.status, 200)
      assert.equal(await health.text(), 'OK')
      assert.equal((await fetch(`${base}/nope`)).status, 404)
      const m = await fetch(u)
      assert.match(m.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
    }
  })
})

describe(`metrics with an auth list of two webhooks (${MODE})`, () => {
  let dir, server, hook
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-metrics-hooks-'))
    hook = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => { // the first webhook refuses everyone, the second takes everyone
        res.writeHead(req.url === '/second' ? 200 : 401, { 'content-type': 'application/json' })
        res.end('{}')
      })
    })
    await new Promise(resolve => hook.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${hook.address().port}`
    writeFileSync(join(dir, 'config.yml'), 'auth:\n' +
      `  - type: http\n    options:\n      endpointUrl: ${url}/first\n      reportInvalidParameters: false\n` +
      `  - type: http\n    options:\n      endpointUrl: ${url}/second\n`)
    server = await startServer({ extra: ['--config', join(dir, 'config.yml')] })
  })
  after(async () => {
    await closeAll()
    await server.stop()
    await new Promise(resolve => hook.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  test('each webhook family once, with a sample per strategy', async () => {
    await connect(server.url, { username: 'someone' })
    const m = await metrics(server)
    for (const t of m.texts) assertValidPrometheus(t, 'broker')
    assert.equal(m.sum('eddy_auth_http_requests_total', 'strategy="0"'), 1)
    assert.equal(m.sum('eddy_auth_http_requests_total', 'strategy="1"'), 1)
    assert.equal(m.sum('eddy_auth_logins_total', 'result="accepted"'), 1)
  })
})
