// records-client.mjs - record writes through the real client path: eddy
// standalone (storage.sync batch) and @deepstream/client connections doing
// setWithAck in closed loops. Reports acknowledged writes/s and latency
// percentiles. A benchmark: it prints figures; it fails only if a write fails.
//
// usage: node tests/bench/records-client.mjs [eddy binary] [seconds] [connections] [in-flight per connection]
import { resolve } from 'node:path'
import { startStandalone } from './standalone.mjs'
import { DeepstreamClient } from '@deepstream/client'

const bin = resolve(process.argv[2] || 'build/eddy')
const seconds = Number(process.argv[3] || 5)
const connections = Number(process.argv[4] || 4)
const inflight = Number(process.argv[5] || 25)

const server = await startStandalone(bin, ['--sync', 'batch'])

const clients = await Promise.all(Array.from({ length: connections }, async () => {
  const c = new DeepstreamClient(server.url)
  await c.login({})
  return c
}))

const latencies = []
let writes = 0
const deadline = Date.now() + seconds * 1000
await Promise.all(clients.flatMap((c, ci) => Array.from({ length: inflight }, async (_, k) => {
  const r = c.record.getRecord(`bench/${ci}/${k}`)
  await r.whenReady()
  let n = 0
  while (Date.now() < deadline) {
    const t = process.hrtime.bigint()
    if (n % 2) await r.setWithAck('n', n)
    else await r.setWithAck({ n, payload: '0123456789abcdef' })
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6)
    writes++
    n++
  }
})))
const elapsed = seconds
if (writes === 0) throw new Error('no write was acknowledged')
latencies.sort((a, b) => a - b)
const pct = p => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))].toFixed(2)
console.log(`client path: ${writes} acknowledged writes in ${elapsed} s = ${Math.round(writes / elapsed)} writes/s ` +
  `(${connections} connections x ${inflight} records in flight, storage.sync batch)`)
console.log(`setWithAck latency: p50 ${pct(0.5)} ms  p99 ${pct(0.99)} ms  p99.9 ${pct(0.999)} ms`)
for (const c of clients) c.close()
await server.stop()
