// replication.mjs - acknowledged record writes against a running cluster:
// WRITERS official clients (one record each, spread over every node), each
// writing with setWithAck as fast as its acknowledgements come back for
// SECONDS. Prints one JSON line: writes/s, p50 and p99 of the acknowledgement
// time (ms) and, given the cluster's pids (comma-separated: every node and
// broker), the CPU those processes spent per 1000 acknowledged writes.
// Used by replication.sh (replicas 1 and 2, back to back).
// usage: node tests/bench/replication.mjs BROKER_URL [writers] [seconds] [pids]
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { connect, closeAll } from '../e2e/lib/client.mjs'

const [url, writersArg = '32', secondsArg = '8', pidsArg = ''] = process.argv.slice(2)
const pids = pidsArg.split(',').filter(Boolean)
const ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim())
function clusterCpu () { // seconds of utime + stime over the pids
  let sum = 0
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // f[0] is field 3 (state)
    sum += (Number(f[11]) + Number(f[12])) / ticks // fields 14 and 15
  }
  return sum
}
const writers = Number(writersArg)
const seconds = Number(secondsArg)
const lat = []
const clients = await Promise.all(Array.from({ length: Math.min(writers, 8) }, (_, i) => connect(url, { username: `bench${i}` })))
const recs = []
for (let w = 0; w < writers; w++) {
  const r = clients[w % clients.length].record.getRecord(`bench/repl/${w}`)
  await r.whenReady()
  recs.push(r)
}
const cpu0 = clusterCpu()
const end = Date.now() + seconds * 1000
let errors = 0
await Promise.all(recs.map(async (r, w) => {
  for (let k = 0; Date.now() < end; k++) {
    const t = process.hrtime.bigint()
    try { await r.setWithAck({ w, k, pad: 'x'.repeat(100) }) } catch { errors++; continue }
    lat.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
}))
const cpu = clusterCpu() - cpu0
lat.sort((a, b) => a - b)
const q = p => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2) : null
const cpuPer1000 = pids.length && lat.length ? Number((cpu * 1000 / lat.length).toFixed(3)) : null
console.log(JSON.stringify({ writes: lat.length, perSecond: Math.round(lat.length / seconds), p50: Number(q(0.5)), p99: Number(q(0.99)), errors, cpuPer1000 }))
await closeAll()
process.exit(0)
