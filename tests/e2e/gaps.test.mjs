// gaps.test.mjs - lost deliveries are detected and recovered.
//
// nng pub/sub drops a node's delivery batch silently when a broker's queue is
// full. The node here runs with test.faultDropBroadcasts 2 (in the environment:
// EDDY_TEST_FAULT_DROP_BROADCASTS=2): every second delivery batch made only of
// broadcasts (event deliveries, record updates) is numbered but never sent. The broker must notice every gap, also one at the
// very end of a burst that no later batch reveals, bring record subscribers
// up to date by re-reading the record, and count what was lost in /metrics;
// the node counts the batches it dropped in its own.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, until, sleep, MODE } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'
import { metrics, nodeMetrics } from './lib/metrics.mjs'

describe('delivery gaps', { skip: MODE === 'haproxy' && 'needs the node environment of one process' }, () => {
  let server
  before(async () => { server = await startServer({ nodeEnv: { EDDY_TEST_FAULT_DROP_BROADCASTS: '2' } }) })
  after(async () => { await closeAll(); await server.stop() })

  // A writer's and a reader's copy of record `name`, each on a connection of its own, both ready.
  async function writerAndReader (name) {
    const written = (await connect(server.url)).record.getRecord(name)
    await written.whenReady()
    const watched = (await connect(server.url)).record.getRecord(name)
    await watched.whenReady()
    return { written, watched }
  }

  test('every record update reaches the subscriber although half of the batches are lost', async () => {
    const { written, watched } = await writerAndReader('gaps/doc')
    const seen = []
    watched.subscribe('n', v => seen.push(v))
    for (let i = 1; i <= 6; i++) {
      written.set('n', i) // one request, one delivery batch: every second one is dropped
      // no later batch reveals the loss of the last one: the heartbeat check must
      await until(() => watched.get('n') === i, `reader sees n=${i} (saw ${seen})`, 5000)
      await sleep(300) // a quiet period: each write is the tail of its own burst
    }
    await until(() => watched.version === written.version, 'reader and writer agree on the version')
    assert.deepEqual(watched.get(), written.get())
    const { sum } = await metrics(server)
    assert.ok(sum('eddy_delivery_gaps_total') >= 3, 'every second batch was a gap')
    assert.ok(sum('eddy_records_recovered_total') >= 3, 'the record was re-read and sent on')
    assert.match(server.stderr(), /delivery-gap node=\S+ at=tail/)
    assert.match(server.stderr(), /record-recovered name=gaps\/doc/)
  })

  test('a recovered state never takes a writer back below its own writes', async () => {
    // A writer sets the record again and again; every second broadcast batch
    // is lost, and the broker re-reads the record to fill each gap. By the
    // time the state read comes back the writer may have written past it:
    // sent to it as an update, the official client would merge down to it
    // (its version falls), its next write would be refused as VERSION_EXISTS
    // and lost to a remote-wins merge (a setWithAck would never settle).
    const { written: rec, watched } = await writerAndReader('gaps/writer')
    const before = (await metrics(server)).sum('eddy_records_recovered_total')
    const falls = []
    let previous = rec.version
    for (let k = 1; k <= 400; k++) {
      rec.set({ k })
      if (rec.version !== previous + 1) falls.push(`write ${k} at version ${rec.version} after ${previous}`)
      previous = rec.version
      await sleep(k % 4 === 0 ? 3 : 0)
    }
    await until(() => watched.version === rec.version, 'the reader reaches the last version')
    assert.deepEqual(falls, [], 'the writer\'s version only ever rose by its own writes')
    assert.deepEqual(watched.get(), { k: 400 })
    assert.deepEqual(rec.get(), { k: 400 })
    const { sum } = await metrics(server)
    assert.ok(sum('eddy_records_recovered_total') > before, `gaps were recovered on the way (${sum('eddy_delivery_gaps_total')} gaps)`)
  })

  test('lost events are counted in /metrics and logged', async () => {
    const sub = await connect(server.url)
    const pub = await connect(server.url)
    const got = []
    sub.event.subscribe('gaps/ev', v => got.push(v))
    await sleep(300)
    const before = (await metrics(server)).sum('eddy_delivery_lost_operations_total')
    for (let i = 0; i < 8; i++) {
      pub.event.emit('gaps/ev', i)
      await sleep(100)
    }
    await until(async () => (await metrics(server)).sum('eddy_delivery_lost_operations_total') >= before + 8 - got.length,
      'every lost event counted', 5000)
    assert.ok(got.length < 8 && got.length > 0, `some events lost, some delivered (${got.length})`)
    const { text } = await metrics(server)
    assert.match(text, /^# TYPE eddy_delivery_lost_operations_total counter$/m)
    assert.match(text, /^eddy_node_up\{node="[^"]+"\} 1$/m)
    // the node counts what it numbered but did not send, by reason (its own /metrics in cluster mode)
    const n = await nodeMetrics(server)
    assert.ok(n.sum('eddy_node_delivery_batches_dropped_total', 'reason="fault_injected"') >= 3 + 8 - got.length)
    assert.equal(n.sum('eddy_node_delivery_batches_dropped_total', 'reason="outbox_full"'), 0)
  })
})
