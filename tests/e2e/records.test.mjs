// records.test.mjs - the record lifecycle with the official client: getRecord,
// set/setWithAck (whole and path), subscribe per path, snapshot/has/head,
// setData (upsert, with and without ack), erase, delete and re-create, lists,
// anonymous records, conflicts; then the raw protocol answers (versions on the
// wire, VERSION_EXISTS, INVALID_VERSION, bad data and paths, limits).
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC, RECORD } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

describe(`records (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--record-max-size', '65536'] })

  test('a new record starts at version 0 with {}; every write adds one', async () => {
    const a = await connect(server.url)
    const r = a.record.getRecord('lifecycle/1')
    await r.whenReady()
    assert.equal(r.version, 0)
    assert.deepEqual(r.get(), {})
    await r.setWithAck({ name: 'x', age: 1 })
    assert.equal(r.version, 1)
    await r.setWithAck('age', 2)
    await r.setWithAck('address.city', 'Berlin')
    await r.setWithAck('tags[1]', 'b')
    assert.equal(r.version, 4)
    assert.equal(await a.record.head('lifecycle/1'), 4)
    assert.deepEqual(await a.record.snapshot('lifecycle/1'),
      { name: 'x', age: 2, address: { city: 'Berlin' }, tags: [null, 'b'] })
  })

  test('two clients on one record: whole and path updates, path subscriptions, erase', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const ra = a.record.getRecord('shared/1')
    await ra.whenReady()
    await ra.setWithAck({ name: 'x', age: 1, address: { city: 'Rome' } })
    const rb = b.record.getRecord('shared/1')
    await rb.whenReady()
    assert.equal(rb.version, 1)
    assert.deepEqual(rb.get(), { name: 'x', age: 1, address: { city: 'Rome' } })
    const ages = []
    const cities = []
    const whole = []
    rb.subscribe('age', v => ages.push(v))
    rb.subscribe('address.city', v => cities.push(v))
    rb.subscribe(d => whole.push(d))
    ra.set('age', 2)
    ra.set('address.city', 'Berlin')
    ra.set({ name: 'y', age: 3, address: { city: 'Berlin' } })
    ra.erase('name')
    await until(() => rb.version === 5, 'b reaches version 5')
    assert.deepEqual(ages, [2, 3])
    assert.deepEqual(cities, ['Berlin'])
    assert.equal(whole.length, 4)
    assert.deepEqual(rb.get(), { age: 3, address: { city: 'Berlin' } })
    assert.equal(ra.version, 5)
    // b writes back; a sees it
    await rb.setWithAck('age', 4)
    await until(() => ra.get('age') === 4, 'a sees b\'s write')
    assert.equal(ra.version, 6)
  })

  test('snapshot, has and head of present and missing records', async () => {
    const a = await connect(server.url)
    await a.record.setDataWithAck('snap/1', { v: 1 })
    assert.deepEqual(await a.record.snapshot('snap/1'), { v: 1 })
    assert.equal(await a.record.has('snap/1'), true)
    assert.equal(await a.record.has('snap/missing'), false)
    assert.equal(await a.record.head('snap/1'), 1)
    assert.equal(await a.record.head('snap/missing'), -1)
    await assert.rejects(a.record.snapshot('snap/missing'), e => e === 'RECORD_NOT_FOUND')
  })

  test('setData without a record: whole, path, erase, with and without ack', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const rb = b.record.getRecord('set/1')
    await rb.whenReady()
    await a.record.setDataWithAck('set/1', { a: 1, b: { c: 2 } })
    await a.record.setDataWithAck('set/1', 'b.d', [1, 2])
    a.record.setData('set/1', 'a', undefined)
    await until(() => rb.version === 3, 'subscriber sees three writes')
    assert.deepEqual(rb.get(), { b: { c: 2, d: [1, 2] } })
    assert.deepEqual(await a.record.snapshot('set/1'), { b: { c: 2, d: [1, 2] } })
    // setData on a record that does not exist yet creates it at version 1
    await a.record.setDataWithAck('set/new', 'x', 'y')
    assert.equal(await a.record.head('set/new'), 1)
    assert.deepEqual(await a.record.snapshot('set/new'), { x: 'y' })
  })

  test('delete: others get the delete event; the name can be created again from version 0', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const ra = a.record.getRecord('del/1')
    await ra.whenReady()
    await ra.setWithAck({ v: 1 })
    const rb = b.record.getRecord('del/1')
    await rb.whenReady()
    let deleted = false
    rb.on('delete', () => { deleted = true })
    await ra.delete()
    await until(() => deleted, 'b sees the deletion')
    assert.equal(await b.record.head('del/1'), -1)
    const again = b.record.getRecord('del/1')
    await again.whenReady()
    assert.equal(again.version, 0)
    assert.deepEqual(again.get(), {})
    await again.setWithAck({ v: 2 })
    assert.equal(await a.record.head('del/1'), 1)
  })

  test('lists: add, insert at an index, remove, read by another client', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const la = a.record.getList('list/1')
    await la.whenReady()
    assert.deepEqual(la.getEntries(), [])
    la.addEntry('x')
    la.addEntry('y')
    la.addEntry('z', 0)
    la.removeEntry('x')
    la.addEntry('w', 1)
    await until(async () => (await b.record.head('list/1')) === 5, 'five writes')
    const lb = b.record.getList('list/1')
    await lb.whenReady()
    assert.deepEqual(lb.getEntries(), ['z', 'w', 'y'])
    lb.setEntries(['q'])
    await until(() => la.getEntries().length === 1, 'a sees b\'s list')
    assert.deepEqual(la.getEntries(), ['q'])
  })

  test('anonymous records follow setName', async () => {
    const a = await connect(server.url)
    await a.record.setDataWithAck('anon/1', { n: 1 })
    await a.record.setDataWithAck('anon/2', { n: 2 })
    const anon = a.record.getAnonymousRecord()
    anon.setName('anon/1')
    await anon.whenReady()
    assert.deepEqual(anon.get(), { n: 1 })
    anon.setName('anon/2')
    await until(() => anon.get('n') === 2, 'switch to anon/2')
  })

  test('conflicting writers: one wins, the other merges to the server\'s version', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const ra = a.record.getRecord('conf/1')
    const rb = b.record.getRecord('conf/1')
    await Promise.all([ra.whenReady(), rb.whenReady()])
    await ra.setWithAck({ v: 'start' })
    await until(() => rb.version === 1, 'b at v1')
    ra.set({ v: 'from a' })
    rb.set({ v: 'from b' })
    await until(() => ra.version === 2 && rb.version === 2 && ra.get('v') === rb.get('v'), 'both converge on v2')
    const server2 = await a.record.snapshot('conf/1')
    assert.deepEqual(ra.get(), server2)
    assert.equal(await a.record.head('conf/1'), 2)
  })

  test('discard unsubscribes after the client\'s discard delay', async () => {
    const a = await connect(server.url, {}, { recordDiscardTimeout: 50 })
    const b = await connect(server.url)
    const ra = a.record.getRecord('discard/1')
    await ra.whenReady()
    ra.discard()
    await sleep(300)
    await b.record.setDataWithAck('discard/1', { after: true })
    assert.deepEqual(await a.record.snapshot('discard/1'), { after: true })
  })
})

describe(`records, raw protocol (${MODE})`, () => {
  let server
  before(async () => { server = await startServer({ nodeExtra: ['--record-max-size', '4096'] }) })
  after(async () => { await server.stop() })

  const rec = (r, pred) => r.next(m => m.topic === TOPIC.RECORD && pred(m))

  async function subscribed (name) {
    const r = await (await Raw.open(server.url)).login()
    r.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBECREATEANDREAD, names: [name], correlationId: '0' })
    await rec(r, m => m.action === RECORD.SUBSCRIBECREATEANDREAD && m.isAck)
    const rr = await rec(r, m => m.action === RECORD.READ_RESPONSE)
    return { r, version: rr.version, data: rr.data }
  }

  test('READ_RESPONSE of a new record carries version 0 and data "{}" on the wire', async () => {
    const { r, version, data } = await subscribed('raw/new')
    assert.equal(version, 0)
    assert.equal(data, '{}')
    r.close()
  })

  test('stale and future versions: VERSION_EXISTS with the current state, INVALID_VERSION', async () => {
    const { r } = await subscribed('raw/conf')
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/conf', version: 1, data: '{"a":1}' })
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/conf', version: 2, data: '{"a":2}', isWriteAck: true, correlationId: '5' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === '5' && m.isWriteAck)
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/conf', version: 1, data: '{"a":9}' })
    const ve = await rec(r, m => m.action === RECORD.VERSION_EXISTS)
    assert.equal(ve.version, 2)
    assert.equal(ve.data, '{"a":2}')
    assert.equal(ve.originalAction, RECORD.UPDATE)
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/conf', version: 1, data: '{"a":9}', isWriteAck: true, correlationId: '55' })
    const ve2 = await rec(r, m => m.action === RECORD.VERSION_EXISTS)
    assert.equal(ve2.correlationId, '55')
    assert.equal(ve2.isWriteAck, true)
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/conf', version: 100, data: '{"a":100}' })
    const iv = await rec(r, m => m.action === RECORD.INVALID_VERSION)
    assert.equal(iv.version, 2)
    // -1 always applies as current+1, also after a conflict
    r.send(TOPIC.RECORD, { action: RECORD.PATCH, name: 'raw/conf', version: -1, path: 'b', data: 'true', isWriteAck: true, correlationId: '6' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === '6')
    r.send(TOPIC.RECORD, { action: RECORD.READ, name: 'raw/conf' })
    const rr = await rec(r, m => m.action === RECORD.READ_RESPONSE)
    assert.equal(rr.version, 3)
    assert.deepEqual(JSON.parse(rr.data), { a: 2, b: true })
    r.close()
  })

  test('subscribers get UPDATE/PATCH with versions, ERASE as PATCH without data, never their own', async () => {
    const w = await subscribed('raw/fan')
    const s = await subscribed('raw/fan')
    w.r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/fan', version: 1, data: '{"x":1}' })
    const u = await rec(s.r, m => m.action === RECORD.UPDATE)
    assert.equal(u.version, 1)
    assert.equal(u.data, '{"x":1}')
    w.r.send(TOPIC.RECORD, { action: RECORD.PATCH, name: 'raw/fan', version: 2, path: 'y.z', data: '"q"' })
    const p = await rec(s.r, m => m.action === RECORD.PATCH)
    assert.equal(p.version, 2)
    assert.equal(p.path, 'y.z')
    assert.equal(p.data, '"q"')
    w.r.send(TOPIC.RECORD, { action: RECORD.ERASE, name: 'raw/fan', version: 3, path: 'x' })
    const e = await rec(s.r, m => m.action === RECORD.PATCH)
    assert.equal(e.version, 3)
    assert.equal(e.path, 'x')
    assert.ok(!('data' in e), 'erase travels without data')
    await sleep(200)
    assert.equal(w.r.messages.filter(m => m.topic === TOPIC.RECORD).length, 0, 'the writer hears nothing back')
    w.r.close()
    s.r.close()
  })

  test('bad data, bad paths and oversized records change nothing', async () => {
    const { r } = await subscribed('raw/bad')
    const refused = async (fields, action) => {
      r.send(TOPIC.RECORD, { name: 'raw/bad', isWriteAck: true, correlationId: 'x', ...fields })
      const m = await rec(r, m => m.isError === true)
      assert.equal(m.action, action, JSON.stringify(m))
      assert.equal(m.correlationId, 'x')
    }
    await refused({ action: RECORD.UPDATE, version: 1, data: '{bad' }, RECORD.INVALID_MESSAGE_DATA)
    await refused({ action: RECORD.UPDATE, version: 1, data: '"a string"' }, RECORD.INVALID_MESSAGE_DATA)
    await refused({ action: RECORD.PATCH, version: 1, path: 'a', data: '{bad' }, RECORD.INVALID_MESSAGE_DATA)
    await refused({ action: RECORD.PATCH, version: 1, path: 'a[x]', data: '1' }, RECORD.INVALID_MESSAGE_DATA)
    await refused({ action: RECORD.PATCH, version: 1, path: '__proto__.polluted', data: '1' }, RECORD.INVALID_MESSAGE_DATA)
    await refused({ action: RECORD.UPDATE, version: 1, data: JSON.stringify({ big: 'x'.repeat(5000) }) }, RECORD.RECORD_UPDATE_ERROR)
    await refused({ action: RECORD.PATCH, version: 1, path: 'big', data: JSON.stringify('x'.repeat(4090)) }, RECORD.RECORD_UPDATE_ERROR)
    await refused({ action: RECORD.UPDATE, name: 'raw/never-created', version: 1, data: '{}' }, RECORD.RECORD_UPDATE_ERROR)
    r.send(TOPIC.RECORD, { action: RECORD.HEAD, name: 'raw/bad' })
    const h = await rec(r, m => m.action === RECORD.HEAD_RESPONSE)
    assert.equal(h.version, 0, 'nothing was applied')
    r.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBECREATEANDREAD, names: [''], correlationId: '1' })
    await rec(r, m => m.action === RECORD.INVALID_MESSAGE_DATA)
    r.close()
  })

  test('SUBSCRIBEANDHEAD answers HEAD_RESPONSE_BULK, the ack, then -1 for missing names', async () => {
    const { r } = await subscribed('raw/head1')
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name: 'raw/head1', version: 1, data: '{"v":1}', isWriteAck: true, correlationId: '1' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT)
    const q = await (await Raw.open(server.url)).login()
    q.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBEANDHEAD, names: ['raw/head1', 'raw/head-missing'], correlationId: '0' })
    const bulk = await rec(q, m => m.action === RECORD.HEAD_RESPONSE_BULK)
    assert.deepEqual(bulk.versions, { 'raw/head1': 1 })
    await rec(q, m => m.action === RECORD.SUBSCRIBEANDHEAD && m.isAck && m.correlationId === '0')
    const miss = await rec(q, m => m.action === RECORD.HEAD_RESPONSE)
    assert.equal(miss.name, 'raw/head-missing')
    assert.equal(miss.version, -1)
    // q is subscribed now: it hears the next write
    r.send(TOPIC.RECORD, { action: RECORD.PATCH, name: 'raw/head1', version: 2, path: 'v', data: '2' })
    const p = await rec(q, m => m.action === RECORD.PATCH)
    assert.equal(p.version, 2)
    r.close()
    q.close()
  })

  test('NOTIFY resends the current state to subscribers and acks the notifier', async () => {
    const s = await subscribed('raw/nt1')
    const n = await (await Raw.open(server.url)).login()
    n.send(TOPIC.RECORD, { action: RECORD.NOTIFY, names: ['raw/nt1', 'raw/nt-none'], correlationId: 'n1' })
    const ack = await rec(n, m => m.action === RECORD.NOTIFY && m.isAck)
    assert.equal(ack.correlationId, 'n1')
    assert.deepEqual(ack.names, ['raw/nt1', 'raw/nt-none'])
    const u = await rec(s.r, m => m.action === RECORD.UPDATE)
    assert.equal(u.version, 0)
    assert.equal(u.data, '{}')
    s.r.close()
    n.close()
  })
})

describe(`records with no cache (${MODE})`, () => {
  const server = serverPerSuite({ nodeExtra: ['--cache-size', '0', '--log-level', 'debug'] })

  test('records without subscribers leave memory and come back from RocksDB intact', async () => {
    const a = await connect(server.url)
    const names = Array.from({ length: 50 }, (_, i) => `cold/${i}`)
    for (const [i, n] of names.entries()) {
      await a.record.setDataWithAck(n, { i })
      await a.record.setDataWithAck(n, 'twice', i * 2)
    }
    // the node's sweep (every 500 ms) evicts every idle record
    await until(() => /records-evicted evicted=\d+ cached=0 /.test(server.stderr()), 'all idle records evicted')
    const b = await connect(server.url)
    for (const [i, n] of names.entries()) {
      assert.equal(await b.record.head(n), 2, n)
      assert.deepEqual(await b.record.snapshot(n), { i, twice: i * 2 })
    }
    // a subscribed record stays; writes on an evicted one continue from its stored version
    const r = b.record.getRecord('cold/7')
    await r.whenReady()
    assert.equal(r.version, 2)
    await r.setWithAck('more', true)
    assert.equal(r.version, 3)
  })
})
