// failover.test.mjs - failure detection, leases and promotion decided by the
// metadata group (issue 18, decision 7; node/meta.c's top comment).
// Real clusters from cluster.sh: 3 nodes, --raft, --replicas 2, one broker,
// cluster.nodeTimeout 2000 ms (T). Each test starts its own cluster:
//   - kill -9 node2: node1 and node3 both report it down within T + a few
//     seconds, its primaries on its in-sync replica (node3) at epoch 2, its
//     copies gone; timed from the kill to the FAIL_NODE committed (the status
//     of node1 showing it) over 5 kills, node2 restarted between (NODE_UP);
//   - SIGSTOP node2 (a primary) for 2 T, then SIGCONT: its lease expired
//     (meta-lease-lost's expired_at) before the leader declared it down
//     (meta-node-down) and failed it over (meta-failover); after resuming it
//     is primary of nothing and refuses a read of a record it served before;
//   - the Raft leader killed: another leader, which fails the old one over;
//     once it is back, a kill of another node still fails over;
//   - two of three killed: the survivor answers its status at once, knows no
//     leader, commits nothing (same map version after 3 T), holds no lease,
//     and a read of its records is answered with an error at once;
//   - a primary without a lease (started alone after all three were killed):
//     a write is answered with an error at once; once the others are back, the
//     broker's refused registrations are taken (a subscription delivers again)
//     and the writer's next write succeeds;
//   - raft off: none of this runs (no heartbeat, lease or failover metric).
// Client traffic routed by the new map is the routing work's (brokers and
// libeddy learning the map); here: the map, the leases and the node's refusal.
// run-tests: alone (timings of kills and pauses)
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { until, sleep, namesOn, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'

const SH = resolve('cluster-tests/cluster.sh')
const execFileAsync = promisify(execFile)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const NODES = 3
const T = 2000

async function startCluster ({ raft = true, t = T } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-failover-'))
  const args = ['up', '--dir', dir, '--nodes', String(NODES), '--brokers', '1', '--bin', BIN, '--replicas', '2']
  args.push(raft ? '--raft' : '--no-raft')
  execFileSync('bash', [SH, ...args, '--', '--node-timeout', String(t)], { encoding: 'utf8', timeout: 60000 })
  const sh = (...a) => execFileAsync('bash', [SH, ...a, '--dir', dir], { encoding: 'utf8', timeout: 60000 })
  const broker = readFileSync(join(dir, 'brokers'), 'utf8').trim()
  const nodes = readFileSync(join(dir, 'nodes'), 'utf8').trim().split('\n')
  const metricsUrls = readFileSync(join(dir, 'node-metrics'), 'utf8').trim().split('\n')
  const metrics = async i => (await fetch(metricsUrls[i])).text()
  const log = name => readFileSync(join(dir, `${name}.log`), 'utf8')
  // eddy ctl cluster status --json of node i (null: no answer)
  const status = async (i, timeout = 2000) => {
    try {
      const { stdout } = await execFileAsync(BIN, ['ctl', '--cluster', nodes[i], '--timeout', String(timeout),
        'cluster', 'status', '--json'], { encoding: 'utf8', timeout: 10000 })
      return JSON.parse(stdout)
    } catch { return null }
  }
  return { dir, sh, broker, nodes, metrics, log, status }
}

function metric (text, name) {
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, c => '\\' + c)} (\\d+)$`, 'm'))
  return m ? Number(m[1]) : null
}

// Waits until the nodes of `indexes` answer one bootstrapped map (same
// version and leader), each holding a usable lease; returns their answers.
async function settled (c, indexes, what, timeout = 15000) {
  let last = []
  await until(async () => {
    last = await Promise.all(indexes.map(i => c.status(i)))
    if (last.some(s => s === null || !s.raft || s.version === 0 || !s.leader || !s.lease.valid)) return false
    return last.every(s => s.version === last[0].version && s.leader === last[0].leader)
  }, `${what}: ${JSON.stringify(last.map(s => s && { self: s.selfName, version: s.version, leader: s.leaderName, lease: s.lease?.valid }))}`, timeout)
  return last
}

const member = (s, name) => s.members.find(m => m.name === name)

// Log lines of `event` (with their time, ms) about member `id`.
function events (text, event, id) {
  const out = []
  for (const line of text.split('\n')) {
    const m = line.match(/^(\S+) \S+\s+(\S+) (.*)$/)
    if (m && m[2] === event && (id === undefined || m[3].includes(`member=${id} `))) out.push({ at: Date.parse(m[1]), rest: m[3] })
  }
  return out
}

async function finish (c) {
  await closeAll()
  await c.sh('down')
  for (const f of readdirSync(c.dir).filter(f => f.endsWith('.log'))) assertNoSanitizerReport(readFileSync(join(c.dir, f), 'utf8'), f)
  if (process.env.EDDY_KEEP) console.log(`# kept ${c.dir}`)
  else rmSync(c.dir, { recursive: true, force: true })
}

// Polls node i's status until node `name` is down in it; returns the answer.
async function downIn (c, i, name, timeout) {
  let s = null
  await until(async () => { s = await c.status(i); return s !== null && member(s, name)?.down === true },
    `node${i + 1} shows ${name} down`, timeout)
  return s
}

describe('cluster: failure detection, leases and promotion by the metadata group', () => {
  afterEach(closeAll)

  test('kill -9 of a primary: declared down, its shards on its in-sync replica at epoch + 1 (5 kills timed)', async () => {
    const c = await startCluster()
    try {
      const before = (await settled(c, [0, 1, 2], 'a settled cluster'))[0]
      const p = name => member(before, name).primaries
      const figures = []
      for (let k = 0; k < 5; k++) {
        const [s0] = await settled(c, [0, 1, 2], `kill ${k + 1}: every node up with a lease`)
        const killedAt = Date.now()
        await c.sh('kill', 'node2')
        const s1 = await downIn(c, 0, 'node2', T + 6000)
        figures.push(`${Date.now() - killedAt}${s0.leader === 2 ? '(leader)' : ''}`)
        const s3 = await downIn(c, 2, 'node2', 3000)
        assert.equal(s1.version, s0.version + 1, 'one command: FAIL_NODE')
        assert.equal(s3.version, s1.version)
        if (k === 0) {
          for (const s of [s1, s3]) {
            assert.equal(s.membersDown, 1)
            assert.equal(s.unavailableShards, 0)
            const n1 = member(s, 'node1'); const n2 = member(s, 'node2'); const n3 = member(s, 'node3')
            assert.equal(n2.primaries + n2.replicas, 0, 'node2 holds no copy any more')
            // node2's primaries went to node3 (its replica: the next node), at epoch 2
            assert.equal(n3.primaries, p('node2') + p('node3'))
            assert.equal(n3.epochs['2'], p('node2'))
            assert.equal(n3.replicas, 0, 'node3 replicated node2, which is not a primary any more')
            // node1 keeps its primaries at epoch 1 (its replica node2 left it) and still replicates node3's
            assert.equal(n1.primaries, p('node1'))
            assert.deepEqual(Object.keys(n1.epochs), ['1'])
            assert.equal(n1.replicas, p('node3'))
          }
          const leader = s1.leader
          const failover = events(c.log(`node${leader}`), 'meta-failover', 2)
          assert.equal(failover.length, 1)
          assert.match(failover[0].rest, new RegExp(`shard_count=${p('node2')} to=node3:${p('node2')} unavailable=0`))
          assert.equal(metric(await c.metrics(leader - 1), 'eddy_node_meta_failovers_total'), 1)
          assert.equal(metric(await c.metrics(0), 'eddy_node_meta_members_down'), 1)
        }
        await c.sh('start', 'node2')
        await until(async () => { const s = await c.status(0); return s && member(s, 'node2')?.down === false },
          'node2 up again (NODE_UP)', 15000)
      }
      console.log(`# kill -9 node2 -> FAIL_NODE committed (node1's status shows it down), ms: ${figures.join(' ')}` +
        ` (nodeTimeout ${T}; "(leader)": node2 led, so an election came first)`)
      const ms = figures.map(f => parseInt(f))
      for (const f of ms) assert.ok(f < 2 * T + 5000, `declared down after ${f} ms`)
      assert.ok(ms.every(f => f >= T - 500), `no node declared down before nodeTimeout: ${figures}`)
    } finally { await finish(c) }
  })

  test('a paused primary: its lease expires before it is failed over, and it serves nothing after', async () => {
    const c = await startCluster()
    try {
      let s = await settled(c, [0, 1, 2], 'a settled cluster')
      if (s[0].leader === 2) { // the paused primary should not lead (that is the next test)
        await c.sh('kill', 'node2'); await c.sh('start', 'node2')
        await until(async () => { const x = await c.status(0); return x && x.leader && x.leader !== 2 && !member(x, 'node2').down && x }, 'another leader', 20000)
        s = await settled(c, [0, 1, 2], 'settled again')
      }
      const primaries = member(s[1], 'node2').primaries
      assert.ok(primaries > 0)
      // a record on node2's shards, served by node2 before the pause
      const names = namesOn(2, NODES, 'paused/rec', 3)
      const writer = await connect(c.broker, { username: 'writer' })
      for (const name of names) {
        const rec = writer.record.getRecord(name)
        await rec.whenReady()
        await rec.setWithAck({ name })
      }
      await closeAll()
      const reader = await connect(c.broker, { username: 'reader' })
      assert.deepEqual(await reader.record.snapshot(names[0]), { name: names[0] })
      await closeAll()

      const pausedAt = Date.now()
      await c.sh('pause', 'node2')
      await sleep(2 * T)
      await c.sh('resume', 'node2')
      await until(() => events(c.log('node2'), 'meta-lease-lost').length > 0, 'node2 logs meta-lease-lost', 5000)
      const leader = s[0].leader
      const lost = events(c.log('node2'), 'meta-lease-lost')[0]
      const expiredAt = Date.parse(lost.rest.match(/expired_at=(\S+)/)[1])
      const down = events(c.log(`node${leader}`), 'meta-node-down', 2)
      const failover = events(c.log(`node${leader}`), 'meta-failover', 2)
      assert.equal(down.length, 1, 'declared down once')
      assert.equal(failover.length, 1, 'failed over once')
      console.log(`# paused at +0: node2's lease expired at +${expiredAt - pausedAt} ms, declared down at ` +
        `+${down[0].at - pausedAt} ms, failed over (committed) at +${failover[0].at - pausedAt} ms`)
      assert.ok(expiredAt >= pausedAt - 50, 'the lease was valid when it was paused')
      assert.ok(expiredAt < down[0].at, `the lease expired (${expiredAt}) before node2 was declared down (${down[0].at})`)
      assert.ok(down[0].at <= failover[0].at)
      assert.match(failover[0].rest, new RegExp(`shard_count=${primaries} to=node3:${primaries}`))

      // resumed: it learns the map, gets a lease again (NODE_UP) and is primary of nothing
      const after = await settled(c, [0, 1, 2], 'node2 resumed and caught up')
      for (const x of after) {
        assert.equal(member(x, 'node2').primaries + member(x, 'node2').replicas, 0)
        assert.equal(member(x, 'node3').epochs['2'], primaries)
      }
      // the broker routes by the new map: node3, the promoted replica, serves the record it
      // holds a copy of (node2 would refuse it: no lease, then not its primary; test_node's
      // test_route_by_shard_epoch checks the refusal of an old epoch)
      const reader2 = await connect(c.broker, { username: 'reader2' })
      const answer = await Promise.race([reader2.record.snapshot(names[1]).then(d => ({ d }), e => ({ e })), sleep(5000).then(() => ({ none: true }))])
      assert.deepEqual(answer, { d: { name: names[1] } }, `the promoted replica serves ${names[1]}`)
      await closeAll()
      // and it never became primary again
      await sleep(T)
      const later = await c.status(1)
      assert.equal(member(later, 'node2').primaries, 0)
      assert.equal(events(c.log(`node${leader}`), 'meta-failover', 2).length, 1)
    } finally { await finish(c) }
  })

  test('the Raft leader killed: another leader fails it over, and a following kill still fails over', async () => {
    const c = await startCluster()
    try {
      const [s0] = await settled(c, [0, 1, 2], 'a settled cluster')
      const old = s0.leader
      const others = [0, 1, 2].filter(i => i !== old - 1)
      const killedAt = Date.now()
      await c.sh('kill', `node${old}`)
      const s1 = await downIn(c, others[0], `node${old}`, 2 * T + 8000)
      const took = Date.now() - killedAt
      assert.notEqual(s1.leader, old)
      assert.ok(s1.leader, 'a new leader')
      console.log(`# the leader node${old} killed: node${s1.leader} leads and failed it over after ${took} ms`)
      assert.ok(took >= T, 'not before nodeTimeout after the new leader took office')
      assert.equal(member(s1, `node${old}`).primaries, 0)
      assert.equal(s1.unavailableShards, 0)
      // back (NODE_UP), then another node killed: still failed over
      await c.sh('start', `node${old}`)
      await until(async () => { const s = await c.status(others[0]); return s && member(s, `node${old}`)?.down === false }, 'the old leader up again', 15000)
      await settled(c, [0, 1, 2], 'all three with leases')
      const next = others.find(i => i + 1 !== s1.leader) // a node that does not lead now
      const v = (await c.status(s1.leader - 1)).version
      await c.sh('kill', `node${next + 1}`)
      const s2 = await downIn(c, s1.leader - 1, `node${next + 1}`, T + 6000)
      assert.equal(s2.version, v + 1)
      assert.equal(member(s2, `node${next + 1}`).primaries, 0)
    } finally { await finish(c) }
  })

  test('two of three killed: the survivor decides nothing, holds no lease, and answers at once', async () => {
    const c = await startCluster()
    try {
      const [s0] = await settled(c, [0, 1, 2], 'a settled cluster')
      await c.sh('kill', 'node1')
      await c.sh('kill', 'node2')
      const killedAt = Date.now()
      await sleep(3 * T)
      const started = Date.now()
      const s = await c.status(2, 1000)
      const answeredIn = Date.now() - started
      assert.ok(s, 'the survivor answers')
      console.log(`# node3 alone: status answered in ${answeredIn} ms, ${Date.now() - killedAt} ms after the kills`)
      assert.ok(answeredIn < 1000, `answered in ${answeredIn} ms`)
      assert.equal(s.leader, null, 'no leader without a majority')
      // at most the first kill was decided before the second (not with these timings: the two kills are ms apart)
      assert.equal(s.version, s0.version, 'no FAIL_NODE committed without a majority')
      assert.equal(s.membersDown, 0)
      assert.equal(s.lease.valid, false, 'no lease without a leader')
      const m = await c.metrics(2)
      assert.equal(metric(m, 'eddy_node_meta_lease_valid'), 0)
      assert.equal(metric(m, 'eddy_node_meta_failovers_total'), 0)
      // its own records are refused (no lease), not served and not left hanging in the node
      const names = namesOn(3, NODES, 'alone/rec', 1)
      const before = (c.log('node3').match(/wrong-shard/g) || []).length
      const reader = await connect(c.broker, { username: 'reader' })
      const asked = Date.now()
      const outcome = await Promise.race([reader.record.snapshot(names[0]).then(() => 'served', () => 'refused'),
        sleep(5000).then(() => 'left waiting')])
      assert.equal(outcome, 'refused', 'the reader is answered with an error')
      console.log(`# node3 alone: a read refused in ${Date.now() - asked} ms`)
      await until(() => (c.log('node3').match(/wrong-shard/g) || []).length > before, 'node3 refuses at once (wrong-shard)', 3000)
      assert.match(c.log('broker1'), /node-not-serving node=node3 /)
    } finally { await finish(c) }
  })

  // A node that runs but holds no lease (here: started alone, so its group has
  // no majority) refuses its shards at the epoch the brokers route by. The
  // broker answers each refused request with an error at once (the node echoes
  // it in its refusal), and sends the refused registrations again until the
  // node takes them: a subscription made before the restart delivers again
  // once the others are back, without the subscriber doing anything.
  test('a primary without a lease: requests answered with errors at once, registrations taken once it serves', async () => {
    const c = await startCluster()
    try {
      await settled(c, [0, 1, 2], 'a settled cluster')
      const [name] = namesOn(2, NODES, 'nolease/rec', 1)
      const writer = await connect(c.broker, { username: 'writer' })
      const subscriber = await connect(c.broker, { username: 'subscriber' })
      const seen = []
      const rec = subscriber.record.getRecord(name)
      await rec.whenReady()
      rec.subscribe(d => seen.push(d.k), false)
      const wrec = writer.record.getRecord(name)
      await wrec.whenReady()
      await wrec.setWithAck({ k: 0 })
      await until(() => seen.includes(0), 'the subscriber sees the first write')
      for (const n of ['node1', 'node2', 'node3']) await c.sh('kill', n)
      await c.sh('start', 'node2') // alone: no majority, no leader, no lease
      await until(() => /node-not-serving node=node2 /.test(c.log('broker1')), 'the broker\'s registrations refused by node2', 10000)
      // a write now: answered with an error within a moment, not left waiting
      const asked = Date.now()
      const outcome = await Promise.race([wrec.setWithAck({ k: 1 }).then(() => 'acknowledged', () => 'refused'),
        sleep(5000).then(() => 'left waiting')])
      assert.equal(outcome, 'refused', 'a write to a primary without a lease is answered with an error')
      const refusedIn = Date.now() - asked
      await c.sh('start', 'node1')
      await c.sh('start', 'node3')
      await settled(c, [0, 1, 2], 'the cluster back')
      // the writer's next write succeeds (its copy converges), and the subscription registered again delivers it
      let k = 2
      await until(async () => {
        try { await wrec.setWithAck({ k }); return true } catch { k++; return false }
      }, 'a write acknowledged once node2 serves', 15000)
      await until(() => seen.includes(k), `the subscriber sees k=${k} (saw ${seen.join(',')})`, 5000)
      const m = await (await fetch(readFileSync(join(c.dir, 'brokers'), 'utf8').trim().replace(/^ws/, 'http').replace(/\/deepstream$/, '/metrics'))).text()
      assert.ok(metric(m, 'eddy_node_not_serving_refusals_total{node="node2"}') > 0, 'refusals counted')
      console.log(`# a write to node2 without a lease refused in ${refusedIn} ms; k=${k} delivered after the restart`)
    } finally { await finish(c) }
  })

  // Every node keeps one heartbeat link to each other node for life: after the
  // others restarted, node1's links must deliver again, or node1 sends its
  // heartbeats to nobody and the new leader declares it down although it runs.
  test('the others restarted while node1 runs: its heartbeats reach their new leader, it is never declared down', async () => {
    const t = 4000
    const c = await startCluster({ t })
    try {
      await settled(c, [0, 1, 2], 'a settled cluster')
      await c.sh('kill', 'node2')
      await c.sh('kill', 'node3')
      await c.sh('pause', 'node1') // so the new leader is node2 or node3
      const paused = Date.now()
      await c.sh('start', 'node2')
      await c.sh('start', 'node3')
      let leader = null
      await until(async () => {
        const s = await c.status(1, 1000)
        leader = s?.leaderName
        return leader === 'node2' || leader === 'node3'
      }, 'node2 and node3 elect one of them', 15000)
      // paused longer than a link waits before replacing its dialer (3 s), so
      // the redials a pause must not cause would show (well within nodeTimeout
      // of the election: starting two nodes takes longer than the top-up)
      await sleep(Math.max(0, 3500 - (Date.now() - paused)))
      await c.sh('resume', 'node1')
      const resumed = Date.now()
      const li = leader === 'node2' ? 1 : 2
      await until(async () => {
        const s = await c.status(li, 1000)
        return s && typeof member(s, 'node1').heardMsAgo === 'number' && member(s, 'node1').heardMsAgo < 1000
      }, `the leader ${leader} hears node1`, 2.5 * t)
      console.log(`# node1 resumed -> heard by the new leader ${leader}: ${Date.now() - resumed} ms`)
      await sleep(1.5 * t) // past the new leader's first nodeTimeout in office
      const s = await c.status(li, 1000)
      assert.equal(member(s, 'node1').down, false, 'node1 is up in the leader\'s map')
      assert.ok(s.lease && member(s, 'node1').leaseGranted, 'the leader grants node1 its lease')
      assert.doesNotMatch(c.log('node2') + c.log('node3'), /meta-node-down .*name=node1/)
      // the pause is no time its links waited: their dialers reconnect by themselves, none is replaced
      assert.doesNotMatch(c.log('node1'), /node-(request|delivery)-redial/)
    } finally { await finish(c) }
  })

  test('raft off: no heartbeat, lease or failover', async () => {
    const c = await startCluster({ raft: false })
    try {
      const s = await c.status(0)
      assert.equal(s.raft, false)
      assert.equal(s.lease, undefined)
      const writer = await connect(c.broker, { username: 'writer' })
      const names = namesOn(2, NODES, 'static/rec', 2)
      for (const name of names) {
        const rec = writer.record.getRecord(name)
        await rec.whenReady()
        await rec.setWithAck({ name })
      }
      for (let i = 0; i < NODES; i++) {
        const m = await c.metrics(i)
        for (const family of ['eddy_node_meta_lease_valid', 'eddy_node_meta_failovers_total', 'eddy_node_meta_members_down', 'eddy_node_meta_heartbeats_total']) {
          assert.ok(!m.includes(family), `node${i + 1} exports ${family} with raft off`)
        }
        assert.equal(metric(m, 'eddy_node_operations_total{kind="META_HEARTBEAT"}') ?? 0, 0)
        assert.doesNotMatch(c.log(`node${i + 1}`), /meta-(failure-detection|lease|node-down|failover)/)
      }
      // a node killed is not failed over: the static map stays
      await c.sh('kill', 'node2')
      await sleep(T + 1000)
      const after = await c.status(0)
      assert.equal(after.membersDown, 0)
      assert.equal(member(after, 'node2').primaries, member(s, 'node2').primaries)
    } finally { await finish(c) }
  })
})
