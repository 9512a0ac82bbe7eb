// standalone.mjs - the eddy server the client-path benchmarks run against:
// `eddy standalone` on a free port with a scratch data folder.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// Starts bin with extra arguments; resolves with { url, stop() } once it listens.
export async function startStandalone (bin, extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-bench-'))
  const server = spawn(bin, ['standalone', '--host', '127.0.0.1', '--port', '0', '--data', dir, ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  const port = await new Promise((resolve, reject) => {
    server.stderr.on('data', d => {
      stderr += d
      const m = stderr.match(/broker-listening port=(\d+)/)
      if (m) resolve(Number(m[1]))
    })
    server.on('exit', code => reject(new Error(`eddy exited ${code}: ${stderr}`)))
  })
  return {
    url: `ws://127.0.0.1:${port}/deepstream`,
    async stop () {
      server.kill('SIGTERM')
      await new Promise(resolve => server.on('exit', resolve))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
