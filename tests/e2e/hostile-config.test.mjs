// hostile-config.test.mjs - YAML files the server reads, against alias bombs
// (issue 13): a "billion laughs" file given as --config or as the users file
// is refused at once (exit code 2, the file named), where it used to expand
// exponentially (a 342-byte file: 68 s and 24 GB); a file using a few
// aliases still works. The binary is run directly, whatever EDDY_MODE says.
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { runEddy, startServer, MODE } from './lib/server.mjs'
import { connect, closeAll } from './lib/client.mjs'

const dir = mkdtempSync(join(tmpdir(), 'eddy-hostile-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))

// levels of nine aliases each: 9^levels strings (7: 4.8 million)
function bomb (levels) {
  const lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
  for (let i = 1; i < levels; i++) lines.push(`l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(',')}]`)
  return lines.join('\n') + '\n'
}

function file (name, text) {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

describe(`YAML alias bombs (${MODE})`, () => {
  test('a billion laughs as --config is refused at once, naming the file', () => {
    const p = file('bomb.yml', bomb(7))
    const t0 = performance.now()
    const r = runEddy(['standalone', '--config', p, '--port', '0', '--data', join(dir, 'data')])
    const took = performance.now() - t0
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /config error: --config: .*bomb\.yml: aliases expand to more than \d+ values/)
    assert.ok(took < 5000, `took ${took} ms`)
  })

  test('a billion laughs as the users file is refused at once, naming the file', () => {
    const p = file('users.yml', 'alice: {password: "$argon2id$x", serverData: {junk: *l6}}\n'.replace(/^/, bomb(7)))
    const r = runEddy(['standalone', '--auth', 'file', '--users', p, '--port', '0', '--data', join(dir, 'data')])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /auth\.users \(--users\): .*users\.yml: aliases expand/)
  })

  test('nesting too deep is refused, naming the file', () => {
    const p = file('deep.yml', 'listen: ' + '['.repeat(100) + ']'.repeat(100) + '\n')
    const r = runEddy(['standalone', '--config', p, '--port', '0', '--data', join(dir, 'data')])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /deep\.yml: line 1: nesting deeper than 64 levels/)
  })

  test('a configuration using a few aliases still starts', async () => {
    const p = file('fine.yml', 'rpc:\n  ackTimeout: &t 1500\n  responseTimeout: *t\nlisten:\n  responseTimeout: *t\n')
    const server = await startServer({ extra: ['--config', p], nodeExtra: MODE === 'cluster' ? ['--config', p] : [] })
    try {
      const c = await connect(server.url)
      await c.record.setDataWithAck('aliases/ok', { ok: true })
      await closeAll()
    } finally {
      await server.stop()
    }
  })
})
