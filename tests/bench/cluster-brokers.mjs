// cluster-brokers.mjs - throughput of a real cluster (cluster.sh: 3 nodes and
// 1 or 2 brokers, separate processes over tcp) driven by @deepstream/client
// connections spread round-robin over the brokers, each client in its own
// worker thread so the load generator is not one JavaScript event loop.
//
//   events:  4 subscriber connections on topics bench/ev/0..7, 2 publisher
//            connections emitting in bursts; reports events delivered/s
//   records: 4 connections, each with 25 records in flight (setWithAck);
//            reports acknowledged record updates/s
//
// Runs the 1-broker and the 2-broker cluster back to back in the same session
// and prints the ratio. A benchmark: it prints figures and fails only if
// nothing was delivered.
//
// usage: node tests/bench/cluster-brokers.mjs [eddy binary] [seconds per phase]
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const TOPICS = 8

async function workerMain () {
  const { DeepstreamClient } = await import('@deepstream/client')
  const { role, url, seconds, index } = workerData
  const c = new DeepstreamClient(url, { maxReconnectAttempts: 0 })
  await c.login({})
  let count = 0
  if (role === 'sub') {
    for (let t = 0; t < TOPICS; t++) c.event.subscribe(`bench/ev/${t}`, () => { count++ })
    parentPort.postMessage({ ready: true })
    await new Promise(resolve => parentPort.once('message', resolve)) // go
    const progress = setInterval(() => parentPort.postMessage({ progress: count }), 100)
    await new Promise(resolve => parentPort.once('message', resolve)) // stop
    clearInterval(progress)
  } else if (role === 'pub') {
    parentPort.postMessage({ ready: true })
    await new Promise(resolve => parentPort.once('message', resolve))
    const deadline = Date.now() + seconds * 1000
    const payload = { n: 0, text: 'a small event payload' }
    while (Date.now() < deadline) {
      for (let i = 0; i < 200; i++) { payload.n = count++; c.event.emit(`bench/ev/${count % TOPICS}`, payload) }
      await new Promise(resolve => setImmediate(resolve)) // let the socket drain
    }
  } else {
    const records = await Promise.all(Array.from({ length: 25 }, async (_, k) => {
      const r = c.record.getRecord(`bench/rec/${index}/${k}`)
      await r.whenReady()
      return r
    }))
    parentPort.postMessage({ ready: true })
    await new Promise(resolve => parentPort.once('message', resolve))
    const deadline = Date.now() + seconds * 1000
    await Promise.all(records.map(async r => {
      for (let n = 0; Date.now() < deadline; n++) { await r.setWithAck('n', n); count++ }
    }))
  }
  parentPort.postMessage({ count })
  c.close()
}

function start (role, url, seconds, index) {
  const w = new Worker(fileURLToPath(import.meta.url), { workerData: { role, url, seconds, index } })
  const ready = new Promise((resolve, reject) => {
    w.once('error', reject)
    w.once('message', resolve)
  })
  const handle = { w, ready, progress: 0, changed: Date.now() }
  handle.done = new Promise((resolve, reject) => {
    w.on('error', reject)
    w.on('message', m => {
      if ('count' in m) resolve(m.count)
      if ('progress' in m && m.progress !== handle.progress) {
        handle.progress = m.progress
        handle.changed = Date.now()
      }
    })
  })
  return handle
}

async function phase (urls, seconds, roles) {
  const ws = roles.map(([role, i]) => start(role, urls[i % urls.length], seconds, i))
  await Promise.all(ws.map(w => w.ready))
  await new Promise(resolve => setTimeout(resolve, 300)) // interest reaches every node
  const t0 = Date.now()
  for (const w of ws) w.w.postMessage('go')
  const drivers = ws.filter((_, k) => roles[k][0] !== 'sub')
  const sent = (await Promise.all(drivers.map(w => w.done))).reduce((a, b) => a + b, 0)
  const sinks = ws.filter(w => !drivers.includes(w))
  // the subscribers drain what is queued for them: wait until no count moved for a second
  let last = Date.now()
  while (sinks.length > 0 && Date.now() - Math.max(...sinks.map(w => w.changed)) < 1000) {
    await new Promise(resolve => setTimeout(resolve, 100))
    last = Math.max(...sinks.map(w => w.changed))
  }
  for (const w of sinks) w.w.postMessage('stop')
  const received = (await Promise.all(sinks.map(w => w.done))).reduce((a, b) => a + b, 0)
  const elapsed = ((sinks.length > 0 ? last : Date.now()) - t0) / 1000
  return { sent, received, elapsed }
}

async function mainThread () {
  const bin = resolve(process.argv[2] || 'build/eddy')
  const seconds = Number(process.argv[3] || 5)
  const sh = resolve('cluster-tests/cluster.sh')
  const results = {}
  for (const brokers of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-bench-cluster-'))
    // (limits.messageRate off: a load generator's connection sends more than a client may by default)
    execFileSync('bash', [sh, 'up', '--dir', dir, '--nodes', '3', '--brokers', String(brokers), '--bin', bin, '--', '--message-rate', '0'],
      { stdio: 'ignore', timeout: 60000 })
    try {
      const urls = readFileSync(join(dir, 'brokers'), 'utf8').trim().split('\n')
      const ev = await phase(urls, seconds, [['sub', 0], ['sub', 1], ['sub', 2], ['sub', 3], ['pub', 0], ['pub', 1]])
      const rec = await phase(urls, seconds, [['rec', 0], ['rec', 1], ['rec', 2], ['rec', 3]])
      if (ev.received === 0 || rec.sent === 0) throw new Error('nothing delivered')
      if (ev.received < ev.sent * 4) console.log(`  (${ev.sent * 4 - ev.received} of ${ev.sent * 4} deliveries missing: see the brokers' /metrics)`)
      results[brokers] = { events: ev.received / ev.elapsed, emitted: ev.sent / ev.elapsed, records: rec.sent / seconds }
      // (event rates are over the time until the subscribers had received everything)
      console.log(`${brokers} broker(s): ${Math.round(results[brokers].events)} events delivered/s ` +
        `(${Math.round(results[brokers].emitted)} emitted/s, 4 subscribers), ` +
        `${Math.round(results[brokers].records)} acknowledged record updates/s (4 connections x 25 in flight)`)
    } finally {
      execFileSync('bash', [sh, 'down', '--dir', dir], { stdio: 'ignore', timeout: 60000 })
      rmSync(dir, { recursive: true, force: true })
    }
  }
  const r = k => (results[2][k] / results[1][k]).toFixed(2)
  console.log(`2 brokers / 1 broker: events x${r('events')}, record updates x${r('records')} ` +
    '(3 nodes, 2 brokers, the load generator all share this machine\'s cores)')
}

if (isMainThread) await mainThread()
else await workerMain()
