// failover.mjs - the measuring side of failover.sh: writers on every node's
// records (setWithAck in loops, on both brokers), KILLS times: wait until the
// cluster is whole (every member up, every shard at 2 copies in sync), kill
// -9 the node that is primary of the most shards, time kill -> the first
// successful write sent after the kill, for every writer; the slowest (a
// writer of the killed node's records) is the failover time; start it again. usage: node tests/bench/failover.mjs DIR KILLS
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { connect, closeAll } from '../e2e/lib/client.mjs'
import { until, sleep, namesOn } from '../e2e/lib/server.mjs'

const run = promisify(execFile)
const [dir, killsArg] = process.argv.slice(2)
const kills = Number(killsArg || 10)
const BIN = resolve(process.env.EDDY_BIN || 'build/eddy')
const brokers = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
const nodes = readFileSync(join(dir, 'nodes'), 'utf8').trim().split('\n')
const sh = (...a) => run('bash', ['cluster-tests/cluster.sh', ...a, '--dir', dir], { timeout: 60000 })
async function status () {
  for (const i of [0, 1, 2]) {
    try {
      const { stdout } = await run(BIN, ['ctl', '--cluster', nodes[i], '--timeout', '1000', 'cluster', 'status', '--json'], { timeout: 5000 })
      const s = JSON.parse(stdout)
      if (s.version > 0) return s
    } catch {}
  }
  return null
}
const whole = s => s && s.members.every(m => !m.down) && s.copiesMin === 2 && s.insyncMin === 2 && s.lease?.valid

await until(async () => whole(await status()), 'the cluster bootstrapped', 60000)
const names = [1, 2, 3].flatMap(n => namesOn(n, 3, `fo-${n}/`, 2))
const state = { writing: true, killAt: 0, refused: new Set(), firstAfter: {} }
const loops = []
for (const [w, name] of names.entries()) {
  const client = await connect(brokers[w % 2], { username: `fo${w}` })
  const rec = client.record.getRecord(name)
  await rec.whenReady()
  loops.push((async () => {
    for (let k = 1; state.writing; k++) {
      const sent = Date.now()
      try {
        await rec.setWithAck({ w, k })
      } catch {
        if (state.killAt && sent >= state.killAt - 50) state.refused.add(name)
        await sleep(20)
        continue
      }
      if (state.killAt && sent > state.killAt && state.firstAfter[name] === undefined) state.firstAfter[name] = Date.now()
    }
  })())
}

const times = []
for (let i = 0; i < kills; i++) {
  let s = null
  await until(async () => whole(s = await status()), 'the cluster whole again', 60000)
  await sleep(500)
  const victim = [...s.members].sort((a, b) => b.primaries - a.primaries)[0].name
  state.refused = new Set()
  state.firstAfter = {}
  await sh('kill', victim)
  state.killAt = Date.now()
  await until(() => names.every(n => state.firstAfter[n] !== undefined), 'every writer wrote again', 30000).catch(async e => {
    const st = await status()
    console.log(`stuck after killing ${victim}: ${names.filter(n => state.firstAfter[n] === undefined).join(' ')}; ` +
      `unavailable shards ${st?.unavailableShards} (${st?.unavailable}), insyncMin ${st?.insyncMin}, copiesMin ${st?.copiesMin}`)
    throw e
  })
  const t = Math.max(...names.map(n => state.firstAfter[n] - state.killAt)) // the killed node's writers are the last
  times.push(t)
  console.log(`kill ${i + 1}: ${victim} (${s.members.find(m => m.name === victim).primaries} primaries): first successful write after ${t} ms (${state.refused.size} writers refused)`)
  state.killAt = 0
  await sh('start', victim)
}
state.writing = false
await Promise.race([Promise.all(loops), sleep(3000)])
await closeAll()
const sorted = [...times].sort((a, b) => a - b)
console.log(`failover (kill -> first successful write), ${times.length} kills: median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms`)
process.exit(0)
