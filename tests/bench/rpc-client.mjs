// rpc-client.mjs - RPC calls through the real client path: eddy standalone,
// one provider connection and one caller connection; calls/s and latency
// sequentially (one in flight) and with N in flight. A benchmark: it prints
// figures; it fails only if a call fails.
//
// usage: node tests/bench/rpc-client.mjs [eddy binary] [seconds per phase] [in flight]
import { resolve } from 'node:path'
import { startStandalone } from './standalone.mjs'
import { DeepstreamClient } from '@deepstream/client'

const bin = resolve(process.argv[2] || 'build/eddy')
const seconds = Number(process.argv[3] || 5)
const inflight = Number(process.argv[4] || 100)

const server = await startStandalone(bin, [])
const url = server.url
const provider = new DeepstreamClient(url)
const caller = new DeepstreamClient(url)
await provider.login({})
await caller.login({})
provider.rpc.provide('bench/add', (d, res) => res.send(d.a + d.b))
await new Promise(resolve => setTimeout(resolve, 300))

async function phase (parallel) {
  const lat = []
  let calls = 0
  const deadline = Date.now() + seconds * 1000
  await Promise.all(Array.from({ length: parallel }, async (_, k) => {
    while (Date.now() < deadline) {
      const t = process.hrtime.bigint()
      const v = await caller.rpc.make('bench/add', { a: k, b: calls })
      if (typeof v !== 'number') throw new Error(`bad result ${v}`)
      lat.push(Number(process.hrtime.bigint() - t) / 1e6)
      calls++
    }
  }))
  lat.sort((a, b) => a - b)
  const pct = p => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2)
  console.log(`rpc ${parallel} in flight: ${Math.round(calls / seconds)} calls/s  p50 ${pct(0.5)} ms  p99 ${pct(0.99)} ms`)
}
await phase(1)
await phase(inflight)
provider.close()
caller.close()
await server.stop()
