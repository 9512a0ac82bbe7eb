// hostile-json.test.mjs - record data at the edges of JSON (issue 13, findings 3
// and 4): one dialect for the whole server, which is what JSON.stringify writes
// (numbers of any length, \u0000, lone surrogate escapes), kept byte for byte
// and patchable afterwards, the rest refused at the door; and a path that would
// build more than record.maxSize (a 2 KB message asking for 127 MB of nulls) is
// refused before anything is built, with the record unchanged and the server
// answering everyone else as usual.
// run-tests: alone (it bounds how long honest work takes: nothing else may load the machine)
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { MODE } from './lib/server.mjs'
import { connect, Raw, TOPIC, RECORD } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

const rec = (r, pred, timeout) => r.next(m => m.topic === TOPIC.RECORD && pred(m), timeout)

// A raw client subscribed to name (the record is created if missing).
async function subscribed (url, name) {
  const r = await (await Raw.open(url)).login()
  r.send(TOPIC.RECORD, { action: RECORD.SUBSCRIBECREATEANDREAD, names: [name], correlationId: '0' })
  await rec(r, m => m.action === RECORD.SUBSCRIBECREATEANDREAD && m.isAck)
  await rec(r, m => m.action === RECORD.READ_RESPONSE)
  return r
}

// The record's text as the server holds it.
async function serverText (r, name) {
  r.send(TOPIC.RECORD, { action: RECORD.READ, name })
  const rr = await rec(r, m => m.action === RECORD.READ_RESPONSE && m.name === name)
  return { version: rr.version, data: rr.data }
}

// Peak resident memory (KiB) of the process that applies records, where there
// is one process to ask (standalone and cluster modes).
function peakKiB (server) {
  const p = server.procs.standalone || server.procs.node
  if (!p) return null
  const m = readFileSync(`/proc/${p.child.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)
  return m ? Number(m[1]) : null
}

describe(`hostile JSON (${MODE})`, () => {
  // record.maxSize: the default 1 MiB. --sync never: the round-trip bound is on
  // the node's work, not on an fsync (one took 197-370 ms in CI on a loaded
  // machine, in hostile-rate and hostile-listen)
  const server = serverPerSuite({ extra: ['--sync', 'never'] })

  test('what JSON.stringify writes (2**64, \\u0000, lone surrogates) is kept exactly and stays patchable', async () => {
    const a = await connect(server.url)
    const b = await connect(server.url)
    const ra = a.record.getRecord('hostile/dialect')
    await ra.whenReady()
    await ra.setWithAck({ id: 2 ** 64, s: '\u0000', l: '\ud800', big: 1e300, tiny: 5e-324, f: 0.1, neg: -(2 ** 70) })
    await ra.setWithAck('name', 'x') // INVALID_MESSAGE_DATA when the patcher reads another dialect
    await ra.setWithAck('l', '\udc00x\ud800')
    await ra.setWithAck('deep.n', [2 ** 64, '\u0000'])
    assert.equal(ra.version, 4)
    const rb = b.record.getRecord('hostile/dialect')
    await rb.whenReady()
    assert.equal(rb.version, 4)
    assert.equal(JSON.stringify(rb.get()), JSON.stringify(ra.get()))
    // b hears later patches and keeps the same copy
    await ra.setWithAck('more', '\ud83d\ude00\udfff')
    await ra.setWithAck('id', 2 ** 65)
    await new Promise(resolve => { const t = setInterval(() => { if (rb.version === 6) { clearInterval(t); resolve() } }, 10) })
    assert.equal(JSON.stringify(rb.get()), JSON.stringify(ra.get()))
    // the server's text is what the client wrote, number text and escapes included
    const r = await (await Raw.open(server.url)).login()
    const { version, data } = await serverText(r, 'hostile/dialect')
    assert.equal(version, 6)
    assert.equal(data, JSON.stringify(ra.get()))
    assert.match(data, /"id":36893488147419103000,/)
    assert.match(data, /"s":"\\u0000","l":"\\udc00x\\ud800"/)
    r.close()
  })

  test('values outside the dialect are refused at the door with INVALID_MESSAGE_DATA', async () => {
    const r = await subscribed(server.url, 'hostile/door')
    let n = 0
    const refused = async fields => {
      const id = `d${n++}`
      r.send(TOPIC.RECORD, { name: 'hostile/door', isWriteAck: true, correlationId: id, ...fields })
      const m = await rec(r, m => m.correlationId === id)
      assert.equal(m.isError, true, JSON.stringify(fields))
      assert.equal(m.action, RECORD.INVALID_MESSAGE_DATA, JSON.stringify(fields))
    }
    await refused({ action: RECORD.UPDATE, version: 1, data: '{"x":1e400}' })
    await refused({ action: RECORD.UPDATE, version: 1, data: '[1.7976931348623159e308]' })
    await refused({ action: RECORD.UPDATE, version: 1, data: `{"x":1${'0'.repeat(309)}}` })
    await refused({ action: RECORD.PATCH, version: 1, path: 'x', data: '-1e999' })
    await refused({ action: RECORD.PATCH, version: 1, path: 'x', data: 'NaN' })
    await refused({ action: RECORD.PATCH, version: 1, path: 'x', data: 'Infinity' })
    await refused({ action: RECORD.PATCH, version: 1, path: 'x.y', data: '{"z":[0.1,1e309]}' })
    await refused({ action: RECORD.CREATEANDUPDATE, version: -1, data: '{"x":"\\u12"}' })
    assert.equal((await serverText(r, 'hostile/door')).version, 0, 'nothing was applied')
    // the same numbers inside the dialect are fine, and kept as sent
    r.send(TOPIC.RECORD, { action: RECORD.PATCH, name: 'hostile/door', version: 1, path: 'x', data: '1.7976931348623157e+308', isWriteAck: true, correlationId: 'ok1' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === 'ok1')
    r.send(TOPIC.RECORD, { action: RECORD.PATCH, name: 'hostile/door', version: 2, path: 'y', data: `1${'0'.repeat(300)}`, isWriteAck: true, correlationId: 'ok2' })
    await rec(r, m => m.action === RECORD.WRITE_ACKNOWLEDGEMENT && m.correlationId === 'ok2')
    assert.deepEqual(await serverText(r, 'hostile/door'), { version: 2, data: `{"x":1.7976931348623157e+308,"y":1${'0'.repeat(300)}}` })
    r.close()
  })

  test('a path bomb is refused before it is built: an error, the record unchanged, nobody else slowed', async () => {
    const honest = await connect(server.url)
    const hr = honest.record.getRecord('hostile/honest')
    await hr.whenReady()
    await hr.setWithAck('n', 0)
    const peak = peakKiB(server)
    const bomb = 'a' + '[100000]'.repeat(255) // 2041 bytes asking for 255 x 100000 nulls
    const attacker = await (await Raw.open(server.url)).login()
    const N = 8
    for (let i = 0; i < N; i++) {
      attacker.send(TOPIC.RECORD, { action: RECORD.CREATEANDPATCH, name: 'hostile/bomb', version: -1, path: bomb, data: '1', isWriteAck: true, correlationId: `b${i}` })
    }
    const trips = []
    for (let i = 1; i <= 5; i++) {
      const t0 = performance.now()
      await hr.setWithAck('n', i)
      trips.push(Math.round(performance.now() - t0))
    }
    for (let i = 0; i < N; i++) {
      const m = await rec(attacker, m => m.correlationId === `b${i}`, 60000)
      assert.equal(m.isError, true)
      assert.equal(m.action, RECORD.RECORD_UPDATE_ERROR)
    }
    assert.ok(Math.max(...trips) < 100, `an honest client's round trips during the attack: ${trips} ms`)
    if (peak !== null) {
      const grown = peakKiB(server) - peak
      assert.ok(grown < 64 * 1024, `the server's peak memory grew by ${grown} KiB`)
    }
    // the official client gets the same answer; nothing is created or changed
    const a = await connect(server.url)
    await assert.rejects(a.record.setDataWithAck('hostile/bomb', bomb, 1), e => e === 'RECORD_UPDATE_ERROR')
    assert.equal(await a.record.head('hostile/bomb'), -1, 'never created')
    await a.record.setDataWithAck('hostile/kept', { k: 1 })
    await assert.rejects(a.record.setDataWithAck('hostile/kept', `k${'[100000]'.repeat(20)}`, 1), e => e === 'RECORD_UPDATE_ERROR')
    assert.equal(await a.record.head('hostile/kept'), 1)
    assert.deepEqual(await a.record.snapshot('hostile/kept'), { k: 1 })
    // growth up to the limit still works (one array of 100000 nulls is 500 KB)
    await a.record.setDataWithAck('hostile/kept', 'list[100000]', 1)
    assert.equal((await a.record.snapshot('hostile/kept')).list.length, 100001)
    assert.equal(hr.get('n'), 5)
    attacker.close()
  })
})
