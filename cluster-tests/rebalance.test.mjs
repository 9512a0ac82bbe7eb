// rebalance.test.mjs - shards go back to their home layout (issue 18, item
// 6): each shard's home layout is its primary and replicas in the static map
// (where the cluster starts); after a planned move or a failover it is elsewhere.
// A real cluster from cluster.sh: 3 nodes, --raft, --replicas 2,
// --rereplicate true, 1 broker.
//   - `eddy ctl cluster rebalance` after `cluster promote --from node2 --to
//     node3` (once node2, the old primary, is an in-sync replica again): every
//     shard is home again on every node's map, node2 serves its records with
//     every acknowledged write (those made while they were away too) and takes
//     writes; with cluster.rebalanceDelay 0 nothing moved by itself before;
//   - with cluster.rebalanceDelay 3000, node2 killed (its shards fail over to
//     node3, node1 becomes their second copy by re-replication) and started
//     again: it gets copies of its layout back (ADD_COPY), is caught up, and
//     the leader by itself moves its shards home (PROMOTE) and drops node1's
//     extra copies (DROP_COPY) until every node's map is the static layout,
//     with nothing acknowledged lost;
//   - without cluster.rereplicate (and cluster.replicas left to its default, 2
//     with raft): nothing is re-replicated while node2 is down; once it is
//     back, the delay brings it its copies (ADD_COPY) and then its shards.
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { until, sleep, namesOn } from '../tests/e2e/lib/server.mjs'
import { startCluster, settled, stopCluster } from './lib/raftcluster.mjs'

const NODES = 3
const HOME_OF_NODE2 = 1365 // shards 1365-2729: node2's in the static map of 3 nodes

// Waits until node 0 (and then every node) shows every shard at 2 copies in sync.
async function inSync (c, what) {
  let st = null
  await until(async () => {
    st = await c.status(0)
    return st && st.copiesMin === 2 && st.insyncMin === 2
  }, `${what} (${JSON.stringify(st && { copiesMin: st.copiesMin, insyncMin: st.insyncMin })})`, 30000)
}

// node2 killed: it is failed over, and node3 serves its records (written 'failed-over').
async function killNode2 (c, names) {
  await c.sh('kill', 'node2')
  await until(async () => (await c.status(0))?.members[1].down, 'node2 failed over', 15000)
  await until(async () => {
    try { await writeAll(c.brokers[0], names, 'failed-over'); return true } catch { return false }
  }, 'node3 serves node2\'s records', 10000)
}

// Waits until every node's map has every shard home, in its home layout (the static one).
async function homeEverywhere (c, what) {
  let st = null
  await until(async () => {
    const all = await Promise.all([0, 1, 2].map(i => c.status(i)))
    st = all[0]
    return all.every(s => s && s.version === all[0].version && s.awayFromHome === 0 && s.sameAsStatic)
  }, what, 45000).catch(e => {
    throw new Error(`${e.message} (${JSON.stringify(st && { away: st.awayFromHome, same: st.sameAsStatic, copiesMax: st.copiesMax, insyncMin: st.insyncMin })})`)
  })
}

async function writeAll (url, names, tag) {
  const w = await connect(url, { username: `w-${tag}` })
  for (const [i, n] of names.entries()) await w.record.setDataWithAck(n, { tag, i })
  return w
}

async function expectAll (url, names, tag) {
  const r = await connect(url, { username: `r-${tag}` })
  for (const [i, n] of names.entries()) assert.deepEqual(await r.record.snapshot(n), { tag, i }, `${n} after the rebalance`)
}

describe('cluster: rebalancing primaries home', () => {
  let c = null
  afterEach(async () => {
    await closeAll()
    await stopCluster(c)
    c = null
  })

  test('eddy ctl cluster rebalance moves every shard home after a planned move; nothing moves by itself with delay 0', async () => {
    c = startCluster({ name: 'rebalance', flags: ['--node-timeout', '2000', '--rereplicate', 'true', '--rebalance-delay', '0'] })
    await settled(c, [0, 1, 2], 'the map bootstrapped on every node')
    const names = namesOn(2, NODES, 'rb/', 6)
    await writeAll(c.brokers[0], names, 'before')
    assert.match(await c.ctl(0, 'cluster', 'promote', '--from', 'node2', '--to', 'node3'), /done: node3 is the primary/)
    await inSync(c, 'node2, the old primary, caught up and in sync again')
    let st = await c.status(0)
    assert.equal(st.awayFromHome, HOME_OF_NODE2, 'node2\'s shards are away from home')
    await sleep(2500) // delay 0: no rebalance of its own
    st = await c.status(0)
    assert.equal(st.awayFromHome, HOME_OF_NODE2, 'still away: cluster.rebalanceDelay 0 moves nothing by itself')
    await writeAll(c.brokers[0], names, 'away') // served by node3 meanwhile

    const t0 = Date.now()
    const out = await c.ctl(1, 'cluster', 'rebalance') // asked of node2, which need not lead
    console.log(`# ${out.trim().split('\n').join(' / ')}`)
    assert.match(out, new RegExp(`proposing ${HOME_OF_NODE2} shard moves home, 0 copies added, 0 dropped`))
    assert.match(out, /done: 0 shards away from home/)
    await until(async () => {
      const all = await Promise.all([0, 1, 2].map(i => c.status(i)))
      return all.every(s => s && s.version === all[0].version && s.awayFromHome === 0 &&
        s.members[1].primaries === HOME_OF_NODE2)
    }, 'every node shows node2 home again', 15000)
    console.log(`# rebalance of ${HOME_OF_NODE2} shards: ${Date.now() - t0} ms to every node's map`)
    await expectAll(c.brokers[0], names, 'away') // the writes made while away are on node2
    await writeAll(c.brokers[0], names, 'home')
    await expectAll(c.brokers[0], names, 'home')
    await inSync(c, 'node3, the old primary, in sync again')
    assert.ok((await c.status(0)).sameAsStatic, 'every shard in its home layout')
    assert.match(await c.ctl(0, 'cluster', 'rebalance'), /proposing 0 shard moves home, 0 copies added, 0 dropped/, 'nothing left to move')
  })

  test('with cluster.rebalanceDelay a killed node that rejoined gets its copies, then its shards back by itself', async () => {
    c = startCluster({ name: 'rebalance-auto', flags: ['--node-timeout', '2000', '--rereplicate', 'true', '--rebalance-delay', '3000'] })
    await settled(c, [0, 1, 2], 'the map bootstrapped on every node')
    const names = namesOn(2, NODES, 'rba/', 6)
    await writeAll(c.brokers[0], names, 'before')
    await killNode2(c, names)
    // re-replication while node2 is down: node1 holds the second copies node2 held
    await inSync(c, 'every shard at 2 copies again without node2')
    await c.sh('start', 'node2')
    const back = Date.now()
    await homeEverywhere(c, 'every shard home, in its home layout, by itself')
    console.log(`# node2 started -> every shard home in its layout: ${Date.now() - back} ms (rebalanceDelay 3000)`)
    const logs = c.log('node1') + c.log('node2') + c.log('node3')
    assert.match(logs, /rebalance-planned adds=[1-9]\d* .*why="cluster.rereplicate: copies of the home layout back"/)
    assert.match(logs, /rebalance-planned adds=\d+ promotes=[1-9]\d* .*why="cluster.rebalanceDelay"/)
    assert.match(logs, /rebalance-planned adds=\d+ promotes=\d+ drops=[1-9]\d* .*why="(rebalance under way|cluster.rebalanceDelay)"/)
    await inSync(c, 'every copy in sync after the rebalance')
    await expectAll(c.brokers[0], names, 'failed-over')
    await writeAll(c.brokers[0], names, 'home')
    await expectAll(c.brokers[0], names, 'home')
  })

  test('without cluster.rereplicate the delay brings a rejoined node its copies, then its shards', async () => {
    // eddy's defaults: cluster.raft auto (on with 3 nodes), cluster.replicas 2
    c = startCluster({ name: 'rebalance-plain', replicas: null, raft: null, flags: ['--node-timeout', '2000', '--rebalance-delay', '2000'] })
    await settled(c, [0, 1, 2], 'the map bootstrapped on every node')
    const defaults = await c.status(0)
    assert.equal(defaults.raft, true, 'cluster.raft auto is on with 3 nodes')
    assert.equal(defaults.replicasConfigured, 2, 'cluster.replicas defaults to 2 with 3 nodes')
    const names = namesOn(2, NODES, 'rbp/', 6)
    await writeAll(c.brokers[0], names, 'before')
    await killNode2(c, names)
    const st = await c.status(0)
    assert.equal(st.copiesMin, 1, 'no re-replication while node2 is down')
    await c.sh('start', 'node2')
    const back = Date.now()
    await homeEverywhere(c, 'every shard home, in its home layout, after the delay')
    console.log(`# without rereplicate: node2 started -> every shard home in its layout: ${Date.now() - back} ms (rebalanceDelay 2000)`)
    const logs = c.log('node1') + c.log('node3')
    assert.match(logs, /rebalance-planned adds=[1-9]\d* .*why="cluster.rebalanceDelay"/)
    assert.doesNotMatch(logs, /cluster.rereplicate: copies/)
    await inSync(c, 'every copy in sync after the rebalance')
    await expectAll(c.brokers[0], names, 'failed-over')
    await writeAll(c.brokers[0], names, 'home')
  })
})
