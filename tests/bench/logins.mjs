// logins.mjs - login throughput (figures, not a test): N clients (1000)
// connect at once and log in, then all close and log in again with the same
// credentials (a reconnect storm); logins/s for each, for eddy's file (with
// deepstream's PBKDF2 hashes, and with Argon2id at two costs), http (a local
// webhook) and jwt (HS256), and for @deepstream/server 7.0.2 where it has the
// strategy (file with PBKDF2, http; it has no jwt). Clients speak the binary
// protocol over raw websockets (tests/e2e/lib/client.mjs), the same for both
// servers; the webhook runs in this process. A login counts when
// AUTH_SUCCESSFUL arrives; anything else (refusal, AUTHENTICATION_TIMEOUT, a
// close) is counted as failed and reported.
//
// usage: node tests/bench/logins.mjs [BUILD_DIR] [--clients N] [--only eddy|deepstream]
//   deepstream 7.0.2 comes from BUILD_DIR/deepstream-scratch (as tests/bench/side-by-side.sh
//   installs it; installed here too when missing).
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync, mkdirSync, cpSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import http from 'node:http'
import crypto from 'node:crypto'
import { Raw, TOPIC, CONN, AUTH } from '../e2e/lib/client.mjs'
import { signJwt } from '../e2e/lib/jwt.mjs'

const args = process.argv.slice(2)
const build = resolve(args.find(a => !a.startsWith('--') && args[args.indexOf(a) - 1] !== '--clients' && args[args.indexOf(a) - 1] !== '--only') || 'build')
const N = Number(args.includes('--clients') ? args[args.indexOf('--clients') + 1] : 1000)
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const tmp = mkdtempSync(join(tmpdir(), 'eddy-logins-'))
const children = new Set()
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL') } catch {} ; rmSync(tmp, { recursive: true, force: true }) })

// ---- one storm ----
function loginOne (url, authData) {
  return new Promise(resolve => {
    const raw = new Raw(url)
    let done = false
    const end = (ok, why) => { if (!done) { done = true; resolve({ ok, why, raw }) } }
    raw.ws.on('open', () => raw.send(TOPIC.CONNECTION, { action: CONN.CHALLENGE, url, protocolVersion: '0.1a' }))
    raw.ws.on('message', () => {
      for (const m of raw.messages.splice(0)) {
        if (m.topic === TOPIC.CONNECTION && m.action === CONN.ACCEPT) raw.send(TOPIC.AUTH, { action: AUTH.REQUEST, data: JSON.stringify(authData) })
        else if (m.topic === TOPIC.AUTH && m.action === AUTH.AUTH_SUCCESSFUL) end(true)
        else if (m.topic === TOPIC.AUTH || (m.topic === TOPIC.CONNECTION && m.action === CONN.AUTHENTICATION_TIMEOUT)) end(false, `${m.topic}/${m.action}`)
      }
    })
    raw.ws.on('close', () => end(false, 'closed'))
    raw.ws.on('error', () => end(false, 'error'))
  })
}

async function storm (url, credentials) {
  const t0 = process.hrtime.bigint()
  const results = await Promise.all(credentials.map(c => loginOne(url, c)))
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const failed = results.filter(r => !r.ok)
  for (const r of results) r.raw.close()
  await sleep(300)
  const why = {}
  for (const f of failed) why[f.why] = (why[f.why] || 0) + 1
  return { ms, rate: Math.round(credentials.length / (ms / 1000)), failed: failed.length, why }
}

// ---- servers ----
function waitFor (child, re, what, timeout = 30000) {
  return new Promise((resolve, reject) => {
    let text = ''
    const t = setTimeout(() => reject(new Error(`${what}: no ${re} in ${timeout} ms:\n${text}`)), timeout)
    const on = d => {
      text += d
      const m = text.match(re)
      if (m) { clearTimeout(t); resolve(m) }
    }
    child.stdout?.on('data', on)
    child.stderr?.on('data', on)
    child.on('exit', code => { clearTimeout(t); reject(new Error(`${what} exited ${code}:\n${text}`)) })
  })
}

async function stop (child) {
  child.removeAllListeners('exit')
  child.kill('SIGTERM')
  await new Promise(resolve => { child.once('exit', resolve); setTimeout(() => { child.kill('SIGKILL'); resolve() }, 10000) })
  children.delete(child)
}

async function eddy (name, yaml) {
  const dir = join(tmp, `eddy-${name}`)
  mkdirSync(dir, { recursive: true })
  for (const [f, text] of Object.entries(yaml.files || {})) writeFileSync(join(dir, f), text)
  writeFileSync(join(dir, 'config.yml'), yaml.config)
  const child = spawn(join(build, 'eddy'), ['standalone', '--host', '127.0.0.1', '--port', '0', '--data', join(dir, 'data'),
    '--request', 'none', '--log-level', 'warn', '--config', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  // broker-listening is an info line: read the port from /proc instead of the log
  const port = await new Promise((resolve, reject) => {
    const started = Date.now()
    const poll = () => {
      try {
        const out = execFileSync('ss', ['-ltnp'], { encoding: 'utf8' })
        const m = out.split('\n').find(l => l.includes(`pid=${child.pid},`) && l.includes('127.0.0.1:'))
        if (m) return resolve(Number(m.match(/127\.0\.0\.1:(\d+)/)[1]))
      } catch {}
      if (child.exitCode !== null) return reject(new Error(`eddy ${name} exited ${child.exitCode}`))
      if (Date.now() - started > 20000) return reject(new Error(`eddy ${name} did not listen`))
      setTimeout(poll, 50)
    }
    poll()
  })
  return { url: `ws://127.0.0.1:${port}/deepstream`, stop: () => stop(child) }
}

function deepstreamDir () {
  const scratch = join(build, 'deepstream-scratch')
  if (!existsSync(join(scratch, 'node_modules/@deepstream/server'))) {
    mkdirSync(join(scratch, 'stub-uws'), { recursive: true })
    writeFileSync(join(scratch, 'stub-uws/package.json'), '{"name":"uWebSockets.js","version":"0.0.0"}')
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'ds-scratch', private: true,
      dependencies: { '@deepstream/server': '7.0.2' }, overrides: { 'uWebSockets.js': 'file:./stub-uws' } }))
    execFileSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: scratch, stdio: 'ignore' })
  }
  return scratch
}

async function deepstream (name, authBlock, files = {}) {
  const scratch = deepstreamDir()
  const conf = join(tmp, `ds-${name}`)
  cpSync(join(scratch, 'node_modules/@deepstream/server/conf'), conf, { recursive: true })
  for (const [f, text] of Object.entries(files)) writeFileSync(join(conf, f), text)
  let config = readFileSync(join(conf, 'config.yml'), 'utf8')
  config = config.replace('  options:\n    colors: true', '  options:\n    colors: false\n    logLevel: WARN')
  config = config.replace(/^auth:\n {2}- type: none\n/m, authBlock)
  writeFileSync(join(conf, 'config.yml'), config)
  const port = 20000 + Math.floor(Math.random() * 10000)
  const child = spawn('node', [join(scratch, 'node_modules/@deepstream/server/dist/bin/deepstream'), 'start', '-c',
    join(conf, 'config.yml'), '--host', '127.0.0.1', '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  for (let i = 0; i < 300; i++) {
    try { execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' }); break } catch {}
    await sleep(100)
  }
  return { url: `ws://127.0.0.1:${port}/deepstream`, stop: () => stop(child) }
}

// ---- credentials ----
const PBKDF2 = { hash: 'md5', iterations: 100, keyLength: 32 } // deepstream's shipped settings
function pbkdf2Users (n) {
  let text = ''
  for (let i = 0; i < n; i++) {
    const salt = crypto.randomBytes(16).toString('base64')
    text += `u${i}:\n  password: "${crypto.pbkdf2Sync(`pw${i}`, salt, PBKDF2.iterations, PBKDF2.keyLength, PBKDF2.hash).toString('base64')}${salt}"\n`
  }
  return text
}
function argonUsers (n, ops, memKib) {
  let text = ''
  for (let i = 0; i < n; i++) {
    const h = execFileSync(join(build, 'eddy'), ['hash', '--auth-argon2-ops-limit', String(ops), '--auth-argon2-mem-limit', String(memKib), `pw${i}`], { encoding: 'utf8' })
    text += `u${i}:\n  password: "${h.trim()}"\n`
  }
  return text
}
const userCreds = users => Array.from({ length: N }, (_, k) => ({ username: `u${k % users}`, password: `pw${k % users}` }))

// the webhook: 200 {id} for every login
const hook = http.createServer((req, res) => {
  let body = ''
  req.on('data', d => { body += d })
  req.on('end', () => {
    const { authData } = JSON.parse(body)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ id: authData.username, clientData: { ok: true } }))
  })
})
await new Promise(resolve => hook.listen(0, '127.0.0.1', resolve))
const hookUrl = `http://127.0.0.1:${hook.address().port}/auth`
const httpOptions = `      endpointUrl: ${hookUrl}\n      permittedStatusCodes: [ 200 ]\n      requestTimeout: 5000\n` +
  '      retryStatusCodes: [ 504 ]\n      retryAttempts: 1\n      retryInterval: 1000\n'
const fileOptions = `      users: fileLoad(users.yml)\n      hash: '${PBKDF2.hash}'\n      iterations: ${PBKDF2.iterations}\n      keyLength: ${PBKDF2.keyLength}\n`
const secret = 'bench-secret-bench-secret-bench!'

const rows = []
async function run (server, label, credentials) {
  const first = await storm(server.url, credentials)
  const again = await storm(server.url, credentials)
  rows.push({ label, first, again })
  const f = r => `${String(r.rate).padStart(6)} logins/s (${(r.ms / 1000).toFixed(2)} s${r.failed ? `, ${r.failed} FAILED ${JSON.stringify(r.why)}` : ''})`
  console.log(`${label.padEnd(52)} first ${f(first)}   reconnect ${f(again)}`)
}

console.log(`# ${N} clients connecting at once, then reconnecting with the same credentials (${new Date().toISOString()})`)
const pbkdf2File = pbkdf2Users(N)
if (only !== 'deepstream') {
  let s = await eddy('file-pbkdf2', { config: `auth:\n  - type: file\n    options:\n${fileOptions}`, files: { 'users.yml': pbkdf2File } })
  await run(s, `eddy file (deepstream PBKDF2-${PBKDF2.hash}, ${N} users)`, userCreds(N))
  await s.stop()
  s = await eddy('file-argon-cheap', { config: 'auth:\n  - type: file\n    options:\n      users: fileLoad(users.yml)\n', files: { 'users.yml': argonUsers(N, 1, 8192) } })
  await run(s, `eddy file (Argon2id t=1 m=8 MiB, ${N} users)`, userCreds(N))
  await s.stop()
  s = await eddy('file-argon-default', { config: 'auth:\n  - type: file\n    options:\n      users: fileLoad(users.yml)\n', files: { 'users.yml': argonUsers(50, 2, 65536) } })
  await run(s, `eddy file (Argon2id default t=2 m=64 MiB, 50 users)`, userCreds(50))
  await s.stop()
  s = await eddy('http', { config: `auth:\n  - type: http\n    options:\n${httpOptions}` })
  await run(s, 'eddy http (local webhook)', userCreds(N))
  await s.stop()
  s = await eddy('jwt', { config: `auth:\n  - type: jwt\n    options:\n      secret: ${secret}\n` })
  const tokens = Array.from({ length: N }, (_, k) => ({ token: signJwt('HS256', secret, { sub: `u${k}`, exp: Math.floor(Date.now() / 1000) + 3600 }) }))
  await run(s, 'eddy jwt (HS256, distinct tokens)', tokens)
  await s.stop()
}
if (only !== 'eddy') {
  let d = await deepstream('file', `auth:\n  - type: file\n    options:\n${fileOptions}`, { 'users.yml': pbkdf2File })
  await run(d, `deepstream 7.0.2 file (PBKDF2-${PBKDF2.hash}, ${N} users)`, userCreds(N))
  await d.stop()
  d = await deepstream('http', `auth:\n  - type: http\n    options:\n${httpOptions}`)
  await run(d, 'deepstream 7.0.2 http (local webhook)', userCreds(N))
  await d.stop()
}
hook.close()
writeFileSync(join(build, 'bench-logins.json'), JSON.stringify({ clients: N, at: new Date().toISOString(), rows }, null, 1))
process.exit(0)
