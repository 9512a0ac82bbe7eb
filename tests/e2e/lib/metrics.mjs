// metrics.mjs - a server's /metrics, summed over every process clients talk
// to (in haproxy mode: both brokers, each asked directly, not through haproxy);
// its nodes' /metrics (standalone: the same body, which holds its node's
// families; cluster: the node's own listener, node.metrics; haproxy: every
// node cluster.sh started); and a check that a body is valid Prometheus text.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MODE } from './server.mjs'

function ports (server) {
  if (MODE !== 'haproxy') return [server.port]
  return [1, 2].map(i => Number(readFileSync(join(server.dataDir, `broker${i}.port`), 'utf8').trim()))
}

// { text, texts, sum(name, labels) }: sum adds every sample of name (with
// labels, a string such as 'topic="event"' or an array of them, only the
// samples that have them all) over the processes.
export function summed (texts) {
  const text = texts.join('')
  const sum = (name, labels = null) => {
    const want = labels === null ? [] : [].concat(labels)
    return [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))]
      .filter(m => want.every(l => (m[1] || '').split(',').includes(l)))
      .reduce((n, m) => n + Number(m[2]), 0)
  }
  return { text, texts, sum }
}

export async function metrics (server) {
  return summed(await Promise.all(ports(server).map(async p => (await fetch(`http://127.0.0.1:${p}/metrics`)).text())))
}

// The /metrics URLs of the server's nodes.
export function nodeMetricsUrls (server) {
  if (MODE === 'haproxy') return readFileSync(join(server.dataDir, 'node-metrics'), 'utf8').trim().split('\n')
  if (MODE === 'cluster') return [`${server.nodeMetricsUrl}/metrics`]
  return [`http://127.0.0.1:${server.port}/metrics`]
}

export async function nodeMetrics (server) {
  return summed(await Promise.all(nodeMetricsUrls(server).map(async u => (await fetch(u)).text())))
}

// Asserts that text is valid Prometheus text (format 0.0.4) as eddy writes
// it: every family has exactly one # TYPE line, before its samples, which
// follow it together; no series twice; counters and histogram buckets are
// numbers >= 0; a histogram has buckets with increasing le ending at +Inf,
// cumulative counts, then _sum and a _count equal to the +Inf bucket.
export function assertValidPrometheus (text, who = 'metrics') {
  const types = new Map() // family -> type
  const closed = new Set() // families whose samples are behind us
  const series = new Set()
  const hist = new Map() // family -> { les: [], counts: [], sum, count }
  let current = null
  const lines = text.split('\n')
  assert.equal(lines.pop(), '', `${who}: the body ends with a newline`)
  for (const [i, line] of lines.entries()) {
    const where = `${who} line ${i + 1}: ${line}`
    let m
    if ((m = line.match(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/))) {
      assert.ok(!types.has(m[1]), `${where}: a second # TYPE for ${m[1]}`)
      types.set(m[1], m[2])
      if (current !== null) closed.add(current)
      current = m[1]
      if (m[2] === 'histogram') hist.set(m[1], { les: [], counts: [], sum: null, count: null })
      continue
    }
    if ((m = line.match(/^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/))) {
      assert.ok(!types.has(m[1]), `${where}: HELP after the family's TYPE`)
      continue
    }
    assert.ok(!line.startsWith('#'), `${where}: an unknown comment`)
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (\S+)$/)
    assert.ok(m, `${where}: not a sample line`)
    const [, name, labels = '', value] = m
    const v = Number(value === '+Inf' ? Infinity : value)
    assert.ok(!Number.isNaN(v), `${where}: not a number`)
    let family = name
    const h = name.match(/^(.*)_(bucket|sum|count)$/)
    if (h && types.get(h[1]) === 'histogram') family = h[1]
    assert.ok(types.has(family), `${where}: a sample before (or without) its family's # TYPE`)
    assert.equal(family, current, `${where}: a sample of ${family} away from its family's other samples`)
    assert.ok(!closed.has(family))
    const key = `${name}${labels}`
    assert.ok(!series.has(key), `${where}: the series ${key} twice`)
    series.add(key)
    const type = types.get(family)
    if (type === 'counter') assert.ok(v >= 0, `${where}: a negative counter`)
    if (type === 'histogram') {
      const s = hist.get(family)
      if (h[2] === 'bucket') {
        const le = labels.match(/le="([^"]+)"/)
        assert.ok(le, `${where}: a bucket without le`)
        assert.equal(s.sum, null, `${where}: a bucket after _sum`)
        const bound = le[1] === '+Inf' ? Infinity : Number(le[1])
        if (s.les.length > 0) {
          assert.ok(bound > s.les[s.les.length - 1], `${where}: le not increasing`)
          assert.ok(v >= s.counts[s.counts.length - 1], `${where}: buckets not cumulative`)
        }
        s.les.push(bound)
        s.counts.push(v)
      } else if (h[2] === 'sum') {
        assert.equal(s.les[s.les.length - 1], Infinity, `${where}: the last bucket is not le="+Inf"`)
        s.sum = v
      } else {
        assert.notEqual(s.sum, null, `${where}: _count before _sum`)
        assert.equal(v, s.counts[s.counts.length - 1], `${where}: _count is not the +Inf bucket`)
        s.count = v
      }
    }
  }
  for (const [family, s] of hist) {
    assert.ok(s.les.length > 0 && s.count !== null, `${who}: histogram ${family} without buckets, _sum or _count`)
  }
  return types
}
