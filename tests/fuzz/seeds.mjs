// seeds.mjs - writes the seed corpora of tests/fuzz/corpus/ (committed; run
// again only to change them). fuzz_frame's seeds are the client side of the
// protocol captures in ../shared/protocol/captures/ (when that folder is
// there), in fuzz_frame's input format, plus the reproducers of past bugs;
// fuzz_json's, fuzz_config's and fuzz_rules's are written out here; fuzz_ops's are batches
// fuzz_frame passes between broker and node while it runs its own seeds
// (needs build-fuzz/fuzz_frame: make fuzz-build first).
//
// usage: node tests/fuzz/seeds.mjs
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const require = createRequire(join(root, 'package.json'))
const pb = require('@deepstream/protobuf/dist/generated/protobuf.js')
const corpus = join(root, 'tests', 'fuzz', 'corpus')

function put (target, name, bytes) {
  mkdirSync(join(corpus, target), { recursive: true })
  writeFileSync(join(corpus, target, name), bytes)
}

// ---------------- fuzz_frame: flags, then steps [ctl, len16, bytes] ----------------
const F = { LOGIN: 1, SECOND: 2, TIMERS: 4 }
const S = { SECOND: 1, RAW: 2, FRAGMENTS: 4, TEXT: 8, TURN: 16, CLOSE: 32 }
const INNER = {
  2: pb.ConnectionMessage, 3: pb.AuthMessage, 4: pb.EventMessage, 5: pb.RecordMessage,
  6: pb.RpcMessage, 7: pb.PresenceMessage
}

// The Message envelope without the varint length (the harness adds it).
function envelope (topic, fields) {
  const inner = INNER[topic] ? INNER[topic].encode(new INNER[topic](fields)).finish() : new Uint8Array()
  return Buffer.from(pb.Message.encode(new pb.Message({ topic, message: inner })).finish())
}

function step (ctl, bytes) {
  const b = Buffer.from(bytes)
  return Buffer.concat([Buffer.from([ctl, b.length >> 8, b.length & 0xff]), b])
}

function input (flags, steps) {
  return Buffer.concat([Buffer.from([flags]), ...steps])
}

// One capture: every line a client sent, its client mapped to one of the two
// connections (a third client closes the older one of its slot); a loop turn
// ends where the next line has another timestamp.
function fromCapture (text) {
  const lines = []
  for (const line of text.split('\n')) {
    const m = /^\[\s*(\d+)\] (\w+) -> S (.*)$/.exec(line)
    if (m) lines.push({ ts: Number(m[1]), who: m[2], rest: m[3] })
  }
  const slotOf = new Map()
  const owner = [null, null]
  const last = [-1, -1]
  const steps = []
  let labels = 0
  for (let i = 0; i < lines.length; i++) {
    const { ts, who, rest } = lines[i]
    if (!slotOf.has(who)) {
      const slot = labels++ % 2
      if (owner[slot] !== null && last[slot] >= 0) steps[last[slot]].ctl |= S.CLOSE
      slotOf.delete(owner[slot])
      owner[slot] = who
      slotOf.set(who, slot)
    }
    const slot = slotOf.get(who)
    let ctl = slot ? S.SECOND : 0
    let bytes
    const hex = / hex=([0-9a-f]+)/.exec(rest)
    const textFrame = /^TEXT FRAME "(.*)"/.exec(rest)
    const msg = /^(\w+)\((\d+)\)(?: (\w+)\((\d+)\))?(.*)$/.exec(rest)
    if (hex) {
      ctl |= S.RAW
      bytes = Buffer.from(hex[1], 'hex')
    } else if (textFrame) {
      ctl |= S.TEXT
      bytes = Buffer.from(textFrame[1])
    } else if (msg) {
      const topic = Number(msg[2])
      const fields = {}
      if (msg[4] !== undefined) fields.action = Number(msg[4])
      for (const f of msg[5].matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|true|false|-?\d+)/g)) {
        fields[f[1]] = JSON.parse(f[2])
      }
      bytes = envelope(topic, fields)
    } else {
      continue
    }
    const next = lines[i + 1]
    if (!next || next.ts !== ts) ctl |= S.TURN
    last[slot] = steps.length
    steps.push({ ctl, bytes })
  }
  return input(labels > 1 ? F.SECOND : 0, steps.map(s => step(s.ctl, s.bytes)))
}

const captures = join(root, '..', 'shared', 'protocol', 'captures')
const wanted = ['01-connect-auth-open', '03-heartbeat', '04-unauth-timeout-and-bad-messages', '05-events',
  '06-event-listen', '07-records-basic', '08-records-conflict', '09-lists-anon-force', '11-prelogin-and-reconnect',
  '12-rpc', '14-presence', '16-listen-timeout']
if (existsSync(captures)) {
  for (const name of wanted) {
    const file = join(captures, `${name}.log`)
    if (existsSync(file)) put('fuzz_frame', `capture-${name}`, fromCapture(readFileSync(file, 'utf8')))
  }
} else {
  console.error(`seeds: no ${captures}: fuzz_frame's capture seeds left as they are`)
}

const R = pb.RECORD_ACTION
const E = pb.EVENT_ACTION
// Reproducer: a RECORD UPDATE asking for a write acknowledgement with a
// 4097-byte correlationId, then an EVENT SUBSCRIBE in the same loop turn (one batch).
put('fuzz_frame', 'repro-long-correlation-id', input(F.LOGIN, [
  step(0, envelope(5, { action: R.RECORD_UPDATE, name: 'rec/ack', data: '{"a":1}', version: -1, isWriteAck: true,
    correlationId: 'c'.repeat(4097) })),
  step(S.TURN, envelope(4, { action: E.EVENT_SUBSCRIBE, names: ['ev/after'], correlationId: '1' }))
]))
// The limits (fuzz_frame runs a message rate of 1 a second over a burst of
// 256, 64 names per topic, a close after 64 refusals): subscribes of 70 names
// on every topic, then more messages than the burst in one turn, RPC requests
// with correlation ids among them, a PING over the rate, and the close.
const names = (p, n) => Array.from({ length: n }, (_, i) => `${p}${i}`)
put('fuzz_frame', 'limits-over-rate', input(F.LOGIN, [
  step(0, envelope(5, { action: R.RECORD_SUBSCRIBECREATEANDREAD, names: names('r', 70), correlationId: '1' })),
  step(0, envelope(4, { action: E.EVENT_SUBSCRIBE, names: names('e', 70), correlationId: '2' })),
  step(0, envelope(6, { action: pb.RPC_ACTION.RPC_PROVIDE, names: names('p', 70), correlationId: '3' })),
  step(S.TURN, envelope(7, { action: pb.PRESENCE_ACTION.PRESENCE_SUBSCRIBE, names: names('u', 70), correlationId: '4' })),
  ...Array.from({ length: 260 }, () => step(0, envelope(4, { action: E.EVENT_EMIT, name: 'e' }))),
  ...Array.from({ length: 20 }, (_, i) => step(0, envelope(6, { action: pb.RPC_ACTION.RPC_REQUEST, name: `p${i}`, correlationId: `c${i}`, data: '1' }))),
  step(0, envelope(2, { action: pb.CONNECTION_ACTION.CONNECTION_PING })),
  ...Array.from({ length: 50 }, () => step(0, envelope(5, { action: R.RECORD_UPDATE, name: 'r1', data: '{}', version: -1, isWriteAck: true, correlationId: 'w' }))),
  step(S.TURN, envelope(4, { action: E.EVENT_EMIT, name: 'last' }))
]))
// Reproducer: a login (auth none) as a user whose name is longer than an
// operation's name may be (OP_NAME_MAX): the presence JOIN cannot be decoded.
put('fuzz_frame', 'repro-long-username', input(0, [
  step(S.TURN, envelope(2, { action: pb.CONNECTION_ACTION.CONNECTION_CHALLENGE, url: 'ws://x/deepstream' })),
  step(S.TURN, envelope(3, { action: pb.AUTH_ACTION.AUTH_REQUEST, data: JSON.stringify({ username: 'u'.repeat(4097) }) }))
]))
// Reproducer: an RPC REQUEST with an empty correlationId for a name nobody
// provides: its NO_RPC_PROVIDER comes back without a ref (xstrndup(NULL, 0)).
put('fuzz_frame', 'repro-rpc-empty-correlation-id', input(F.LOGIN, [
  step(S.TURN, envelope(6, { action: pb.RPC_ACTION.RPC_REQUEST, name: 'nobody', correlationId: '', data: '1' }))
]))
// Reproducer: this frame (CREATEANDUPDATE "ub/1", isWriteAck, version as a
// 10-byte varint of -1) right after the login.
put('fuzz_frame', 'repro-hex-frame', input(F.LOGIN, [
  step(S.RAW | S.TURN, Buffer.from('1d10051a19081012027b7d320475622f31580168ffffffffffffffffff01', 'hex'))
]))
// Reproducer (#13 finding 2): a backtracking listen pattern over subscribed
// names that almost match it (PCRE2's default limits let it run for seconds).
put('fuzz_frame', 'repro-listen-backtracking', input(F.LOGIN, [
  step(0, envelope(4, { action: E.EVENT_SUBSCRIBE, names: ['a'.repeat(40) + '!', 'a'.repeat(30) + '!'], correlationId: '1' })),
  step(S.TURN, envelope(4, { action: E.EVENT_LISTEN, name: '^(a+)+$', correlationId: '2' }))
]))
// Reproducer (#13 finding 3): one small CREATEANDPATCH whose path builds
// arrays far larger than record.maxSize.
put('fuzz_frame', 'repro-path-amplification', input(F.LOGIN, [
  step(S.TURN, envelope(5, { action: R.RECORD_CREATEANDPATCH, name: 'rec/bomb', path: 'a' + '[100000]'.repeat(255),
    data: '1', version: -1 }))
]))
// Reproducer (#13 finding 4): a number JSON.stringify writes (2**64), then a
// path patch of the same record, which the old path engine could not parse.
put('fuzz_frame', 'repro-big-integer-then-patch', input(F.LOGIN, [
  step(S.TURN, envelope(5, { action: R.RECORD_CREATEANDUPDATE, name: 'rec/big', data: '{"id":18446744073709551616}',
    version: -1, isWriteAck: true, correlationId: '1' })),
  step(S.TURN, envelope(5, { action: R.RECORD_PATCH, name: 'rec/big', path: 'name', data: '"x"', version: 2,
    isWriteAck: true, correlationId: '2' }))
]))
// Permissions (fuzz_frame's rules): denied names, a rule on the record as the
// write leaves it, rules that read other records through the gate (the
// messages behind them wait), and a bulk subscribe with a denied name.
put('fuzz_frame', 'permissions', input(F.LOGIN, [
  step(S.TURN, envelope(5, { action: R.RECORD_CREATEANDUPDATE, name: 'gate/config', data: '{"open":true}', version: -1,
    isWriteAck: true, correlationId: '1' })),
  step(0, envelope(4, { action: E.EVENT_EMIT, name: 'gated/x', data: '1' })),
  step(0, envelope(4, { action: E.EVENT_EMIT, name: 'secret/x', data: '2' })),
  step(S.TURN, envelope(4, { action: E.EVENT_SUBSCRIBE, names: ['open/1', 'secret/1'], correlationId: '2' })),
  step(S.TURN, envelope(5, { action: R.RECORD_CREATEANDUPDATE, name: 'x/1', data: '{"n":2}', version: -1 })),
  step(S.TURN, envelope(5, { action: R.RECORD_UPDATE, name: 'x/1', data: '{"n":1}', version: -1, isWriteAck: true,
    correlationId: '3' })),
  step(S.TURN, envelope(5, { action: R.RECORD_CREATEANDUPDATE, name: 'stock/1', data: '{"left":3}', version: -1 })),
  step(0, envelope(5, { action: R.RECORD_CREATEANDPATCH, name: 'ref/1', path: 'q', data: '2', version: -1 })),
  step(S.TURN, envelope(5, { action: R.RECORD_READ, name: 'ref/1' })),
  step(S.TURN, envelope(5, { action: R.RECORD_UPDATE, name: 'ro/1', data: '{}', version: -1 }))
]))
// Fragments, a text frame, an unknown topic, the unauthenticated-client timer.
put('fuzz_frame', 'fragments-and-timers', input(F.SECOND | F.TIMERS, [
  step(S.FRAGMENTS | S.TURN, envelope(2, { action: pb.CONNECTION_ACTION.CONNECTION_CHALLENGE, url: 'ws://x/deepstream' })),
  step(S.FRAGMENTS | S.TURN, envelope(3, { action: pb.AUTH_ACTION.AUTH_REQUEST, data: '{"username":"carol"}' })),
  step(S.TURN, envelope(42, {})),
  step(S.TEXT | S.SECOND, Buffer.from('hello'))
]))

// ---------------- fuzz_json: mode byte, then text (or doc \0 path \0 value) ----------------
const json = (mode, ...parts) => Buffer.concat([Buffer.from([mode]), Buffer.from(parts.join('\0'))])
put('fuzz_json', 'object', json(0, '{"name":"x","age":1,"tags":["a","b"],"address":{"city":"Berlin"}}'))
put('fuzz_json', 'numbers', json(0, '[0,-0,1e-7,1.7976931348623157e+308,18446744073709552000,5e-324,1E5,-1.5e-400]'))
put('fuzz_json', 'escapes', json(0, '{"\\ud83d\\ude00":"\\u0000\\ud800\\n\\"\\\\\\/","\u00e9":"\ud83d\ude00"}'))
put('fuzz_json', 'deep', json(0, '['.repeat(128) + ']'.repeat(128)))
// The span index as the HTTP API reads a request (index depth 4: mode 4 << 2), duplicate keys, spacing
put('fuzz_json', 'span-request', json(4 << 2, '{"token":"t","body":[{"topic":"event","action":"emit","eventName":"a/\\u00e9",' +
  '"data":{ "i" : 1, "s" : [ 2.50, "x y" ] }},{"topic":"record","action":"notify","recordNames":["a","b"],"recordNames":["c"]}]}'))
put('fuzz_json', 'patch-set', json(1, '{"a":{"b":[1,2]},"c":3}', 'a.b[3]', '{"x":[true,null]}'))
put('fuzz_json', 'patch-create', json(1, '{"a":1}', ' x . y [2][0] .z', '"v"'))
put('fuzz_json', 'patch-erase', json(5, '{"a":{"b":1,"b":2},"l":[1,2,3]}', 'a.b', ''))
// Reproducer: an erase through 129 missing keys makes 128 nested objects, the
// innermost empty: deep enough, not too deep (was refused as too deep).
put('fuzz_json', 'repro-deep-erase', json(5, '{}', Array(129).fill('a').join('.'), ''))
// ... while one ending in an index leaves nulls one level deeper: too deep.
put('fuzz_json', 'deep-erase-index', json(5, '{}', Array(128).fill('a').join('.') + '[1]', ''))
put('fuzz_json', 'patch-limit', json(9, '[1,2,3]', '[1]', '{"long":"' + 'x'.repeat(40) + '"}'))

// ---------------- fuzz_config: YAML files ----------------
put('fuzz_config', 'full.yml', `# every section
host: "::"
port: 6020
urlPath: /deepstream
maxMessageSize: 1048576
heartbeatInterval: 30000
auth:
  type: none
  maxAuthAttempts: 3
  unauthenticatedClientTimeout: 60000
data: ./data
storage: { sync: batch, cacheSize: 268435456 }
record: { maxSize: 1048576 }
rpc: { ackTimeout: 1000, responseTimeout: 10000, balance: leastinflight, provideRequestorName: true }
listen: { responseTimeout: 500, shuffleProviders: false, rematchInterval: 30000, matchCooldown: 10000 }
logLevel: warn
`)
put('fuzz_config', 'cluster.yml', `cluster:
  epoch: 3
  brokerTimeout: 10000
  nodes:
    - { id: node1, request: "tcp://127.0.0.1:7001", delivery: "tcp://127.0.0.1:7002", shards: "0-2047" }
    - { id: node2, request: "tcp://127.0.0.1:7003", delivery: "tcp://127.0.0.1:7004", shards: "2048-4095" }
node: { id: node2 }
`)
put('fuzz_config', 'even.yml', `cluster:
  nodes:
    - { id: a, request: "tcp://h1:6021", delivery: "tcp://h1:6022" }
    - { id: b, request: "tcp://h2:6021", delivery: "tcp://h2:6022" }
    - { id: c, request: "tcp://h3:6021", delivery: "tcp://h3:6022" }
`)
put('fuzz_config', 'anchors.yml', `defaults: &d { ackTimeout: 5 }
rpc: *d
auth: { type: file, users: "users.yml" }
`)
put('fuzz_config', 'bad.yml', 'port: [1, 2\nhost: "unterminated\n')
// deepstream 7's shipped config.yml (connectionEndpoints, httpServer, the keys eddy ignores)
put('fuzz_config', 'deepstream.yml', readFileSync(join(root, 'tests', 'e2e', 'fixtures', 'deepstream-config.yml')))

// ---------------- fuzz_rules: mode byte, then parts separated by \0 ----------------
// mode & 3: 0 a rule (rule, data, oldData, name), 1 a permissions file (yaml,
// name, data), 2 a pattern (pattern, name); see fuzz_rules.c for the other bits.
const rules = (mode, ...parts) => Buffer.concat([Buffer.from([mode]), Buffer.from(parts.join('\0'))])
const doc = '{"count":5,"s":"h\\u00e9llo","arr":[1,"a",null,[2,3]],"address":{"city":"Berlin"},"owner":"u"}'
const old = '{"count":4,"owner":"u","value":1}'
put('fuzz_rules', 'rule-owner', rules(0, 'user.id === $a && user.isAuthenticated', doc, old, 'u/x'))
put('fuzz_rules', 'rule-data', rules(0, 'data.count > oldData.count && data.arr.includes("a") && data.arr[3][1] === 3', doc, old, 'counter/c'))
put('fuzz_rules', 'rule-strings', rules(0, "$a.toLowerCase().startsWith('ber') || data.s.toUpperCase().indexOf('É') > -1 " +
  "|| data.s.trim().endsWith('o', 5) || name.includes('/')", doc, old, 'Berlin/x'))
put('fuzz_rules', 'rule-match', rules(0, "data.s.match(/(h)(.)l+o/i)[2] === 'é' && 'a1b2'.match(/\\d/g).length == '2' " +
  "&& name.match('^[a-z]+/')", doc, old, 'abc/d'))
put('fuzz_rules', 'rule-xref', rules(0, "_('item/' + $b).n > 0 && _(_('a/' + $a).ref) !== null", doc, old, 'x/y'))
put('fuzz_rules', 'rule-xref-deep', rules(24, "_(_(_(_(_('a')+'b')+'c')+'d')+'e')", doc, old, 'n'))
put('fuzz_rules', 'rule-mixed', rules(0, "oldData.owner === user.id && _('room/' + $a).a.b.includes(1) ? typeof now === 'number' : " +
  "(data?.x?.y ?? [1, 'two', null]) + '' == '1,two,'", doc, old, 'r/1'))
put('fuzz_rules', 'rule-numbers', rules(0, "0.1 + 0.2 !== 0.3 && 1e21 + '' === '1e+21' && -7 % 2 === -1 && +'0x1F' === 31 " +
  "&& 017 === 15 && 1/0 > -1/0 && NaN !== NaN && [] == 0 && null >= 0 && !(undefined >= 0)", '', '', ''))
put('fuzz_rules', 'rule-user-data', rules(32, "user.data.role === 'admin' && user.data.tags.indexOf('a', -1) === 0", '', '', ''))
put('fuzz_rules', 'rule-escapes', rules(0, "'\\u{1F600}'.length === 2 && '\\uD83D\\uDE00'[1] === '\\uDE00' && '\\x41\\101' === 'AA' " +
  "/* comment */ && '\\u00c9COLE'.toLowerCase() === 'école' // end", '', '', ''))
put('fuzz_rules', 'rule-refused', rules(4, 'data.x = new Function("return 1"); process.exit()', '', '', ''))
put('fuzz_rules', 'rule-deep', rules(0, '('.repeat(100) + '1' + ')'.repeat(100), '', '', ''))
put('fuzz_rules', 'rule-long-or', rules(0, Array(300).fill("user.id === 'x'").join(' || '), '', '', ''))
put('fuzz_rules', 'rule-bad-data', rules(0, 'data.a === 1', '{"a":', '[', 'x'))
put('fuzz_rules', 'perms-default', rules(1, `presence:
  "*":
    allow: true
record:
  "*":
    create: true
    write: true
    read: true
    delete: true
    listen: true
    notify: true
event:
  "*":
    publish: true
    subscribe: true
    listen: true
rpc:
  "*":
    provide: true
    request: true
`, 'any/name', ''))
put('fuzz_rules', 'perms-app', rules(5, `presence: {"*": {allow: "user.isAuthenticated"}}
record:
  "*": {create: true, write: true, read: true, delete: false, listen: true}
  user-profile/$userId: {write: "user.id === $userId", delete: "user.id === $userId"}
  user-profile/$userId/private: {read: "user.id === $userId"}
  counter/$name: {write: "data.count > oldData.count"}
  purchase/$itemId: {create: "_('item/' + $itemId).stock > 0"}
  com.example/*: {read: "name.length < 100"}
  item/(a|b)/$id: {read: "$id === 'a'"}
event:
  "*": {publish: true, subscribe: true}
  place/$city: {publish: "$city.toLowerCase() === data.address.city.toLowerCase()"}
rpc:
  "*": {provide: "user.data.role === 'backend'", request: true}
  trade/book: {request: "user.data.role === 'fx-trader' && data.assetClass === 'fx'"}
`, 'purchase/42', doc))
put('fuzz_rules', 'perms-errors', rules(1, `presence: {"*": {allow: true}}
record: {"*": {read: "data.x"}, "a$$b": {write: 1}}
event: {"*": {publish: true}}
rpc: {}
bogus: {}
`, 'x', ''))
put('fuzz_rules', 'path-vars', rules(2, 'user/$a/*/$b.x', 'user/alice/x/y/z.x'))
put('fuzz_rules', 'path-greedy', rules(2, '$a*$b', 'xyz/\u00e9t\u00e9'))
put('fuzz_rules', 'path-dots', rules(2, 'a.b*c..', 'a\u00e9b\nc12'))
put('fuzz_rules', 'path-backtrack', rules(2, '*a*a*a*a*a*b', 'a'.repeat(200)))
put('fuzz_rules', 'path-regex', rules(3, 'v+/(x|y)?/$id', 'vv//9'))
// an overlong UTF-8 form in the pattern: PCRE2 refuses it, so the harness must not compare
put('fuzz_rules', 'path-overlong', Buffer.from([2, ...Buffer.from('$a*$b'), 0xc1, 0xa9, 0, ...Buffer.from('xyz/t')]))

// ---------------- fuzz_ops: batches fuzz_frame passes while running its seeds ----------------
const frameBin = join(root, 'build-fuzz', 'fuzz_frame')
if (existsSync(frameBin)) {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-ops-'))
  const files = readdirSync(join(corpus, 'fuzz_frame')).map(f => join(corpus, 'fuzz_frame', f))
  for (const f of files) { // one at a time: a seed that is a finding (a reproducer) stops only itself
    try {
      execFileSync(frameBin, [`-artifact_prefix=${dir}/`, f],
        { env: { ...process.env, FUZZ_DUMP_OPS: dir, TMPDIR: dir }, stdio: 'ignore' })
    } catch {}
  }
  // the fewest batches that hold every operation kind seen, largest variety first
  const kindsOf = bytes => {
    const kinds = new Set()
    // an op is a map whose first key (0) is the kind: 0x00 then a positive fixint
    for (let i = 1; i + 1 < bytes.length; i++) {
      if ((bytes[i - 1] & 0xf0) === 0x80 && bytes[i] === 0x00 && bytes[i + 1] > 0 && bytes[i + 1] < 0x80) kinds.add(bytes[i + 1])
    }
    return kinds
  }
  const batches = readdirSync(dir).filter(f => /^(request|reply|delivery)-/.test(f))
    .map(f => ({ f, bytes: readFileSync(join(dir, f)) })).filter(b => b.bytes.length <= 4096)
  const seen = new Set()
  let picked = 0
  rmSync(join(corpus, 'fuzz_ops'), { recursive: true, force: true })
  while (picked < 12) {
    let best = null
    let bestNew = 0
    for (const b of batches) {
      const n = [...kindsOf(b.bytes)].filter(k => !seen.has(k)).length
      if (n > bestNew) { best = b; bestNew = n }
    }
    if (!best) break
    for (const k of kindsOf(best.bytes)) seen.add(k)
    const name = `${best.f.replace(/-\d+$/, '')}-${createHash('sha1').update(best.bytes).digest('hex').slice(0, 12)}`
    put('fuzz_ops', name, best.bytes)
    picked++
  }
  rmSync(dir, { recursive: true, force: true })
  console.error(`seeds: fuzz_ops: ${picked} batches holding ${seen.size} operation kinds`)
} else {
  console.error(`seeds: no ${frameBin}: fuzz_ops's seeds left as they are (make fuzz-build first)`)
}
