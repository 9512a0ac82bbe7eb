// http-api.mjs - load generator for deepstream's HTTP API (figures, not a
// test): C keep-alive connections post to URL for S seconds, each waiting for
// its answer before the next request, every request either one event emit or a
// batch of B emits. Every answer must be 200 with result SUCCESS and one
// success per operation; anything else (another status, a refused or reset
// connection, a body that says otherwise) is counted as failed, and a run
// with failures exits 1. Reports requests/s, operations/s, p50/p99 latency,
// the server's CPU seconds per 1000 requests (utime + stime of --pid from
// /proc, before and after) and this process's own.
//
// With --subscribe WS_URL, an official @deepstream/client subscribes to the
// event name first and counts what it receives, so the run shows the emits are
// delivered and not just acknowledged (exit 1 when nothing arrived). It shares
// this process's CPU, so runs with a subscriber are for the check, not for the
// figures. Not for anything but the HTTP API's emit path.
//
// usage: node tests/bench/http-api.mjs --url http://HOST:PORT/api [--pid PID]
//   [--connections 16] [--seconds 10] [--warmup 1] [--batch 1] [--subscribe ws://HOST:PORT/deepstream]
//   [--label NAME] [--json FILE] [--client http|fetch]
// --client http (node:http with a keep-alive agent, the default): on node 20
// it cost this process about a seventh of fetch's (undici's) CPU per request
// and drove about 5 times the requests/s; fetch is there to check that again.
import http from 'node:http'
import { readFileSync, appendFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt
}
const url = new URL(opt('url', ''))
const pid = opt('pid', null)
const C = Number(opt('connections', 16))
const S = Number(opt('seconds', 10))
const W = Number(opt('warmup', 1))
const B = Number(opt('batch', 1))
const subscribe = opt('subscribe', null)
const label = opt('label', url.host)
const jsonOut = opt('json', null)
const clientKind = opt('client', 'http')
const EVENT = 'http-bench'
if (!url.host || !(C > 0) || !(S > 0) || !(B > 0) || !['http', 'fetch'].includes(clientKind)) {
  console.error('usage: node tests/bench/http-api.mjs --url http://HOST:PORT/api [--pid PID] [--connections N] ' +
    '[--seconds S] [--warmup S] [--batch B] [--subscribe WS_URL] [--label NAME] [--json FILE] [--client http|fetch]')
  process.exit(2)
}
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// one request's body, the same for every request: B emits of a small payload
const body = Buffer.from(JSON.stringify({
  body: Array.from({ length: B }, (_, i) => ({ topic: 'event', action: 'emit', eventName: EVENT, data: { i, s: 'http-api bench' } }))
}))

// ---- the server's CPU ----
const ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim())
function serverCpu () { // seconds of utime + stime, or null without --pid
  if (!pid) return null
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / ticks // fields 14 and 15
}

// ---- one request ----
// Resolves { ok, why } after the answer was read whole and checked; never rejects.
function check (status, text) {
  if (status !== 200) return `status ${status}`
  let a
  try { a = JSON.parse(text) } catch { return 'not JSON' }
  if (a.result !== 'SUCCESS') return `result ${a.result}`
  if (!Array.isArray(a.body) || a.body.length !== B) return 'body length'
  for (const r of a.body) if (!r || r.success !== true) return 'an operation failed'
  return null
}

const agent = new http.Agent({ keepAlive: true, maxSockets: C, maxFreeSockets: C, scheduling: 'fifo' })
let newSockets = 0
const headers = { 'Content-Type': 'application/json', 'Content-Length': body.length }
function postHttp () {
  return new Promise(resolve => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers }, res => {
      const chunks = []
      res.on('data', c => chunks.push(c))
      res.on('end', () => {
        const why = check(res.statusCode, Buffer.concat(chunks).toString())
        resolve({ ok: !why, why })
      })
      res.on('error', e => resolve({ ok: false, why: e.code || e.message }))
    })
    req.on('socket', () => { if (!req.reusedSocket) newSockets++ })
    req.on('error', e => resolve({ ok: false, why: e.code || e.message }))
    req.end(body)
  })
}
async function postFetch () { // undici's global dispatcher keeps connections alive
  try {
    const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } })
    const why = check(res.status, await res.text())
    return { ok: !why, why }
  } catch (e) {
    return { ok: false, why: e.cause?.code || e.message }
  }
}
const post = clientKind === 'http' ? postHttp : postFetch

// ---- the subscriber ----
let delivered = 0
let client = null
async function startSubscriber () {
  const { DeepstreamClient } = await import('@deepstream/client')
  client = new DeepstreamClient(subscribe)
  client.on('error', e => console.error(`http-api: subscriber: ${e}`))
  await client.login({})
  client.event.subscribe(EVENT, () => { delivered++ })
  // the subscription is in place once an emit arrives: post single emits until one does
  const one = Buffer.from(JSON.stringify({ body: [{ topic: 'event', action: 'emit', eventName: EVENT, data: 0 }] }))
  for (let i = 0; i < 100 && delivered === 0; i++) {
    await fetch(url, { method: 'POST', body: one, headers: { 'Content-Type': 'application/json' } }).then(r => r.text(), () => {})
    await sleep(50)
  }
  if (delivered === 0) throw new Error(`the subscriber at ${subscribe} received none of 100 emits`)
  await sleep(200)
  delivered = 0
}

// ---- the run ----
if (subscribe) await startSubscriber()
let measuring = false
let stopped = false
let requests = 0
let okOps = 0 // operations acknowledged, warmup included (what the subscriber should receive)
let failed = 0
const failures = {}
const lat = []
async function worker () {
  while (!stopped) {
    const t0 = process.hrtime.bigint()
    const r = await post()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (r.ok) okOps += B
    else { failed++; failures[r.why] = (failures[r.why] || 0) + 1 }
    if (measuring && !stopped) { requests++; lat.push(ms) }
  }
}
const workers = Array.from({ length: C }, worker)
await sleep(W * 1000)
measuring = true
const cpu0 = serverCpu()
const me0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
await sleep(S * 1000)
stopped = true
const secs = Number(process.hrtime.bigint() - t0) / 1e9
const cpu1 = serverCpu()
const me = process.cpuUsage(me0)
await Promise.all(workers)
agent.destroy()

if (client) { // let deliveries in flight arrive: until nothing came for 500 ms (at most 10 s)
  for (let last = -1, quiet = 0, i = 0; i < 100 && quiet < 5 && delivered < okOps; i++) {
    await sleep(100)
    quiet = delivered === last ? quiet + 1 : 0
    last = delivered
  }
  client.close()
}

lat.sort((a, b) => a - b)
const pct = p => lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] : 0
const round = (v, d = 2) => Number(v.toFixed(d))
const result = {
  label, scenario: 'http-api', batch: B, connections: C, seconds: round(secs), client: clientKind,
  requests, requests_per_s: Math.round(requests / secs), ops_per_s: Math.round(requests * B / secs),
  p50_ms: round(pct(0.5)), p99_ms: round(pct(0.99)), max_ms: round(lat.at(-1) || 0),
  failed, failures, new_connections: clientKind === 'http' ? newSockets : undefined,
  client_cpu_s_per_1000: requests ? round((me.user + me.system) / 1e6 / requests * 1000, 4) : null
}
if (cpu0 !== null) {
  result.server_cpu_s = round(cpu1 - cpu0)
  result.server_cpu_s_per_1000 = requests ? round((cpu1 - cpu0) / requests * 1000, 4) : null
}
if (client) { result.emitted = okOps; result.delivered = delivered }
if (jsonOut) appendFileSync(jsonOut, JSON.stringify(result) + '\n')
console.log(`${label} batch ${B}: ${result.requests_per_s} requests/s, ${result.ops_per_s} emits/s, ` +
  `p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms` +
  (cpu0 !== null ? `, server ${result.server_cpu_s_per_1000} CPU s per 1000 requests` : '') +
  `, client ${result.client_cpu_s_per_1000}, ${failed} failed` +
  (clientKind === 'http' ? `, ${newSockets} connections opened` : '') +
  (client ? `, delivered ${delivered} of ${okOps} emits` : '') +
  (failed ? ` ${JSON.stringify(failures)}` : ''))
process.exit(failed || (client && delivered === 0) ? 1 : 0)
