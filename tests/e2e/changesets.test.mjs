// changesets.test.mjs - eddy's atomic changesets (README: Changesets), sent
// through the HTTP API's "changeset" operation and watched by official
// websocket clients: a property test (random changesets and single writes
// from concurrent writers on the same records: no subscriber ever sees part
// of a changeset, or one interleaved with another write; failed changesets
// change nothing; every record's versions arrive one by one), a version
// conflict on one operation failing all, records of different shards refused
// at once naming the shards, bad input, and an acknowledged changeset
// surviving SIGKILL.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, until, MODE } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'
import { serverPerSuite } from './lib/suite.mjs'

async function api (server, body) {
  const res = await fetch(`http://127.0.0.1:${server.port}/api`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ body })
  })
  const text = await res.text()
  let json = null
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, text, json }
}
const changeset = operations => ({ topic: 'record', action: 'changeset', operations })
const set = (name, data, version) => ({ op: 'set', name, data, ...(version !== undefined ? { version } : {}) })
const write = (recordName, data) => ({ topic: 'record', action: 'write', recordName, data })
const read = recordName => ({ topic: 'record', action: 'read', recordName })
const unique = p => `${p}-${Math.random().toString(36).slice(2, 10)}`

// Subscribes client to names; every update seen goes to log as { name, version, stamp }.
function watch (client, names, log) {
  return Promise.all(names.map(async name => {
    const r = client.record.getRecord(name)
    await r.whenReady()
    r.subscribe(data => log.push({ name, version: r.version, stamp: data?.stamp }))
    return r
  }))
}

describe(`changesets (${MODE})`, () => {
  const server = serverPerSuite()

  test('property: concurrent changesets and single writes; no subscriber sees a partial or interleaved changeset', async () => {
    const tag = unique('{prop')
    const names = Array.from({ length: 4 }, (_, i) => `${tag}}/r${i}`)
    const subscribers = await Promise.all([0, 1, 2].map(() => connect(server.url)))
    const logs = subscribers.map(() => [])
    const watched = await Promise.all(subscribers.map((c, i) => watch(c, names, logs[i])))
    // the records exist (version 1) before the writers start
    assert.equal((await api(server, [changeset(names.map(n => set(n, { stamp: 'init' })))])).json.result, 'SUCCESS')
    await until(() => watched.every(rs => rs.every(r => r.version === 1)), 'every subscriber at version 1')
    for (const log of logs) log.length = 0

    const applied = new Map() // stamp -> names it wrote
    const failed = new Set()
    let seed = 7
    const rand = n => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
    const writer = async w => {
      for (let i = 0; i < 25; i++) {
        const stamp = `w${w}-${i}`
        if (rand(3) === 0) { // a single write
          const name = names[rand(names.length)]
          const r = await api(server, [write(name, { stamp })])
          assert.equal(r.json.result, 'SUCCESS', r.text)
          applied.set(stamp, [name])
          continue
        }
        const chosen = names.filter(() => rand(2) === 0)
        if (chosen.length < 2) chosen.splice(0, chosen.length, names[0], names[1 + rand(names.length - 1)])
        // one in four carries an impossible version: it must fail whole
        const doomed = rand(4) === 0
        const ops = chosen.map((n, k) => set(n, { stamp }, doomed && k === chosen.length - 1 ? 1 : undefined))
        const r = await api(server, [changeset(ops)])
        if (doomed) {
          assert.equal(r.json.result, 'FAILURE', r.text)
          assert.equal(r.json.body[0].errorEvent, 'VERSION_EXISTS')
          assert.equal(r.json.body[0].failed, chosen.length - 1)
          failed.add(stamp)
        } else {
          assert.equal(r.json.result, 'SUCCESS', r.text)
          assert.equal(r.json.body[0].results.length, chosen.length)
          applied.set(stamp, chosen)
        }
      }
    }
    await Promise.all([0, 1, 2, 3].map(writer))

    // every subscriber catches up with the records as they are now
    const now = (await api(server, names.map(read))).json.body
    await until(() => watched.every(rs => rs.every((r, k) => r.version === now[k].version)), 'subscribers caught up', 15000)
    for (const [s, log] of logs.entries()) {
      // versions arrive one by one per record
      for (const name of names) {
        const versions = log.filter(e => e.name === name).map(e => e.version)
        versions.forEach((v, k) => assert.equal(v, 2 + k, `subscriber ${s}: ${name} versions ${versions}`))
      }
      for (const e of log) assert.ok(!failed.has(e.stamp), `subscriber ${s} saw failed changeset ${e.stamp}`)
      // every applied changeset arrives whole, its updates one after the other
      for (const [stamp, wrote] of applied) {
        const at = log.flatMap((e, k) => e.stamp === stamp ? [k] : [])
        assert.deepEqual(log.filter(e => e.stamp === stamp).map(e => e.name).sort(), [...wrote].sort(),
          `subscriber ${s}: ${stamp} seen on ${at.map(k => log[k].name)}, wrote ${wrote}`)
        assert.equal(at[at.length - 1] - at[0], at.length - 1, `subscriber ${s}: ${stamp} interleaved: ` +
          JSON.stringify(log.slice(at[0], at[at.length - 1] + 1)))
      }
    }
    assert.ok(failed.size > 0 && applied.size > 20, `exercised: ${applied.size} applied, ${failed.size} failed`)
  })

  test('a version conflict on one operation fails all: nothing changes, the results say which', async () => {
    const tag = unique('{conflict')
    const [a, b] = [`${tag}}/a`, `${tag}}/b`]
    assert.equal((await api(server, [changeset([set(a, { n: 1 }), set(b, { n: 1 })])])).json.result, 'SUCCESS')
    const client = await connect(server.url)
    const log = []
    await watch(client, [a, b], log)
    const r = await api(server, [changeset([set(a, { n: 2 }, 2), set(b, { n: 2 }, 5), { op: 'delete', name: a }])])
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, {
      result: 'FAILURE',
      body: [{
        success: false, error: 'record "' + a + '" appears twice (one operation per record)', errorTopic: 'record',
        errorEvent: 'INVALID_MESSAGE_DATA', failed: 2, results: []
      }]
    })
    const c = await api(server, [changeset([set(a, { n: 2 }, 2), set(b, { n: 2 }, 5)])])
    assert.deepEqual(c.json.body[0], {
      success: false, error: 'version conflict', errorTopic: 'record', errorEvent: 'INVALID_VERSION', failed: 1,
      results: [{ ok: false, error: 'ABORTED', reason: 'operation 1 failed' },
        { ok: false, error: 'INVALID_VERSION', reason: 'version conflict', version: 1 }]
    })
    const after = await api(server, [read(a), read(b)])
    assert.deepEqual(after.json.body, [{ success: true, version: 1, data: { n: 1 } }, { success: true, version: 1, data: { n: 1 } }])
    // the next change is the first the subscriber hears of
    assert.equal((await api(server, [changeset([set(a, { n: 3 }, 2), set(b, { n: 3 }, 2)])])).json.result, 'SUCCESS')
    await until(() => log.length === 2, 'the applied changeset')
    assert.deepEqual(log.map(e => [e.name, e.version]), [[a, 2], [b, 2]])
  })

  test('records of different shards are refused at once, naming the shards; nothing is written', async () => {
    const x = unique('{x') + '}/a'
    const y = unique('{y') + '}/b'
    const r = await api(server, [changeset([set(x, { n: 1 }), set(y, { n: 1 })])])
    assert.equal(r.json.result, 'FAILURE')
    assert.equal(r.json.body[0].errorEvent, 'CROSS_SHARD')
    assert.match(r.json.body[0].error, new RegExp(`^CROSSSHARD: "${x.replace(/[{}]/g, '\\$&')}" is in shard \\d+, "${y.replace(/[{}]/g, '\\$&')}" is in shard \\d+$`))
    const after = await api(server, [read(x)])
    assert.equal(after.json.body[0].success, false)
  })

  test('bad input is refused whole with the reason (400), erase and delete apply', async () => {
    const tag = unique('{bad') + '}'
    for (const [ops, reason] of [
      [[], 'a changeset is a non-empty array of operations'],
      [[{ op: 'set', name: `${tag}/a`, data: 3 }], 'operation 0: a set without "path" needs an object or array as "data"'],
      [[{ op: 'erase', name: `${tag}/a` }], 'operation 0: erase needs a "path"'],
      [[{ op: 'set', name: `${tag}/a`, data: {}, extra: 1 }], 'operation 0: unknown property "extra" for "set"'],
      [Array.from({ length: 101 }, (_, i) => set(`${tag}/${i}`, {})), 'a changeset holds at most 100 operations, not 101']
    ]) {
      const r = await api(server, [changeset(ops)])
      assert.equal(r.status, 400)
      assert.equal(r.text.trim(), `Failed to parse JIF object at index 0. Reason: ${reason}`)
    }
    const ok = await api(server, [changeset([set(`${tag}/a`, { keep: 1, drop: 2 }), set(`${tag}/b`, { n: 1 })])])
    assert.equal(ok.json.result, 'SUCCESS')
    const client = await connect(server.url)
    const b = client.record.getRecord(`${tag}/b`)
    await b.whenReady()
    let deleted = false
    b.on('delete', () => { deleted = true })
    const r = await api(server, [changeset([{ op: 'erase', name: `${tag}/a`, path: 'drop', version: 2 }, { op: 'delete', name: `${tag}/b`, version: 1 }])])
    assert.deepEqual(r.json.body[0], { success: true, results: [{ ok: true, version: 2 }, { ok: true, version: -1 }] })
    await until(() => deleted, 'the subscriber of the deleted record hears it')
    const after = await api(server, [read(`${tag}/a`)])
    assert.deepEqual(after.json.body[0], { success: true, version: 2, data: { keep: 1 } })
  })
})

describe(`changesets survive SIGKILL (${MODE})`, () => {
  test('an acknowledged changeset is all there after kill -9 and a restart', async () => {
    let server = await startServer()
    const names = Array.from({ length: 5 }, (_, i) => `{dur}/r${i}`)
    try {
      for (let round = 1; round <= 3; round++) {
        const r = await api(server, [changeset(names.map(n => set(n, { round, pad: 'x'.repeat(100) }, round)))])
        assert.equal(r.json.result, 'SUCCESS', r.text)
      }
      await server.kill()
      server = await server.restart()
      const after = await api(server, names.map(read))
      for (const b of after.json.body) assert.deepEqual(b, { success: true, version: 3, data: { round: 3, pad: 'x'.repeat(100) } })
    } finally {
      await closeAll()
      await server.stop()
    }
  })
})
