// links.test.mjs - who may talk on a node's nng ports (issue 16, README:
// Security). A node and a broker with TLS links (certificates made here by
// deploy/tls/eddy-certs.sh), a websocket client subscribed to a record, and
// strangers on the node's ports (build/tests/link_probe, with nng's own TLS):
// a certificate of another CA, no certificate, or a plain tcp:// peer is
// refused during the handshake and nothing it sent is applied (the record it
// wrote stays absent, the subscriber hears nothing); a backend certificate
// works through eddy ctl but cannot say HELLO as a node or a broker, nor
// announce a login; a stranger on the delivery port reads nothing (nothing
// without a certificate, no one else's deliveries with one); a peer that
// asks and never reads the answers is cut off without holding the others.
// Start-up refuses credentials that do not load or fit; a node listening
// beyond loopback without TLS warns. SIGHUP rotates a node's and a broker's
// link certificates without dropping the links up.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { connect, closeAll } from '../tests/e2e/lib/client.mjs'
import { Proc, BIN, runEddy, sleep, until, assertNoSanitizerReport } from '../tests/e2e/lib/server.mjs'
import { summed } from '../tests/e2e/lib/metrics.mjs'

const PROBE = join(dirname(BIN), 'tests', 'link_probe')
const CERTS = resolve('deploy/tls/eddy-certs.sh')

describe('cluster links: TLS with certificates and roles', () => {
  let dir, certs, node, broker, req, del, ws, metrics
  const tls = name => ['--cluster-tls-cert', join(certs, `${name}.crt`), '--cluster-tls-key', join(certs, `${name}.key`),
    '--cluster-tls-ca', join(certs, 'ca.crt')]
  const backendEnv = () => ({
    ...process.env,
    EDDY_CLUSTER_TLS_CERT: join(certs, 'backend.crt'),
    EDDY_CLUSTER_TLS_KEY: join(certs, 'backend.key'),
    EDDY_CLUSTER_TLS_CA: join(certs, 'ca.crt')
  })
  // eddy ctl with the backend certificate: { code, stdout, stderr }
  const ctl = (...args) => {
    try {
      return { code: 0, stdout: execFileSync(BIN, ['ctl', '--cluster', req, '--timeout', '3000', ...args], { env: backendEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) }
    } catch (err) {
      return { code: err.status, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }
    }
  }
  // link_probe with these arguments: its output (run asynchronously: the servers' logs and
  // the test's clients go on meanwhile)
  const probe = async (...args) => (await promisify(execFile)(PROBE, args, { encoding: 'utf8', timeout: 30000 })).stdout
  const cert = name => ['--cert', join(certs, `${name}.crt`), '--key', join(certs, `${name}.key`)]
  // the node's /metrics: { text, sum(name, labels) }
  const nodeMetrics = async () => summed([await (await fetch(`${metrics.replace(/\/$/, '')}/metrics`)).text()])

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eddy-links-'))
    certs = join(dir, 'certs')
    execFileSync('bash', [CERTS, certs, 'dev', '1', '1'])
    execFileSync('bash', [CERTS, '--ca-name', 'rogue', certs, 'ca'])
    execFileSync('bash', [CERTS, '--ca-name', 'rogue', certs, 'backend', 'mallory'])
    execFileSync('bash', [CERTS, '--days', '-1', certs, 'node', 'expired'])
    node = new Proc('node', ['node', '--request', 'tls+tcp://127.0.0.1:0', '--delivery', 'tls+tcp://127.0.0.1:0',
      '--metrics', '127.0.0.1:0', '--data', join(dir, 'data'), ...tls('node1')])
    ;[, req, del] = await node.waitFor(/node-listening request=(\S+) delivery=(\S+)/)
    metrics = (await node.waitFor(/node-metrics-listening url=(\S+)/))[1]
    broker = new Proc('broker', ['broker', '--host', '127.0.0.1', '--port', '0', '--node', `${req},${del}`, ...tls('broker1')])
    ws = `ws://127.0.0.1:${(await broker.waitFor(/broker-listening port=(\d+)/))[1]}/deepstream`
  })
  after(async () => {
    await closeAll()
    for (const p of [broker, node]) {
      if (!p) continue
      const { code } = await p.stop()
      assertNoSanitizerReport(p.stderr, p.name)
      assert.equal(code, 0, `${p.name}:\n${p.stderr}`)
    }
    rmSync(dir, { recursive: true, force: true })
  })

  test('clients and a backend with its certificate work over the TLS links', async () => {
    const c = await connect(ws)
    await c.record.setDataWithAck('links/shared', { from: 'client' })
    assert.equal(ctl('get', 'links/shared').stdout.trim(), '{"from":"client"}')
    assert.equal(ctl('set', 'links/shared', '{"from":"ctl"}').code, 0)
    assert.deepEqual(await c.record.snapshot('links/shared'), { from: 'ctl' })
    assert.match(broker.stderr, /links-tls certificate_cn=broker1 role=broker/)
  })

  test('a certificate of another CA, none, or no TLS at all: refused before anything is applied', async () => {
    const watcher = await connect(ws)
    const seen = []
    watcher.record.getRecord('links/target').subscribe(d => seen.push(d))
    await sleep(300)
    const write = ['write', 'links/target', '{"owner":"mallory"}']
    const plain = req.replace('tls+tcp://', 'tcp://')
    for (const args of [[...cert('mallory'), '--ca', join(certs, 'ca.crt'), req], // another CA
      ['--ca', join(certs, 'ca.crt'), req], // TLS without a certificate
      [plain]]) { // no TLS
      assert.equal(await probe('--wait', '1000', ...args, ...write), 'hello no-answer\nwrite no-answer\npresence no-answer\n',
        `link_probe ${args.join(' ')}`)
    }
    // (the watcher's subscription created it, empty, at version 0)
    assert.equal(ctl('get', 'links/target', '--with-version').stdout.trim(), '{"version":0,"data":{}}',
      'nothing the strangers wrote was applied')
    assert.ok(!seen.some(d => d && d.owner === 'mallory'), 'the subscriber saw no forged update')
    for (const line of [/link-tls-refused reason="unable to get local issuer certificate \(certificate CN=mallory/,
      /link-tls-refused reason="peer did not return a certificate"/,
      /link-tls-refused reason="wrong version number" peer_cn=- hint="the peer does not speak TLS/]) {
      await until(() => line.test(node.stderr), `the node logs ${line}`)
    }
    const { text, sum } = await nodeMetrics()
    assert.ok(sum('eddy_node_links_refused_total', 'reason="tls"') >= 3, text)
  })

  test('a backend certificate cannot say HELLO as a node or a broker, nor announce a login', async () => {
    const ca = ['--ca', join(certs, 'ca.crt')]
    for (const as of ['node', 'broker']) {
      assert.equal(await probe(...cert('backend'), ...ca, '--as', as, req, 'write', 'links/forged', '{"owner":"mallory"}'),
        'hello error=7\nwrite error=5\npresence error=5\n', `HELLO as ${as}`) // FORBIDDEN, then UNKNOWN_PEER
    }
    assert.equal(ctl('get', 'links/forged').code, 3, 'nothing it sent was applied')
    await until(() => /peer-forbidden peer=[0-9a-f]+ kind=HELLO as=node certificate=backend cn=backend why="its certificate is another role's"/.test(node.stderr),
      'the node logs the refusal')
    // as what it is, it is a backend: it writes, but a login is a broker's to announce
    assert.equal(await probe(...cert('backend'), ...ca, '--as', 'backend', req, 'write', 'links/mine', '{"owner":"backend"}'),
      'hello ok\nwrite ok\npresence error=7\n')
    await until(() => ctl('get', 'links/mine').stdout.trim() === '{"owner":"backend"}', 'the backend\'s own write')
    const c = await connect(ws, { username: 'watcher' })
    const online = await c.presence.getAll()
    assert.ok(!online.includes('links/mine') && !online.includes('links/forged'), `online: ${online}`)
    // a broker certificate in eddy ctl (a backend) is refused at once, by the tool itself
    const r = runEddy(['ctl', '--cluster', req, ...tls('broker1').map(a => a.replace('--cluster-tls', '--cluster-tls')), 'get', 'x'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /is a broker's \(OU=eddy-broker\); this process is a backend and needs OU=eddy-backend/)
  })

  test('a stranger on the delivery port reads nothing: none without a certificate, only its own with one', async () => {
    const a = await connect(ws)
    const b = await connect(ws)
    b.record.getRecord('links/feed').subscribe(() => {})
    await sleep(300)
    let n = 0
    const timer = setInterval(() => a.record.setData('links/feed', { n: n++ }), 20)
    try {
      const ca = ['--ca', join(certs, 'ca.crt')]
      assert.equal(await probe('--wait', '1500', ...ca, del, 'listen'), 'received 0\n')
      assert.equal(await probe('--wait', '1500', del.replace('tls+tcp://', 'tcp://'), 'listen'), 'received 0\n')
      // a certificate alone reads no one's deliveries: a pull names a peer, and the node
      // answers only what it gathered for that peer (there is no topic to subscribe to)
      assert.equal(await probe('--wait', '1500', ...cert('broker1'), ...ca, del, 'listen'), 'received 0\n')
      // the control: a peer that said HELLO with its certificate reads its own (its HELLO back)
      const got = Number((await probe('--wait', '1500', ...cert('broker1'), ...ca, '--hello', req, del, 'listen'))
        .match(/received (\d+)/)[1])
      assert.ok(got >= 1, `received ${got} after its HELLO`)
    } finally {
      clearInterval(timer)
    }
  })

  test('peers that hang up after their handshake, or send junk, do not close the node\'s port', async () => {
    // nng 1.5.2 stops accepting for good when an accept fails with NNG_ECLOSED: linktls must
    // never report a peer's close that way (found with openssl s_client, as here)
    for (let i = 0; i < 3; i++) {
      execFileSync('bash', ['-c', 'openssl s_client -connect "$1" -cert "$2" -key "$3" -CAfile "$4" </dev/null >/dev/null 2>&1',
        '-', req.replace('tls+tcp://', ''), join(certs, 'backend.crt'), join(certs, 'backend.key'), join(certs, 'ca.crt')])
    }
    const junk = Array.from({ length: 20 }, () => probe('--wait', '100', req.replace('tls+tcp://', 'tcp://'), 'listen').catch(() => ''))
    await Promise.all(junk)
    const started = Date.now()
    const r = ctl('set', 'links/after-junk', '{"ok":true}')
    assert.equal(r.code, 0, JSON.stringify(r))
    assert.ok(Date.now() - started < 2500, `eddy ctl took ${Date.now() - started} ms`)
  })

  test('a peer that sends requests and reads none of the answers holds no other peer\'s requests', async () => {
    // the node writes one reply per connection at a time: without a bound, its executor would
    // wait for good on this connection's next reply, and every other peer with it
    const ca = ['--ca', join(certs, 'ca.crt')]
    const flood = probe('--wait', '3000', ...cert('backend'), ...ca, req, 'flood', '1000000')
    const c = await connect(ws)
    // the flood goes on until its connection's buffers are full and the node's next answer to
    // it cannot leave: the node then says so (replies_unsent), or, were it to wait for good,
    // it would write no more answers to anyone
    const replyOut = m => m.sum('eddy_node_link_bytes_total', 'direction="reply_out"')
    const before = replyOut(await nodeMetrics())
    const started = Date.now()
    let last = -1
    let flatSince = Date.now()
    await until(async () => {
      const m = await nodeMetrics()
      const bytes = replyOut(m)
      if (bytes !== last) { last = bytes; flatSince = Date.now() }
      return m.sum('eddy_node_replies_unsent_total') > 0 ||
        (bytes - before > (2 << 20) && Date.now() - flatSince > 1000)
    }, 'the flood fills its connection', 30000)
    console.log(`# the flood's connection full after ${Date.now() - started} ms, ${last - before} bytes of answers`)
    for (let i = 0; i < 3; i++) {
      const started = Date.now()
      const r = ctl('set', 'links/beside-flood', JSON.stringify({ i }))
      assert.equal(r.code, 0, JSON.stringify(r))
      assert.ok(Date.now() - started < 2500, `eddy ctl took ${Date.now() - started} ms`)
      assert.deepEqual(await c.record.snapshot('links/beside-flood'), { i })
    }
    assert.match(node.stderr, /peer-not-reading pipe=\d+ reply_bytes=\d+ waited_ms=200/)
    assert.match(await flood, /^sent \d+\n$/)
    const { text, sum } = await nodeMetrics()
    assert.ok(sum('eddy_node_replies_unsent_total') >= 1, text)
  })

  test('SIGHUP reads the link certificates again: links up stay, new handshakes get the new certificate; a bad pair is refused', async () => {
    // the node's certificate as a TLS client sees it during a new handshake: its serial
    const served = () => execFileSync('bash', ['-c', 'openssl s_client -connect "$1" -cert "$2" -key "$3" -CAfile "$4" </dev/null 2>/dev/null | openssl x509 -noout -serial',
      '-', req.replace('tls+tcp://', ''), join(certs, 'backend.crt'), join(certs, 'backend.key'), join(certs, 'ca.crt')], { encoding: 'utf8' }).trim()
    const serialOf = name => execFileSync('openssl', ['x509', '-noout', '-serial', '-in', join(certs, name)], { encoding: 'utf8' }).trim()
    const sub = await connect(ws)
    const seen = []
    sub.record.getRecord('links/rotate').subscribe(d => seen.push(d.n))
    await sleep(300)
    assert.equal(served(), serialOf('node1.crt'))
    const before = serialOf('node1.crt')
    // renewed certificates (same CA, a new key; the broker's with a new CN) in place of the files in use
    execFileSync('bash', [CERTS, certs, 'node', 'node1-next'])
    execFileSync('bash', [CERTS, certs, 'broker', 'broker1-next'])
    for (const [from, to] of [['node1-next', 'node1'], ['broker1-next', 'broker1']]) {
      execFileSync('cp', [join(certs, `${from}.crt`), join(certs, `${to}.crt`)])
      execFileSync('cp', [join(certs, `${from}.key`), join(certs, `${to}.key`)])
    }
    const upBefore = broker.stderr.match(/node-up/g).length
    node.child.kill('SIGHUP')
    broker.child.kill('SIGHUP')
    await until(() => /link-certificates-reloaded certificate=\S+node1\.crt certificate_cn=node1-next role=node/.test(node.stderr), 'the node reloads')
    await until(() => /link-certificates-reloaded certificate=\S+broker1\.crt certificate_cn=broker1-next role=broker/.test(broker.stderr), 'the broker reloads')
    const after = served()
    assert.notEqual(after, before)
    assert.equal(after, serialOf('node1-next.crt'), 'a new handshake gets the new certificate')
    // the links that were up carried on: no reconnection, and the subscriber hears a write made through them
    assert.equal(ctl('set', 'links/rotate', '{"n":1}').code, 0)
    await until(() => seen.includes(1), 'the subscriber hears the write')
    assert.equal(broker.stderr.match(/node-up/g).length, upBefore, 'the broker did not reconnect')
    // a certificate of another role, or of another CA, is refused: the one in use stays
    execFileSync('cp', [join(certs, 'backend.crt'), join(certs, 'node1.crt')])
    execFileSync('cp', [join(certs, 'backend.key'), join(certs, 'node1.key')])
    node.child.kill('SIGHUP')
    await until(() => /link-certificates-reload-failed certificate \S+node1\.crt is a backend's \(OU=eddy-backend\); this process is a node/.test(node.stderr), 'the node refuses a backend certificate')
    execFileSync('cp', [join(certs, 'mallory.crt'), join(certs, 'node1.crt')])
    execFileSync('cp', [join(certs, 'mallory.key'), join(certs, 'node1.key')])
    node.child.kill('SIGHUP')
    await until(() => /link-certificates-reload-failed certificate \S+node1\.crt is not accepted by CA/.test(node.stderr), 'the node refuses another CA\'s')
    assert.equal(served(), serialOf('node1-next.crt'), 'the renewed certificate stays in use')
    assert.equal(ctl('set', 'links/rotate', '{"n":2}').code, 0)
    await until(() => seen.includes(2), 'the cluster still works')
    for (const ext of ['crt', 'key']) execFileSync('cp', [join(certs, `node1-next.${ext}`), join(certs, `node1.${ext}`)])
  })

  test('start-up refuses credentials that do not load or fit, and addresses that do not match them', () => {
    const data = ['--data', join(dir, 'x'), '--request', 'tls+tcp://127.0.0.1:0', '--delivery', 'tls+tcp://127.0.0.1:0']
    const cases = [
      [['node', ...data, ...tls('node1').map(a => a.replace('node1.key', 'nosuch.key'))], /cluster\.tls: key \S+nosuch\.key: cannot read it: No such file or directory/],
      [['node', ...data, ...tls('node1').map(a => a.replace('node1.key', 'broker1.key'))], /cluster\.tls: key \S+broker1\.key does not match certificate \S+node1\.crt/],
      [['node', ...data, ...tls('expired')], /cluster\.tls: certificate \S+expired\.crt is not accepted by CA \S+: certificate has expired/],
      [['node', ...data, ...tls('broker1')], /is a broker's \(OU=eddy-broker\); this process is a node and needs OU=eddy-node/],
      [['node', ...data, ...tls('mallory')], /mallory\.crt is not accepted by CA/],
      [['node', ...data, '--cluster-tls-cert', join(certs, 'node1.crt')], /cluster\.tls\.cert, key and ca go together \(missing: key ca\)/],
      [['node', ...data], /node\.request \(--request\): tls\+tcp:\/\/127\.0\.0\.1:0 is a tls\+tcp:\/\/ address but no certificate is set/],
      [['node', '--data', join(dir, 'x'), '--request', 'tcp://127.0.0.1:0', ...tls('node1')], /node\.request \(--request\): tcp:\/\/127\.0\.0\.1:0: with cluster\.tls set every link must be tls\+tcp:\/\//],
      [['broker', '--node', 'tcp://127.0.0.1:1,tcp://127.0.0.1:2', ...tls('broker1')], /cluster\.nodes: tcp:\/\/127\.0\.0\.1:1: with cluster\.tls set every link must be tls\+tcp:\/\//]
    ]
    for (const [args, want] of cases) {
      const r = runEddy(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, want)
    }
  })

  test('a node listening beyond loopback without TLS warns, once; with TLS it does not; standalone stays on loopback', async () => {
    let i = 0
    for (const [args, warns] of [[['--request', 'tcp://0.0.0.0:0', '--delivery', 'tcp://0.0.0.0:0'], true],
      [['--request', 'tls+tcp://0.0.0.0:0', '--delivery', 'tls+tcp://0.0.0.0:0', ...tls('node1')], false],
      [['--request', 'tcp://127.0.0.1:0', '--delivery', 'tcp://127.0.0.1:0'], false]]) {
      const p = new Proc('lone-node', ['node', ...args, '--metrics', 'none', '--data', join(dir, `lone-${i++}`)])
      await p.waitFor(/node-listening/)
      assert.equal((p.stderr.match(/links-unauthenticated/g) || []).length, warns ? 1 : 0, p.stderr)
      if (warns) assert.match(p.stderr, /anyone who reaches these ports can write any record and read every delivery/)
      const { code } = await p.stop()
      assert.equal(code, 0, p.stderr)
    }
    // standalone: its backend listener stays on loopback by default, without a warning
    const sa = new Proc('standalone', ['standalone', '--host', '127.0.0.1', '--port', '0', '--data', join(dir, 'sa')])
    const m = await sa.waitFor(/backends-listening request=(\S+) delivery=(\S+)/)
    assert.match(m[1], /^tcp:\/\/127\.0\.0\.1:\d+$/)
    assert.match(m[2], /^tcp:\/\/127\.0\.0\.1:\d+$/)
    assert.doesNotMatch(sa.stderr, /links-unauthenticated/)
    assert.equal((await sa.stop()).code, 0, sa.stderr)
  })
})
