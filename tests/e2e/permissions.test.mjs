// permissions.test.mjs - deepstream's Valve permissions (permission.type
// config) with the official client: every action allowed and denied for
// records, events, RPC, presence and listening, $variables, data/oldData rules
// applied by the owning node, user.data from file auth's serverData, bulk
// messages with some names denied (as deepstream answers them), reload on
// SIGHUP while clients stay connected, and a rule that does not compile
// stopping start-up with the file, section, pattern and column.
import { test, describe, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, runEddy, sleep, until, MODE } from './lib/server.mjs'
import { connect, closeAll, Raw, TOPIC, EVENT, RECORD, RPC } from './lib/client.mjs'

const rules = (moreEvents = '') => `
presence:
  "*":
    allow: true
  "hidden-user":
    allow: false
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
    delete: false
  "hidden/*":
    read: false
  "nocreate/*":
    create: false
  "profile/$userId":
    write: "user.id === $userId"
    delete: "user.id === $userId"
  "counter/*":
    write: "oldData === null || data.n > oldData.n"
  "admin/*":
    write: "user.data.role === 'admin'"
  "secret-listen/*":
    listen: false
  "order/$id":
    write: "data.qty <= _('stock/' + $id).left"
  "act/*":
    read: "action !== 5"
event:
  "*":
    publish: true
    subscribe: true
    listen: true
  "secret/*":
    publish: false
    subscribe: false
    listen: false
  "chat/$room":
    publish: "data.room === $room && user.isAuthenticated"
  "gated/*":
    publish: "_('gate/config').open === true"
  "three/*":
    publish: "_('x/1').v + _('x/2').v + _('x/3').v > 0"
  "two/*":
    publish: "_('x/1').v + _('x/2').v > 0"
  "mixed/*":
    publish: "data.gated !== true || _('gate/config').open === true"
${moreEvents}rpc:
  "*":
    provide: true
    request: true
  "forbidden":
    provide: false
    request: false
  "guarded":
    request: "_('gate/rpc').open === true"
  "double":
    request: "data < 100"
`
const RULES = rules()

// The error events a client reports, as [event, topic] pairs.
function errorsOf (client) {
  const seen = []
  client.on('error', (msg, event, topic) => seen.push([event, topic]))
  return seen
}

describe(`permissions (${MODE})`, () => {
  let dir, server
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-perm-'))
    writeFileSync(join(dir, 'permissions.yml'), RULES)
    const hash = runEddy(['hash', 'pw'])
    assert.equal(hash.code, 0)
    writeFileSync(join(dir, 'users.yml'),
      `ada:\n  password: "${hash.stdout.trim()}"\n  serverData: { role: admin }\n` +
      `bob:\n  password: "${hash.stdout.trim()}"\n  serverData: { role: user }\n`)
    const perm = ['--permission', 'config', '--permissions', join(dir, 'permissions.yml')]
    server = await startServer({ extra: [...perm, '--auth', 'file', '--users', join(dir, 'users.yml')], nodeExtra: perm })
  })
  after(async () => {
    if (server) await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)
  const login = user => connect(server.url, { username: user, password: 'pw' })

  test('events: subscribe, emit and listen denied on secret/*, allowed elsewhere; data and $room rules', async () => {
    const a = await login('ada')
    const b = await login('bob')
    const errors = errorsOf(a)
    const got = []
    b.event.subscribe('secret/x', d => got.push(['secret', d]))
    b.event.subscribe('open/x', d => got.push(['open', d]))
    b.event.subscribe('chat/lobby', d => got.push(['chat', d]))
    await sleep(300)
    a.event.emit('secret/x', 1)
    a.event.emit('open/x', 2)
    a.event.emit('chat/lobby', { room: 'kitchen' }) // data.room must equal $room
    a.event.emit('chat/lobby', { room: 'lobby' })
    a.event.listen('secret/.*', () => {})
    await until(() => got.length === 2 && errors.length >= 3, 'allowed events and the denials')
    assert.deepEqual(got, [['open', 2], ['chat', { room: 'lobby' }]])
    assert.deepEqual(errors.map(e => e[0]), ['MESSAGE_DENIED', 'MESSAGE_DENIED', 'MESSAGE_DENIED'])
  })

  test('a bulk subscribe: each denied name answered MESSAGE_DENIED, the rest subscribed and acknowledged', async () => {
    const raw = await (await Raw.open(server.url)).login({ username: 'bob', password: 'pw' })
    raw.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['bulk/1', 'secret/1', 'bulk/2'], correlationId: '7' })
    const denied = await raw.next(m => m.topic === TOPIC.EVENT && m.action === EVENT.MESSAGE_DENIED)
    assert.equal(denied.name, 'secret/1')
    assert.equal(denied.correlationId, '7')
    assert.equal(denied.originalAction, EVENT.SUBSCRIBE)
    assert.equal(denied.isError, true)
    const ack = await raw.next(m => m.topic === TOPIC.EVENT && m.isAck)
    assert.equal(ack.correlationId, '7')
    // every name denied: the denials and no acknowledgement (as deepstream)
    raw.send(TOPIC.EVENT, { action: EVENT.SUBSCRIBE, names: ['secret/2', 'secret/3'], correlationId: '8' })
    await raw.next(m => m.action === EVENT.MESSAGE_DENIED && m.name === 'secret/2')
    await raw.next(m => m.action === EVENT.MESSAGE_DENIED && m.name === 'secret/3')
    await sleep(300)
    assert.equal(raw.messages.filter(m => m.isAck && m.correlationId === '8').length, 0)
    raw.close()
  })

  test('rpc: provide and request denied on forbidden; a data rule on request', async () => {
    const a = await login('ada')
    const b = await login('bob')
    const errors = errorsOf(a)
    a.rpc.provide('forbidden', (d, res) => res.send('no'))
    a.rpc.provide('double', (d, res) => res.send(d * 2))
    await sleep(300)
    await assert.rejects(b.rpc.make('forbidden', 1), err => err === 'MESSAGE_DENIED' || err?.message === 'MESSAGE_DENIED')
    assert.equal(await b.rpc.make('double', 21), 42)
    await assert.rejects(b.rpc.make('double', 1000), err => err === 'MESSAGE_DENIED' || err?.message === 'MESSAGE_DENIED')
    await until(() => errors.some(e => e[0] === 'MESSAGE_DENIED'), 'provide denied')
  })

  test('records: read-only, hidden and no-create names; $userId; the error events the client reports', async () => {
    const a = await login('ada')
    const errors = errorsOf(a)
    // ro/*: created and read, never written or deleted
    const ro = a.record.getRecord('ro/1')
    await ro.whenReady()
    await assert.rejects(ro.setWithAck({ x: 1 }), err => err === 'MESSAGE_DENIED' || err?.message === 'MESSAGE_DENIED')
    await assert.rejects(a.record.setDataWithAck('ro/2', { z: 1 }), err => String(err).includes('MESSAGE_DENIED'))
    const b = await login('bob') // (a's own copy keeps what it tried to set: the client does not roll back)
    assert.deepEqual(await b.record.snapshot('ro/1'), {})
    // hidden/*: not even a snapshot
    await assert.rejects(a.record.snapshot('hidden/1'), err => String(err).includes('MESSAGE_DENIED'))
    // nocreate/*: a missing record is not created by getRecord
    a.record.getRecord('nocreate/1')
    await until(() => errors.some(e => e[0] === 'MESSAGE_DENIED' && e[1] === 'RECORD'), 'nocreate denied')
    assert.equal(await b.record.head('nocreate/1'), -1, 'nothing was created') // (a's record never becomes ready)
    // profile/$userId: ada writes her own profile, not bob's
    await a.record.setDataWithAck('profile/ada', { name: 'Ada' })
    await assert.rejects(a.record.setDataWithAck('profile/bob', { name: 'Mallory' }), err => String(err).includes('MESSAGE_DENIED'))
    assert.equal(await b.record.head('profile/bob'), -1)
  })

  test('data/oldData rules run at the owning node against the record as the write leaves it', async () => {
    const a = await login('ada')
    const b = await login('bob')
    await a.record.setDataWithAck('counter/1', { n: 1 })
    await a.record.setDataWithAck('counter/1', { n: 2 })
    await assert.rejects(a.record.setDataWithAck('counter/1', { n: 2 }), err => String(err).includes('MESSAGE_DENIED'))
    await assert.rejects(a.record.setDataWithAck('counter/1', 'n', 0), err => String(err).includes('MESSAGE_DENIED'))
    await a.record.setDataWithAck('counter/1', 'n', 5) // a path patch: data is the whole record after it
    assert.deepEqual(await b.record.snapshot('counter/1'), { n: 5 })
    // user.data: file auth's serverData
    await a.record.setDataWithAck('admin/config', { on: true })
    await assert.rejects(b.record.setDataWithAck('admin/config', { on: false }), err => String(err).includes('MESSAGE_DENIED'))
    assert.deepEqual(await b.record.snapshot('admin/config'), { on: true })
  })

  test('racing writers cannot slip a write past a data/oldData rule', async () => {
    const a = await login('ada')
    const b = await login('bob')
    await a.record.setDataWithAck('counter/race', { n: 0 })
    // 40 writes of n = 1..20 from two clients at once: each applied write must grow n
    const writes = []
    for (let n = 1; n <= 20; n++) {
      writes.push(a.record.setDataWithAck('counter/race', { n }).then(() => n, () => null))
      writes.push(b.record.setDataWithAck('counter/race', { n }).then(() => n, () => null))
    }
    const applied = (await Promise.all(writes)).filter(n => n !== null)
    const rec = b.record.getRecord('counter/race')
    await rec.whenReady()
    assert.equal(rec.get().n, 20)
    assert.equal(new Set(applied).size, applied.length, `no value was written twice: ${applied}`)
  })

  test('cross-references: rules read other records through their owning nodes, at the broker and at the owner', async () => {
    const a = await login('ada')
    const b = await login('bob')
    const errors = errorsOf(a)
    const got = []
    b.event.subscribe('gated/x', d => got.push(d))
    b.event.subscribe('two/x', d => got.push(['two', d]))
    await sleep(300)
    await a.record.setDataWithAck('gate/config', { open: false })
    a.event.emit('gated/x', 1)
    await until(() => errors.length === 1, 'denied while the gate is closed')
    await a.record.setDataWithAck('gate/config', { open: true })
    a.event.emit('gated/x', 2) // the rule reads the record as it is now
    // records on any node: ids spread over every node of a cluster
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
    for (const id of ids) await a.record.setDataWithAck(`stock/${id}`, { left: 5 })
    for (const id of ids) {
      await a.record.setDataWithAck(`order/${id}`, { qty: 5 })
      await assert.rejects(a.record.setDataWithAck(`order/${id}`, { qty: 6 }), err => String(err).includes('MESSAGE_DENIED'))
      await a.record.setDataWithAck(`order/${id}`, 'qty', 1) // data: the record as the patch leaves it
    }
    // maxRuleIterations (3): a rule that needs a fourth run fails with MESSAGE_PERMISSION_ERROR
    for (const n of [1, 2, 3]) await a.record.setDataWithAck(`x/${n}`, { v: n })
    a.event.emit('two/x', 3)
    a.event.emit('three/x', 4)
    await until(() => got.length === 2 && errors.length === 2, 'the two-record rule passes, the three-record one fails')
    assert.deepEqual(got, [2, ['two', 3]])
    assert.equal(errors[1][0], 'UNSOLICITED_MESSAGE') // how the client reports EVENT MESSAGE_PERMISSION_ERROR
    if (MODE !== 'haproxy') {
      const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
      assert.match(metrics, /eddy_permission_errors_total [1-9]/)
    }
    // a message waiting on records keeps its place: what follows it comes after
    // (one name, so one owner: its subscriber sees the order they were sent in)
    const order = []
    b.event.subscribe('mixed/x', d => order.push(d.n))
    await sleep(300)
    for (let i = 0; i < 5; i++) {
      a.event.emit('mixed/x', { gated: true, n: `g${i}` }) // reads gate/config first
      a.event.emit('mixed/x', { n: `p${i}` })             // reads nothing
    }
    await until(() => order.length === 10, 'all ten')
    assert.deepEqual(order, ['g0', 'p0', 'g1', 'p1', 'g2', 'p2', 'g3', 'p3', 'g4', 'p4'])
  })

  test("a rule on deepstream's action number: read allowed, but not by HEAD", async () => {
    const a = await login('ada')
    await a.record.setDataWithAck('act/1', { v: 1 })
    const b = await login('bob')
    assert.deepEqual(await b.record.snapshot('act/1'), { v: 1 })
    await assert.rejects(b.record.head('act/1'), err => String(err).includes('MESSAGE_DENIED'))
  })

  test('presence: allow false for one user; listen denied for records', async () => {
    const a = await login('ada')
    const errors = errorsOf(a)
    await assert.rejects(a.presence.getAll(['hidden-user']), err => String(err).includes('MESSAGE_DENIED'))
    assert.deepEqual(await a.presence.getAll(['nobody-here']), { 'nobody-here': false })
    a.record.listen('secret-listen/.*', () => {})
    await until(() => errors.some(e => e[0] === 'MESSAGE_DENIED'), 'record listen denied')
  })

  test('SIGHUP reloads the rules without dropping a connection; a broken file leaves them in force', async () => {
    if (MODE === 'haproxy') return // cluster.sh owns those processes
    const a = await login('ada')
    const b = await login('bob')
    const got = []
    b.event.subscribe('later/x', d => got.push(d))
    await sleep(300)
    a.event.emit('later/x', 1)
    await until(() => got.length === 1, 'allowed before the reload')
    writeFileSync(join(dir, 'permissions.yml'), rules('  "later/*":\n    publish: false\n'))
    for (const p of Object.values(server.procs)) p.child.kill('SIGHUP')
    await until(() => (server.stderr().match(/permissions-reloaded/g) || []).length >= Object.keys(server.procs).length,
      'every process reloaded')
    const errors = errorsOf(a)
    a.event.emit('later/x', 2)
    await until(() => errors.length === 1, 'denied after the reload')
    // a file that does not compile: logged, the rules stay
    writeFileSync(join(dir, 'permissions.yml'), rules('  "later/*":\n    publish: "user.id ==="\n'))
    for (const p of Object.values(server.procs)) p.child.kill('SIGHUP')
    await until(() => /permissions-reload-failed/.test(server.stderr()), 'reload failure logged')
    a.event.emit('later/x', 3)
    await until(() => errors.length === 2, 'still denied')
    assert.deepEqual(got, [1], 'the connection stayed and saw only what was allowed')
    writeFileSync(join(dir, 'permissions.yml'), RULES)
  })
})

describe(`a cross-reference that cannot be read (${MODE})`, { skip: MODE !== 'cluster' && 'two-process mode only' }, () => {
  test('fails the rule (MESSAGE_PERMISSION_ERROR) within the request timeout: fail closed', { timeout: 60000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-perm-closed-'))
    const file = join(dir, 'permissions.yml')
    writeFileSync(file, rules())
    const perm = ['--permission', 'config', '--permissions', file]
    const server = await startServer({ extra: [...perm, '--request-timeout', '2000'], nodeExtra: perm })
    const node = server.procs.node.child
    try {
      const a = await connect(server.url, { username: 'ada' })
      const b = await connect(server.url, { username: 'bob' })
      const calls = []
      a.rpc.provide('guarded', (d, res) => { calls.push(d); res.send('ok') })
      await a.record.setDataWithAck('gate/rpc', { open: true })
      await sleep(300)
      assert.equal(await b.rpc.make('guarded', 1), 'ok')
      process.kill(node.pid, 'SIGSTOP') // the record's owner stops answering
      // every thread of it stopped (a thread busy on a core finishes its slice first)
      await until(() => readdirSync(`/proc/${node.pid}/task`).every(t =>
        /^T/.test(readFileSync(`/proc/${node.pid}/task/${t}/stat`, 'utf8').split(') ')[1])), 'the node stopped')
      let outcome
      try {
        const started = Date.now()
        outcome = await Promise.race([
          b.rpc.make('guarded', 2).then(() => 'allowed', err => `rejected: ${err}`),
          sleep(8000).then(() => 'hung')
        ])
        assert.ok(Date.now() - started < 6000, 'answered within the request timeout')
      } finally {
        process.kill(node.pid, 'SIGCONT')
      }
      assert.equal(outcome, 'rejected: MESSAGE_PERMISSION_ERROR')
      await sleep(500)
      assert.deepEqual(calls, [1], 'the call the rule could not check never reached the provider')
      await closeAll()
    } finally {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe(`eddy ctl reload (${MODE})`, () => {
  test('reloads the rules of every node and every broker it serves', async () => {
    if (MODE === 'haproxy') return // cluster.sh owns those processes; SIGHUP and ctl are tested in the other modes
    const dir = mkdtempSync(join(tmpdir(), 'eddy-perm-ctl-'))
    const file = join(dir, 'permissions.yml')
    writeFileSync(file, rules())
    const perm = ['--permission', 'config', '--permissions', file]
    const server = await startServer({ extra: perm, nodeExtra: perm })
    try {
      const request = server.stderr().match(/(?:node|backends)-listening request=(\S+)/)[1]
      const a = await connect(server.url, { username: 'ada' })
      const errors = errorsOf(a)
      writeFileSync(file, rules('  "ctl/*":\n    publish: false\n'))
      const r = runEddy(['ctl', '--cluster', request, 'reload'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /: reloaded/)
      await until(() => (server.stderr().match(/permissions-reloaded/g) || []).length >= 2, 'node and broker reloaded')
      a.event.emit('ctl/x', 1)
      await until(() => errors.length === 1, 'denied after eddy ctl reload')
      // a file that does not compile: exit 1, the rules stay
      writeFileSync(file, rules('  "ctl/*":\n    publish: "(("\n'))
      const bad = runEddy(['ctl', '--cluster', request, 'reload'])
      assert.equal(bad.code, 1)
      assert.match(bad.stdout, /failed/)
      a.event.emit('ctl/x', 2)
      await until(() => errors.length === 2, 'still denied')
      await closeAll()
    } finally {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe(`permissions at start-up (${MODE})`, () => {
  test('a rule that does not compile stops start-up with one line naming file, section, pattern and column', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-perm-bad-'))
    try {
      const file = join(dir, 'permissions.yml')
      writeFileSync(file, rules().replace('  "ro/*":', '  "a/$id":\n    write: "user.id === $id &&"\n  "ro/*":'))
      const r = runEddy(['standalone', '--port', '0', '--host', '127.0.0.1', '--data', join(dir, 'data'),
        '--permission', 'config', '--permissions', file])
      assert.equal(r.code, 2, r.stderr)
      const lines = r.stderr.trim().split('\n')
      assert.equal(lines.length, 1, r.stderr)
      assert.match(lines[0], /permissions\.yml/)
      assert.match(lines[0], /record/)
      assert.match(lines[0], /a\/\$id/)
      assert.match(lines[0], /write/)
      assert.match(lines[0], /column \d+/)
      // permission.type config without a file
      const r2 = runEddy(['standalone', '--port', '0', '--data', join(dir, 'data'), '--permission', 'config'])
      assert.equal(r2.code, 2)
      assert.match(r2.stderr, /permission\.options\.permissions/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
