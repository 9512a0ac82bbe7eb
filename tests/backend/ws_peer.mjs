// ws_peer.mjs - a real @deepstream/client websocket client that the C backend
// tests drive through stdin/stdout, one JSON object per line.
//
// usage: node tests/backend/ws_peer.mjs WEBSOCKET_URL
// commands (stdin):  {"op": ..., "id": n, ...}   every command is answered
//   {"event":"ok","id":n} (or {"event":"error","id":n,"error":...}) once done
//   (for (un)subscribe and (un)provide: once the server has it).
//   subscribe {name}            events on name arrive as {"event":"event","name","data"}
//   unsubscribe {name}
//   emit {name, data}
//   record {name}               record changes arrive as {"event":"record","name","version","data"}
//   set {name, path?, data}     setWithAck
//   provide {name, tag}         answers {"by": tag, "data": request}
//   unprovide {name}
//   call {name, data}           answered with {"event":"result","id","data"} or {"event":"result","id","error"}
//   exit
// It prints {"event":"ready"} once logged in.
import { DeepstreamClient } from '@deepstream/client'
import { createInterface } from 'node:readline'

const client = new DeepstreamClient(process.argv[2], { maxReconnectAttempts: 0 })
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n')
client.on('error', (error, event) => out({ event: 'client-error', error: String(error), kind: event }))
await client.login({})
out({ event: 'ready' })

const records = new Map()
const handlers = {
  subscribe: c => client.event.subscribe(c.name, data => out({ event: 'event', name: c.name, data })),
  unsubscribe: c => client.event.unsubscribe(c.name),
  emit: c => client.event.emit(c.name, c.data),
  record: async c => {
    const r = client.record.getRecord(c.name)
    await r.whenReady()
    records.set(c.name, r)
    r.subscribe(data => out({ event: 'record', name: c.name, version: r.version, data }), true)
  },
  set: c => c.path
    ? client.record.setDataWithAck(c.name, c.path, c.data)
    : client.record.setDataWithAck(c.name, c.data),
  provide: c => client.rpc.provide(c.name, (data, response) => response.send({ by: c.tag, data })),
  unprovide: c => client.rpc.unprovide(c.name),
  call: c => client.rpc.make(c.name, c.data)
    .then(data => out({ event: 'result', id: c.id, data }), error => out({ event: 'result', id: c.id, error: String(error) })),
  exit: () => { client.close(); setTimeout(() => process.exit(0), 50) }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  const c = JSON.parse(line)
  try {
    const h = handlers[c.op]
    if (!h) throw new Error(`unknown op ${c.op}`)
    if (c.op === 'call') { h(c); continue } // answered by its result line
    await h(c)
    // the client sends (un)subscribe and (un)provide in bulk every 100 ms
    // (subscriptionInterval): answer once the server has them
    if (['subscribe', 'unsubscribe', 'provide', 'unprovide'].includes(c.op)) await new Promise(resolve => setTimeout(resolve, 300))
    out({ event: 'ok', id: c.id })
  } catch (error) {
    out({ event: 'error', id: c.id, error: String(error) })
  }
}
client.close()
