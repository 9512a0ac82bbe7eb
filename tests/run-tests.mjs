// run-tests.mjs - runs node:test files one at a time (`node --test FILE`), each in
// a process group of its own, and prints a summary. A file still running after
// --timeout seconds is ended with every process it started (servers, haproxy):
// SIGTERM to its group, SIGKILL 5 s later; so is what a finished file left behind.
// Runs on Debian 12's node 18 as on later ones: it uses neither
// --test-timeout nor --test-concurrency, which node 18 does not have.
//
// usage: node tests/run-tests.mjs [--timeout SECONDS] FILE|DIR...
//   a DIR stands for its *.test.mjs / *.test.js files (not its subfolders)
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

let timeout = 600
const files = []
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--timeout') {
    timeout = Number(args[++i])
    if (!(timeout > 0)) usage()
  } else if (statSync(args[i], { throwIfNoEntry: false })?.isDirectory()) {
    files.push(...readdirSync(args[i]).filter(f => /\.test\.m?js$/.test(f)).sort().map(f => join(args[i], f)))
  } else if (statSync(args[i], { throwIfNoEntry: false })?.isFile()) {
    files.push(args[i])
  } else {
    usage(`no such file or folder: ${args[i]}`)
  }
}
if (files.length === 0) usage('no test files')

function usage (why) {
  if (why) console.error(`run-tests: ${why}`)
  console.error('usage: node tests/run-tests.mjs [--timeout SECONDS] FILE|DIR...')
  process.exit(2)
}

// Signals the process group led by pid (ignores one already gone).
function killGroup (pid, signal) {
  try { process.kill(-pid, signal) } catch {}
}

let current = null // the running file's child, for SIGINT/SIGTERM
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (current) killGroup(current.pid, 'SIGKILL')
    process.exit(130)
  })
}

function runFile (file) {
  return new Promise(resolve => {
    const started = Date.now()
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', file], {
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true // its own process group: a timeout ends everything it started
    })
    current = child
    let out = ''
    child.stdout.on('data', d => { out += d; process.stdout.write(d) })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      console.log(`\nrun-tests: ${file} still running after ${timeout} s: ending it`)
      killGroup(child.pid, 'SIGTERM')
      setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5000).unref()
    }, timeout * 1000)
    // anything it left running (which could also hold its stdout open)
    child.on('exit', () => { clearTimeout(timer); killGroup(child.pid, 'SIGKILL') })
    child.on('close', (code, signal) => {
      current = null
      const count = what => Number((out.match(new RegExp(`^[ℹ#] ${what} (\\d+)$`, 'm')) || [])[1] || 0)
      resolve({
        file,
        code,
        why: failureDigest(out),
        signal,
        timedOut,
        tests: count('tests'),
        pass: count('pass'),
        fail: count('fail'),
        cancelled: count('cancelled'),
        skipped: count('skipped'),
        seconds: (Date.now() - started) / 1000
      })
    })
  })
}

// The first lines of the spec reporter's "failing tests" section (else the output's
// last lines), shortened: printed again under the summary, where a CI log's tail shows it.
function failureDigest (out) {
  const lines = out.split('\n').filter(l => l.trim() !== '' && !/^\s+at /.test(l)) // (no stack frames)
  const at = lines.findIndex(l => /failing tests:/.test(l))
  const pick = at >= 0 ? lines.slice(at + 1, at + 13) : lines.slice(-12)
  return pick.map(l => l.length > 200 ? l.slice(0, 200) + '...' : l)
}

const results = []
for (const file of files) {
  console.log(`# ${file}`)
  results.push(await runFile(file))
}

const failed = results.filter(r => r.code !== 0 || r.timedOut)
console.log('\n# summary')
for (const r of results) {
  const state = r.timedOut ? 'TIMED OUT' : r.code === 0 ? 'ok' : `FAILED (exit ${r.code ?? r.signal})`
  console.log(`# ${state.padEnd(9)} ${r.file}: ${r.pass}/${r.tests} passed` +
    `${r.fail ? `, ${r.fail} failed` : ''}${r.cancelled ? `, ${r.cancelled} cancelled` : ''}` +
    `${r.skipped ? `, ${r.skipped} skipped` : ''} (${r.seconds.toFixed(1)} s)`)
}
for (const r of failed) {
  console.log(`# why ${r.file} failed:`)
  for (const l of r.why) console.log(`#   ${l}`)
}
const sum = k => results.reduce((n, r) => n + r[k], 0)
console.log(`# ${results.length} files, ${sum('tests')} tests, ${sum('pass')} passed, ${sum('fail')} failed` +
  `, ${failed.length} files failed (node ${process.version})`)
process.exit(failed.length ? 1 : 0)
