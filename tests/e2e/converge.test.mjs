// converge.test.mjs - a client whose copy of a record ran ahead of the record
// (its version raised for writes that never applied) is brought back to the
// server's version and data without the application acting (issue 18, item 5;
// README: Records, "When writes do not apply"). An INVALID_VERSION refusal is
// followed by an UPDATE at the record's current version, to the writer alone
// and once per burst of refusals; the official client merges it (remote wins)
// and its next write succeeds. The outage half (writes refused while the
// owning node is down) is cluster-tests/converge.test.mjs.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { until, MODE } from './lib/server.mjs'
import { serverPerSuite } from './lib/suite.mjs'
import { connect, Raw, TOPIC, RECORD } from './lib/client.mjs'

let n = 0
const unique = prefix => `${prefix}/${process.pid}-${++n}`

describe(`a copy ahead of the record is corrected (${MODE})`, () => {
  // record.maxSize small, so a write the server refuses for its size is easy to make
  const server = serverPerSuite({ extra: ['--record-max-size', '4096'], nodeExtra: ['--record-max-size', '4096'] })

  const rec = (r, pred) => r.next(m => m.topic === TOPIC.RECORD && pred(m))

  // A raw client subscribed to name; returns it and the state it read.
  async function subscribed (name) {
    const r = await (await Raw.open(server.url)).login()
    r.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBECREATEANDREAD, names: [name], correlationId: '0' })
    await rec(r, m => m.action === RECORD.SUBSCRIBECREATEANDREAD && m.isAck)
    const rr = await rec(r, m => m.action === RECORD.READ_RESPONSE)
    return { r, version: rr.version }
  }

  // Everything r was sent about name before a HEAD round trip (deliveries to
  // a session are ordered: what the server sent before the answer is there).
  async function settled (r, name) {
    r.send(TOPIC.RECORD, { action: RECORD.HEAD, name })
    await rec(r, m => m.action === RECORD.HEAD_RESPONSE && m.name === name)
    const got = r.messages.filter(m => m.topic === TOPIC.RECORD && m.name === name)
    r.messages = r.messages.filter(m => !(m.topic === TOPIC.RECORD && m.name === name))
    return got
  }

  test('INVALID_VERSION is followed by an UPDATE at the current version with the current data, once per burst', async () => {
    const name = unique('converge/raw')
    const { r } = await subscribed(name)
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: 1, data: '{"v":1}', isWriteAck: true, correlationId: 'a' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === 'a')
    // three writes ahead of the record, sent before any answer: each refused, one correction
    for (const v of [5, 6, 7]) {
      r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: v, data: `{"ahead":${v}}`, isWriteAck: v === 7, correlationId: 'b' })
    }
    const burst = await settled(r, name)
    const refused = burst.filter(m => m.action === RECORD.INVALID_VERSION)
    assert.equal(refused.length, 3, JSON.stringify(burst))
    assert.equal(refused[2].isWriteAck, true)
    assert.equal(refused[2].correlationId, 'b')
    assert.equal(refused[0].version, 1) // as deepstream: the record's version
    const updates = burst.filter(m => m.action === RECORD.UPDATE)
    assert.equal(updates.length, 1, JSON.stringify(burst))
    assert.equal(updates[0].version, 1)
    assert.equal(updates[0].data, '{"v":1}')
    assert.ok(burst.indexOf(updates[0]) > burst.indexOf(refused[0]), 'the correction follows the refusal')
    // a write from the corrected version applies; one ahead again is corrected again
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: 2, data: '{"v":2}', isWriteAck: true, correlationId: 'c' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === 'c')
    r.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: 9, data: '{"v":9}' })
    const again = await settled(r, name)
    assert.deepEqual(again.map(m => [m.action, m.version ?? null, m.data ?? null]).filter(([a]) => a !== RECORD.HEAD_RESPONSE),
      [[RECORD.INVALID_VERSION, 2, '{"v":9}'], [RECORD.UPDATE, 2, '{"v":2}']])
    r.close()
  })

  test('a writer that does not hold the record, or a subscriber that did not write, gets no correction', async () => {
    const name = unique('converge/others')
    const { r: holder } = await subscribed(name)
    const writer = await (await Raw.open(server.url)).login()
    writer.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: 1, data: '{"v":1}', isWriteAck: true, correlationId: 'a' })
    await rec(writer, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT)
    writer.send(TOPIC.RECORD, { action: RECORD.UPDATE, name, version: 4, data: '{"v":4}' })
    const seen = await settled(writer, name)
    assert.deepEqual(seen.map(m => m.action).filter(a => a !== RECORD.HEAD_RESPONSE), [RECORD.INVALID_VERSION])
    const heard = await settled(holder, name)
    assert.deepEqual(heard.filter(m => m.action === RECORD.UPDATE).map(m => m.version), [1]) // the write, nothing else
    holder.close()
    writer.close()
  })

  test('an official client whose version ran ahead (a write refused for its size) converges and writes again', async () => {
    const name = unique('converge/official')
    const c = await connect(server.url)
    const reader = await connect(server.url)
    const record = c.record.getRecord(name)
    await record.whenReady()
    await record.setWithAck({ n: 1 })
    assert.equal(record.version, 1)
    // refused (record.maxSize): the client has raised its version to 2 all the same
    await assert.rejects(record.setWithAck({ big: 'x'.repeat(5000) }))
    assert.equal(record.version, 2)
    // its next write carries version 3: INVALID_VERSION, then the correction
    await assert.rejects(record.setWithAck({ n: 3 }), /INVALID_VERSION/)
    await until(() => record.version === 1 && record.get().n === 1 && record.get().big === undefined,
      `the copy back at the server's version (it is at ${record.version}: ${JSON.stringify(record.get())})`)
    await record.setWithAck({ n: 4 })
    assert.equal(record.version, 2)
    const fresh = await reader.record.snapshot(name)
    assert.deepEqual(fresh, { n: 4 })
    assert.equal(await reader.record.head(name), 2)
  })
})
