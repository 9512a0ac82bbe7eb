// durability.test.mjs - acknowledged writes survive SIGKILL with their versions;
// records created before login and records held across a server restart
// resynchronise the way the client expects (SUBSCRIBEANDHEAD, READ, CREATEANDUPDATE);
// a crash (a fatal signal) writes a backtrace and still dies of its signal.
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { startServer, until, MODE, BIN } from './lib/server.mjs'
import { connect, newClient, closeAll } from './lib/client.mjs'

describe(`durability (${MODE})`, () => {
  afterEach(closeAll)

  for (const sync of ['batch', 'always']) {
    test(`SIGKILL after acknowledged writes loses nothing (storage.sync ${sync})`, async () => {
      let server = await startServer({ nodeExtra: ['--sync', sync] })
      const a = await connect(server.url)
      const want = {}
      // 20 records, 10 acknowledged writes each, whole and path, issued concurrently
      await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const name = `dur-${sync}/${i}`
        const r = a.record.getRecord(name)
        await r.whenReady()
        for (let v = 1; v <= 10; v++) {
          if (v % 2) await r.setWithAck({ i, v, pad: 'p'.repeat(v * 10) })
          else await r.setWithAck('v', v)
        }
        want[name] = { version: r.version, data: r.get() }
      }))
      await a.record.setDataWithAck(`dur-${sync}/upsert`, 'deep.path[2]', 'x')
      want[`dur-${sync}/upsert`] = { version: 1, data: { deep: { path: [null, null, 'x'] } } }
      const gone = a.record.getRecord(`dur-${sync}/deleted`)
      await gone.whenReady()
      await gone.setWithAck({ doomed: true })
      await gone.delete()
      await closeAll()
      await server.kill()

      server = await server.restart()
      try {
        const b = await connect(server.url)
        for (const [name, { version, data }] of Object.entries(want)) {
          assert.equal(version, name.endsWith('upsert') ? 1 : 10)
          assert.equal(await b.record.head(name), version, name)
          assert.deepEqual(await b.record.snapshot(name), data, name)
        }
        assert.equal(await b.record.head(`dur-${sync}/deleted`), -1)
        // writing on goes on from the recovered version
        const r = b.record.getRecord(`dur-${sync}/0`)
        await r.whenReady()
        assert.equal(r.version, 10)
        await r.setWithAck('after', true)
        assert.equal(r.version, 11)
      } finally {
        await closeAll()
        await server.stop()
      }
    })
  }

  test('a record created and written before login is created on the server at login', async () => {
    const server = await startServer()
    try {
      const c = newClient(server.url)
      const r = c.record.getRecord('pre/1')
      r.set({ offline: true })
      await c.login({ username: 'late' })
      const other = await connect(server.url)
      await until(async () => (await other.record.head('pre/1')) === 1, 'created at version 1')
      assert.deepEqual(await other.record.snapshot('pre/1'), { offline: true })
    } finally {
      await closeAll()
      await server.stop()
    }
  })

  test('a client holding records across a server restart resynchronises', async () => {
    let server = await startServer()
    const a = await connect(server.url, {}, { maxReconnectAttempts: 20, reconnectIntervalIncrement: 500 })
    const ra = a.record.getRecord('re/1')
    await ra.whenReady()
    await ra.setWithAck({ n: 1 })
    await server.kill()
    server = await server.restart()
    try {
      await until(() => a.getConnectionState() === 'OPEN', 'client reconnected', 15000)
      const b = await connect(server.url)
      const rb = b.record.getRecord('re/1')
      await rb.whenReady()
      assert.equal(rb.version, 1)
      await rb.setWithAck('n', 2)
      await until(() => ra.get('n') === 2, 'a hears b after the restart', 10000)
      assert.equal(ra.version, 2)
      // and a's own writes still go through with the right versions
      await ra.setWithAck('m', 3)
      assert.equal(ra.version, 3)
      await until(() => rb.version === 3 && rb.get('m') === 3, 'b hears a')
      const c = await connect(server.url)
      assert.equal(await c.record.head('re/1'), 3) // c has no local copy: asks the server
    } finally {
      await closeAll()
      await server.stop()
    }
  })

  // A sanitizer build reports crashes itself (the handler is not installed there); haproxy
  // mode's processes are cluster.sh's.
  test('a fatal signal writes a backtrace, then the process dies of it', { skip: MODE === 'haproxy' || /asan|tsan/.test(BIN) }, async () => {
    const server = await startServer()
    try {
      const { code, signal } = await server.edge.stop('SIGSEGV')
      assert.equal(signal, 'SIGSEGV', `exit ${code}/${signal}:\n${server.edge.stderr}`)
      assert.match(server.edge.stderr, /eddy: fatal signal SIGSEGV \(segmentation fault\); backtrace follows/)
      assert.match(server.edge.stderr, /eddy\(\+0x[0-9a-f]+\)/, 'frames of eddy itself, with offsets')
    } finally {
      await server.kill()
      rmSync(server.dataDir, { recursive: true, force: true })
    }
  })
})
