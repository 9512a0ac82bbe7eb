// metrics.mjs - a server's /metrics, summed over every process clients talk
// to (in haproxy mode: both brokers, each asked directly, not through haproxy).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MODE } from './server.mjs'

function ports (server) {
  if (MODE !== 'haproxy') return [server.port]
  return [1, 2].map(i => Number(readFileSync(join(server.dataDir, `broker${i}.port`), 'utf8').trim()))
}

// { text, sum(name, labels) }: sum adds every sample of name (with labels, a
// string such as 'topic="event"', only those samples) over the processes.
export async function metrics (server) {
  const texts = await Promise.all(ports(server).map(async p => (await fetch(`http://127.0.0.1:${p}/metrics`)).text()))
  const text = texts.join('')
  const sum = (name, labels = null) => [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\d+)$`, 'gm'))]
    .filter(m => labels === null || (m[1] || '').split(',').includes(labels))
    .reduce((n, m) => n + Number(m[2]), 0)
  return { text, sum }
}
