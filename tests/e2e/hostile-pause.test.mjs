// hostile-pause.test.mjs - a node that stops answering is treated like one
// that died. With the node stopped (SIGSTOP), writes and reads of its records
// get MESSAGE_DENIED within cluster.requestTimeout instead of hanging; when it
// resumes (SIGCONT) everything works again. Two-process mode only (the node
// must be a process of its own).
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, until, MODE } from './lib/server.mjs'
import { connect } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

describe('a paused node', { skip: MODE !== 'cluster' && 'two-process mode only' }, () => {
  const server = serverPerSuite({ extra: ['--request-timeout', '2000'] })

  test('its waiting requesters get an error within the request timeout; it recovers when resumed', { timeout: 60000 }, async () => {
    const a = await connect(server.url)
    const rec = a.record.getRecord('pause/1')
    await rec.whenReady()
    await rec.setWithAck('v', 1)
    const node = server.procs.node.child
    process.kill(node.pid, 'SIGSTOP')
    try {
      const started = Date.now()
      const outcome = await Promise.race([
        rec.setWithAck('v', 2).then(() => 'acknowledged', err => `error: ${err}`),
        sleep(8000).then(() => 'hung')
      ])
      const took = Date.now() - started
      assert.match(outcome, /^error/, 'the write is answered with an error, not left hanging')
      assert.ok(took < 6000, `answered in ${took} ms (request timeout 2000 ms)`)
      const read = await Promise.race([
        a.record.snapshot('pause/other').then(() => 'read', err => `error: ${err}`),
        sleep(8000).then(() => 'hung')
      ])
      assert.match(read, /^error/, 'a read is answered with an error too')
    } finally {
      process.kill(node.pid, 'SIGCONT')
    }
    // resumed: new writes and subscriptions work
    const b = await connect(server.url)
    const rec2 = b.record.getRecord('pause/2')
    await rec2.whenReady()
    await until(async () => {
      try { await rec2.setWithAck('v', Date.now()); return true } catch { return false }
    }, 'writes work again', 15000)
    let got = null
    a.event.subscribe('pause/ev', d => { got = d })
    await sleep(400)
    b.event.emit('pause/ev', 'back')
    await until(() => got === 'back', 'events work again')
    assert.equal(server.procs.node.child.exitCode, null)
  })
})
