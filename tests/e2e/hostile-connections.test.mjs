// hostile-connections.test.mjs - clients that take connections (issue 14).
//
// A flood of websocket connections that never log in: before
// limits.maxUnauthenticatedConnections, 20,200 of them took every file
// descriptor of a broker (its limit here is 20,000) and honest clients could
// not connect for up to auth.unauthenticatedClientTimeout (180 s). Here the
// process clients talk to runs with an open-file limit of 700 and the bound
// at 200, and 1000 idle connections arrive: more than it has descriptors
// for. The oldest not logged in make way, so the flood holds at most 200 and
// honest clients connect and log in within 100 ms, also while a second wave
// arrives. (haproxy mode: the brokers run with their usual open-file limit,
// and the bound is per broker.)
//
// Then limits.maxConnectionsPerIp: the connection over it is refused at the
// handshake, /metrics still answers, and a close makes room (not in haproxy
// mode, where every client has the balancer's address).
// run-tests: alone (it bounds how long honest work takes: nothing else may load the machine)
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { sleep, until, MODE } from './lib/server.mjs'
import { connect, Raw } from './lib/client.mjs'
import { metrics } from './lib/metrics.mjs'
import { idleFlood } from './lib/idle-flood.mjs'
import { serverPerSuite } from './lib/suite.mjs'

const BOUND = 200
const FLOOD = 1000
const WAVE = 1000
const FILES = 700
const BROKERS = MODE === 'haproxy' ? 2 : 1

// Connects an official client and logs it in; returns [client, ms].
async function timedLogin (url) {
  const t0 = performance.now()
  const c = await connect(url)
  return [c, performance.now() - t0]
}

describe(`hostile connections: a flood that never logs in (${MODE})`, () => {
  const server = serverPerSuite({ extra: ['--max-unauthenticated', String(BOUND)], edgeFileLimit: FILES })
  const floods = []
  after(async () => { for (const f of floods) await f.end() })

  test('idle connections beyond the bound make way; honest clients log in at once', { timeout: 120000 }, async () => {
    const first = idleFlood(server.url, FLOOD)
    floods.push(first)
    await first.settled()
    // every connection beyond the bound was closed: the flood holds at most the bound
    await until(() => first.closed >= FLOOD - BOUND * BROKERS, `the oldest idle connections are closed (${first.closed})`, 20000)
    let m = await metrics(server)
    assert.ok(m.sum('eddy_unauthenticated_connections') <= BOUND * BROKERS,
      `not logged in: ${m.sum('eddy_unauthenticated_connections')}`)
    assert.ok(m.sum('eddy_unauthenticated_evicted_total') >= FLOOD - BOUND * BROKERS)
    assert.match(server.stderr(), /unauthenticated-full closed=oldest .*evicted_total=\d+/)

    // honest clients log in while a second wave arrives (1000 connections a second)
    const second = idleFlood(server.url, WAVE, 1000)
    floods.push(second)
    const times = []
    const honest = []
    await until(() => second.opened >= 50, 'the second wave is under way')
    let duringWave = 0
    for (let i = 0; i < 20; i++) {
      const [c, ms] = await timedLogin(server.url)
      honest.push(c)
      times.push(ms)
      if (second.opened < WAVE) duringWave++
      await sleep(15)
    }
    assert.ok(duringWave >= 10, `${duringWave} logins ran during the wave`)
    await second.settled()
    const max = Math.max(...times)
    console.log(`# ${times.length} honest logins during the flood: max ${max.toFixed(1)} ms, median ${times.sort((a, b) => a - b)[10].toFixed(1)} ms`)
    assert.ok(max < 100, `an honest login took ${max.toFixed(1)} ms`)

    // logged-in clients never make way, and round-trip at once
    await until(() => first.closed + second.closed >= FLOOD + WAVE - BOUND * BROKERS, 'the second wave was bounded too', 20000)
    for (const c of honest) assert.equal(c.getConnectionState(), 'OPEN')
    const [a, b] = honest
    const got = []
    b.event.subscribe('flood/ping', d => got.push(performance.now() - d.t))
    await sleep(200)
    for (let i = 0; i < 10; i++) {
      a.event.emit('flood/ping', { t: performance.now() })
      await sleep(20)
    }
    await until(() => got.length === 10, 'every honest event arrives')
    assert.ok(Math.max(...got) < 100, `an honest event took ${Math.max(...got).toFixed(1)} ms`)

    // when the flood goes, nothing is left counted
    for (const f of floods) await f.end()
    await until(async () => (await metrics(server)).sum('eddy_unauthenticated_connections') === 0, 'the count drops to 0', 10000)
    m = await metrics(server)
    assert.equal(m.sum('eddy_connections_refused_total', 'reason="unauthenticated"'), 0, 'no newcomer was refused')
  })
})

describe(`hostile connections: per address (${MODE})`, { skip: MODE === 'haproxy' && 'every client has the balancer\'s address' }, () => {
  const PER_IP = 5
  const server = serverPerSuite({ extra: ['--max-connections-per-ip', String(PER_IP)] })

  test('a connection beyond limits.maxConnectionsPerIp is refused at the handshake', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => connect(server.url)))
    const raws = [await Raw.open(server.url), await Raw.open(server.url)]
    await assert.rejects(Raw.open(server.url), 'the sixth connection from 127.0.0.1 is refused')
    let m = await metrics(server) // plain HTTP is never refused
    assert.ok(m.sum('eddy_connections_refused_total', 'reason="per_ip"') >= 1)
    assert.match(server.stderr(), /connection-refused reason=per-ip ip=127\.0\.0\.1 connections=5 max=5/)

    // the clients in are served
    const got = []
    clients[1].event.subscribe('perip/ev', v => got.push(v))
    await sleep(200)
    clients[0].event.emit('perip/ev', 1)
    await until(() => got.length === 1, 'an event between clients in')

    // a close makes room
    raws[0].close()
    const again = await until(async () => { try { return await Raw.open(server.url) } catch { return null } },
      'a connection after a close', 5000)
    await again.login()
    again.close()
    raws[1].close()
    m = await metrics(server)
    assert.ok(m.sum('eddy_connections_refused_total', 'reason="per_ip"') >= 1)
  })
})
