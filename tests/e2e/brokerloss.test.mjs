// brokerloss.test.mjs - two-process mode: a broker that goes away (SIGKILL,
// no goodbye) has its interest dropped by the node after cluster.brokerTimeout,
// and a new broker on the same node serves events at once.
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, sleep, until, MODE, Proc } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

describe('broker loss', { skip: MODE !== 'cluster' && 'two-process mode only' }, () => {
  let server
  after(async () => {
    await closeAll()
    if (server) await server.stop()
  })

  test('the node drops a killed broker\'s interest; a restarted broker carries on', async () => {
    server = await startServer({ nodeExtra: ['--broker-timeout', '2000'] })
    const a = await connect(server.url)
    const b = await connect(server.url)
    a.event.subscribe('loss/1', () => {})
    b.event.subscribe('loss/2', () => {})
    await sleep(400)
    const node = server.procs.node
    // an idle broker is not mistaken for a dead one: heartbeats keep it
    await sleep(5000)
    assert.ok(!/peer-expired/.test(node.stderr), 'no live broker expired')
    const broker = server.procs.broker
    const killed = await broker.stop('SIGKILL')
    assert.equal(killed.signal, 'SIGKILL')
    await closeAll()
    const m = await node.waitFor(/peer-expired peer=[0-9a-f]+ silent_ms=(\d+) .*?\bevent_names_dropped=(\d+)/, 5000)
    assert.equal(Number(m[2]), 2)
    assert.ok(Number(m[1]) >= 2000)

    // a fresh broker on the same node
    const req = node.stderr.match(/node-listening request=(\S+) delivery=(\S+)/)
    const fresh = new Proc('broker', ['broker', '--host', '127.0.0.1', '--port', '0', '--node', `${req[1]},${req[2]}`])
    server.procs.broker = fresh
    server.replace(broker, fresh)
    const port = Number((await fresh.waitFor(/broker-listening port=(\d+)/))[1])
    const url = `ws://127.0.0.1:${port}/deepstream`
    const s = await connect(url)
    const p = await connect(url)
    const got = []
    s.event.subscribe('loss/1', d => got.push(d))
    await sleep(400)
    p.event.emit('loss/1', 'after')
    await until(() => got.length === 1, 'delivery through the new broker')
    assert.deepEqual(got, ['after'])
  })
})
