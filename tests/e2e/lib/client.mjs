// client.mjs - official @deepstream/client connections and raw protobuf frames.
import { createRequire } from 'node:module'
import WebSocket from 'ws'
import { DeepstreamClient } from '@deepstream/client'
import { sleep } from './server.mjs'

const require = createRequire(import.meta.url)
export const pb = require('@deepstream/protobuf/dist/generated/protobuf.js')

// Enum values without their prefix: CONN.PING, EVENT.SUBSCRIBE, ...
const strip = (e, prefix) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k.replace(prefix, ''), v]))
export const TOPIC = pb.TOPIC
export const PARSER = strip(pb.PARSER_ACTION, 'PARSER_')
export const CONN = strip(pb.CONNECTION_ACTION, 'CONNECTION_')
export const AUTH = strip(pb.AUTH_ACTION, 'AUTH_')
export const EVENT = strip(pb.EVENT_ACTION, 'EVENT_')
export const RECORD = strip(pb.RECORD_ACTION, 'RECORD_')
export const RPC = strip(pb.RPC_ACTION, 'RPC_')
export const PRESENCE = strip(pb.PRESENCE_ACTION, 'PRESENCE_')

// Clients opened by a test; closeAll() in teardown.
const open = new Set()

// A login that has no answer in LOGIN_WAIT ms throws (naming the connection's state)
// rather than waiting forever: a client that gave up reconnecting holds no timer, and a
// test file whose event loop empties reports its remaining tests only as "cancelled".
const LOGIN_WAIT = 30000
export async function connect (url, authData = {}, options = {}) {
  const client = new DeepstreamClient(url, { ...options })
  const errors = []
  client.on('error', (msg, event) => errors.push(`${event}: ${msg}`)) // tests assert on errors explicitly where they matter
  open.add(client)
  let timer
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`login to ${url} unanswered after ${LOGIN_WAIT} ms ` +
      `(connection ${client.getConnectionState()}; errors: ${errors.slice(-3).join(' | ') || 'none'})`)), LOGIN_WAIT)
  })
  try {
    client.loginResult = await Promise.race([client.login(authData), late])
  } finally {
    clearTimeout(timer)
  }
  return client
}

export function newClient (url, options = {}) {
  const client = new DeepstreamClient(url, options)
  open.add(client)
  return client
}

export async function closeAll () {
  for (const c of open) {
    try { c.close() } catch {}
  }
  open.clear()
  await sleep(50)
}

const INNER = {
  [TOPIC.PARSER]: pb.ParserMessage,
  [TOPIC.CONNECTION]: pb.ConnectionMessage,
  [TOPIC.AUTH]: pb.AuthMessage,
  [TOPIC.EVENT]: pb.EventMessage,
  [TOPIC.RECORD]: pb.RecordMessage,
  [TOPIC.RPC]: pb.RpcMessage,
  [TOPIC.PRESENCE]: pb.PresenceMessage
}

// Encodes one deepstream frame: varint length || Message{topic, message}.
export function frame (topic, fields) {
  const inner = INNER[topic].encode(new INNER[topic](fields)).finish()
  return Buffer.from(pb.Message.encodeDelimited(new pb.Message({ topic, message: inner })).finish())
}

export function decode (buf) {
  const m = pb.Message.decodeDelimited(new Uint8Array(buf))
  const type = INNER[m.topic]
  // own properties only: the fields present on the wire (defaults live on the prototype)
  return { topic: m.topic, ...(type ? type.decode(m.message) : {}) }
}

// A websocket speaking raw frames; collects decoded messages and the close event.
export class Raw {
  static async open (url) {
    const raw = new Raw(url)
    await new Promise((resolve, reject) => {
      raw.ws.once('open', resolve)
      raw.ws.once('error', reject)
    })
    return raw
  }

  constructor (url) {
    this.ws = new WebSocket(url)
    this.messages = []
    this.closed = null
    this.ws.on('message', data => { this.messages.push(decode(data)) })
    this.ws.on('close', code => { this.closed = { code } })
    this.ws.on('error', () => {})
  }

  send (topic, fields) { this.ws.send(frame(topic, fields)) }
  sendBytes (bytes, opts = { binary: true }) { this.ws.send(bytes, opts) }

  // Waits for a message matching pred (checking earlier ones too); returns it.
  async next (pred, timeout = 5000) {
    const started = Date.now()
    for (;;) {
      const i = this.messages.findIndex(pred)
      if (i >= 0) return this.messages.splice(i, 1)[0]
      if (Date.now() - started > timeout) {
        throw new Error(`no matching message; got ${JSON.stringify(this.messages)}`)
      }
      await sleep(10)
    }
  }

  async waitClosed (timeout = 5000) {
    const started = Date.now()
    while (!this.closed) {
      if (Date.now() - started > timeout) throw new Error('socket not closed')
      await sleep(10)
    }
    return this.closed
  }

  // CHALLENGE + ACCEPT + AUTH REQUEST + AUTH_SUCCESSFUL.
  async login (authData = {}) {
    this.send(TOPIC.CONNECTION, { action: CONN.CHALLENGE, url: 'ws://x/deepstream', protocolVersion: '0.1a' })
    await this.next(m => m.topic === TOPIC.CONNECTION && m.action === CONN.ACCEPT)
    this.send(TOPIC.AUTH, { action: AUTH.REQUEST, data: JSON.stringify(authData) })
    await this.next(m => m.topic === TOPIC.AUTH && m.action === AUTH.AUTH_SUCCESSFUL)
    return this
  }

  close () { try { this.ws.terminate() } catch {} }
}
