// run-tests.mjs - runs node:test files one at a time (`node --test FILE`), each in
// a process group of its own, and prints a summary. A file still running after
// --timeout seconds is ended with every process it started (servers, haproxy):
// SIGTERM to its group, SIGKILL 5 s later; so is what a finished file left behind.
// Runs on Debian 12's node 18 as on later ones: it uses neither
// --test-timeout nor --test-concurrency, which node 18 does not have.
//
// With --jobs N, N files run at once (each still in its own process group, with
// its own servers on ports of their own); a file's output is printed whole when
// it ends, so logs never interleave. A file whose first lines hold the comment
// `run-tests: alone` (it measures time or load) runs with nothing else running.
//
// usage: node tests/run-tests.mjs [--timeout SECONDS] [--jobs N] FILE|DIR...
//   a DIR stands for its *.test.mjs / *.test.js files (not its subfolders)
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

let timeout = 600
let jobs = 1
const files = []
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--timeout') {
    timeout = Number(args[++i])
    if (!(timeout > 0)) usage()
  } else if (args[i] === '--jobs') {
    jobs = Number(args[++i])
    if (!(Number.isInteger(jobs) && jobs > 0)) usage('--jobs takes a positive integer')
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
  console.error('usage: node tests/run-tests.mjs [--timeout SECONDS] [--jobs N] FILE|DIR...')
  process.exit(2)
}

// Signals the process group led by pid (ignores one already gone).
function killGroup (pid, signal) {
  try { process.kill(-pid, signal) } catch {}
}

const running = new Set() // the running files' children, for SIGINT/SIGTERM
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    for (const child of running) killGroup(child.pid, 'SIGKILL')
    process.exit(130)
  })
}

// Whether a file asks to run with nothing else running (a comment in its first 2 KB).
function alone (file) {
  return /run-tests: alone/.test(readFileSync(file, 'utf8').slice(0, 2048))
}

// Runs one file; its output goes to stdout as it comes (live) or whole at the end.
function runFile (file, live) {
  return new Promise(resolve => {
    const started = Date.now()
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', file], {
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true // its own process group: a timeout ends everything it started
    })
    running.add(child)
    let out = live ? '' : `# ${file}\n`
    child.stdout.on('data', d => { out += d; if (live) process.stdout.write(d) })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      const line = `\nrun-tests: ${file} still running after ${timeout} s: ending it\n`
      if (live) process.stdout.write(line); else out += line
      killGroup(child.pid, 'SIGTERM')
      setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5000).unref()
    }, timeout * 1000)
    // anything it left running (which could also hold its stdout open)
    child.on('exit', () => { clearTimeout(timer); killGroup(child.pid, 'SIGKILL') })
    child.on('close', (code, signal) => {
      running.delete(child)
      if (!live) process.stdout.write(out)
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

// Up to `jobs` files at once, in order; a file that runs alone waits for the
// others to end and holds the next ones back.
const results = new Array(files.length)
const active = new Set()
for (let i = 0; i < files.length; i++) {
  const file = files[i]
  const solo = jobs > 1 && alone(file)
  while (active.size >= jobs || (solo && active.size > 0)) await Promise.race(active)
  if (jobs === 1) console.log(`# ${file}`)
  const p = runFile(file, jobs === 1).then(r => { results[i] = r; active.delete(p) })
  active.add(p)
  if (solo) await p
}
await Promise.all(active)

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
