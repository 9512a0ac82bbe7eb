// suite.mjs - one server per describe block: started before its first test,
// stopped (clean exit and no sanitizer report checked by stop()) after its
// last, every client of a test closed after that test.
import { before, after, afterEach } from 'node:test'
import { startServer } from './server.mjs'
import { closeAll } from './client.mjs'

// Returns the suite's server (startServer's options) as soon as it runs:
// properties are read from the started server, methods called on it.
export function serverPerSuite (options = {}) {
  let real = null
  before(async () => { real = await startServer(options) })
  after(async () => { if (real) await real.stop() })
  afterEach(closeAll)
  return new Proxy({}, {
    get (_, key) {
      if (real === null) throw new Error(`server.${String(key)} before the suite's server started`)
      const v = real[key]
      return typeof v === 'function' ? v.bind(real) : v
    }
  })
}
