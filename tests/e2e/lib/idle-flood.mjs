// idle-flood.mjs - websocket connections that never say a word, opened from a
// worker thread so that the flood does not hold up the test's own clients
// (their event loop is the test's). Started with idleFlood(url, n); the worker
// keeps the counts of opened, closed and failed connections. With perSecond
// the connections are opened at that rate (in steps of 10 ms), else all at once.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import WebSocket from 'ws'
import { until } from './server.mjs'

if (!isMainThread && workerData?.idleFlood) {
  const { url, n, perSecond } = workerData
  const c = { opened: 0, closed: 0, failed: 0 }
  const sockets = []
  const open = k => {
    for (let i = 0; i < k && sockets.length < n; i++) {
      const ws = new WebSocket(url)
      sockets.push(ws)
      ws.on('open', () => { c.opened++ })
      ws.on('close', () => { c.closed++ })
      ws.on('error', () => { c.failed++ })
    }
  }
  let pacer = null
  if (perSecond > 0) {
    const step = Math.max(1, Math.round(perSecond / 100))
    pacer = setInterval(() => { open(step); if (sockets.length >= n) clearInterval(pacer) }, 10)
  } else {
    open(n)
  }
  const report = setInterval(() => parentPort.postMessage(c), 20)
  parentPort.on('message', () => { // end: every socket goes
    clearInterval(report)
    clearInterval(pacer)
    for (const ws of sockets) try { ws.terminate() } catch {}
    parentPort.close()
  })
}

// Opens n idle websockets to url from a worker thread (perSecond: at that
// rate; 0: all at once). Returns { opened,
// closed, failed } (kept up to date), settled() (every connection answered)
// and end() (every socket terminated, the worker gone).
export function idleFlood (url, n, perSecond = 0) {
  const f = { opened: 0, closed: 0, failed: 0 }
  const worker = new Worker(new URL(import.meta.url), { workerData: { idleFlood: true, url, n, perSecond } })
  worker.on('message', c => Object.assign(f, c))
  worker.on('error', err => { f.error = err })
  f.settled = () => until(() => f.opened + f.failed >= n,
    `the flood's ${n} connections are answered (${f.opened} open, ${f.failed} failed)`, 30000)
  let ending = null
  f.end = () => (ending ??= (async () => {
    const exited = new Promise(resolve => { worker.once('exit', resolve); setTimeout(resolve, 2000) })
    worker.postMessage('end')
    await exited
    await worker.terminate()
  })())
  return f
}
