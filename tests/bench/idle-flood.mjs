// idle-flood.mjs - what a flood of websocket connections that never log in
// costs a broker, and whether honest clients still get in (issue 14). Starts
// `eddy standalone` (with the flags given after --), opens N idle connections
// from two child processes (each process has its own open-file limit), then
// logs honest official clients in one after the other while the flood is
// held, and prints the server's memory, descriptors and CPU, and the logins.
// Run it twice to compare: with the defaults (limits.maxUnauthenticatedConnections
// 10000, at most half the open-file limit) and with --max-unauthenticated 0.
//
// usage: node tests/bench/idle-flood.mjs [BUILD] [N] [-- eddy flags...]
import { spawn, fork } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

if (process.argv[2] === '--child') { // one flooding process: opens n idle websockets, reports counts
  const { default: WebSocket } = await import('ws')
  const [url, n] = [process.argv[3], Number(process.argv[4])]
  const c = { opened: 0, closed: 0, failed: 0, started: 0 }
  const sockets = []
  const report = setInterval(() => process.send(c), 100)
  for (let i = 0; i < n; i++) {
    while (c.started - c.opened - c.failed >= 500) await sleep(5) // at most 500 connecting at once
    const ws = new WebSocket(url)
    c.started++
    sockets.push(ws)
    ws.on('open', () => { c.opened++ })
    ws.on('close', () => { c.closed++ })
    ws.on('error', () => { c.failed++ })
  }
  process.on('message', () => { clearInterval(report); for (const ws of sockets) ws.terminate(); process.exit(0) })
} else {
  const args = process.argv.slice(2)
  const dash = args.indexOf('--')
  const own = dash >= 0 ? args.slice(0, dash) : args
  const extra = dash >= 0 ? args.slice(dash + 1) : []
  const build = resolve(own[0] || 'build')
  const N = Number(own[1] || 20200)
  const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..')
  const { DeepstreamClient } = await import(join(root, 'node_modules/@deepstream/client/dist/src/deepstream.js'))

  const dir = mkdtempSync(join(tmpdir(), 'eddy-idle-flood-'))
  const eddy = spawn(join(build, 'eddy'), ['standalone', '--host', '127.0.0.1', '--port', '0', '--data', join(dir, 'data'),
    ...extra], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  eddy.stderr.on('data', d => { log += d })
  while (!/broker-listening port=(\d+)/.test(log)) await sleep(20)
  const url = `ws://127.0.0.1:${/broker-listening port=(\d+)/.exec(log)[1]}/deepstream`
  const proc = () => {
    const st = readFileSync(`/proc/${eddy.pid}/stat`, 'utf8').split(') ')[1].split(' ')
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${eddy.pid}/status`, 'utf8'))[1])
    return { cpu: (Number(st[11]) + Number(st[12])) / 100, rssMiB: rss / 1024, fds: readdirSync(`/proc/${eddy.pid}/fd`).length }
  }
  const before = proc()

  const kids = [0, 1].map(i => {
    const k = fork(fileURLToPath(import.meta.url), ['--child', url, String(Math.ceil(N / 2) - (i ? N % 2 : 0))])
    k.counts = { opened: 0, closed: 0, failed: 0, started: 0 }
    k.on('message', c => { k.counts = c })
    return k
  })
  const sum = key => kids.reduce((n, k) => n + k.counts[key], 0)
  const t0 = performance.now()
  let last = -1
  for (let stable = 0; stable < 20;) { // until every connection is answered, or nothing moves for 2 s
    await sleep(100)
    const now = sum('opened') + sum('failed') + sum('closed')
    stable = now === last ? stable + 1 : 0
    last = now
    if (sum('started') >= N && sum('opened') + sum('failed') >= N) break
  }
  const flooded = performance.now() - t0
  await sleep(1000)
  const held = proc()

  // honest clients, one after the other, while the flood is held
  const times = []
  let failed = 0
  for (let i = 0; i < 10; i++) {
    const c = new DeepstreamClient(url)
    c.on('error', () => {})
    const t = performance.now()
    const ok = await Promise.race([c.login({ username: `honest${i}` }).then(() => true, () => false), sleep(5000).then(() => false)])
    if (ok) times.push(performance.now() - t)
    else failed++
    c.close()
  }
  const m = await (await fetch(url.replace('ws:', 'http:').replace('/deepstream', '/metrics'))).text().catch(() => '')
  const metric = name => (new RegExp(`^${name} (\\d+)$`, 'm').exec(m) || [])[1] ?? '-'
  console.log(`eddy ${extra.join(' ') || '(defaults)'}: ${N} idle connections in ${(flooded / 1000).toFixed(1)} s: ` +
    `${sum('opened')} opened, ${sum('closed')} closed by the server, ${sum('started') - sum('opened') - sum('failed')} never answered`)
  console.log(`  server: RSS ${before.rssMiB.toFixed(0)} -> ${held.rssMiB.toFixed(0)} MiB, descriptors ${before.fds} -> ${held.fds}, ` +
    `CPU ${(held.cpu - before.cpu).toFixed(2)} s for the flood; not logged in: ${metric('eddy_unauthenticated_connections')}, ` +
    `evicted: ${metric('eddy_unauthenticated_evicted_total')}`)
  console.log(`  honest logins during the flood: ${times.length} of 10` +
    (times.length ? `, ${Math.min(...times).toFixed(1)}-${Math.max(...times).toFixed(1)} ms` : '') +
    (failed ? `, ${failed} not logged in within 5 s` : ''))
  for (const k of kids) k.send('end')
  eddy.kill('SIGTERM')
  await new Promise(resolve => { eddy.on('exit', resolve); setTimeout(resolve, 15000) })
  if (eddy.exitCode === null) eddy.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}
