// changesets.mjs - load generator of tests/bench/changesets.sh: for SECONDS,
// CONNECTIONS loops POST to the HTTP API back to back, each request either
// one changeset of RECORDS records (--mode changeset) or RECORDS single
// writes of the same records, one after the other (--mode writes); every
// loop writes its own records (a {tag} per loop). Prints one JSON line:
// {mode, records, requests, records_per_s, requests_per_s, failed}.
const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (i % 2 ? a : [...a, [v.replace(/^--/, ''), all[i + 1]]]), []))
const url = args.url
const seconds = Number(args.seconds || 10)
const connections = Number(args.connections || 8)
const records = Number(args.records || 10)
const mode = args.mode || 'changeset'
let requests = 0
let failed = 0
const until = Date.now() + seconds * 1000
async function loop (c) {
  const names = Array.from({ length: records }, (_, i) => `{bench-${mode}-${c}}/r${i}`)
  for (let n = 0; Date.now() < until; n++) {
    const body = mode === 'changeset'
      ? [{ topic: 'record', action: 'changeset', operations: names.map(name => ({ op: 'set', name, data: { n } })) }]
      : names.map(recordName => ({ topic: 'record', action: 'write', recordName, data: { n } }))
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ body }) })
    const json = await res.json().catch(() => null)
    if (json?.result === 'SUCCESS') requests++
    else failed++
  }
}
const started = Date.now()
await Promise.all(Array.from({ length: connections }, (_, c) => loop(c)))
const elapsed = (Date.now() - started) / 1000
console.log(JSON.stringify({ mode, records, requests, records_per_s: Math.round(requests * records / elapsed),
  requests_per_s: Math.round(requests / elapsed), failed }))
process.exit(failed > 0 ? 1 : 0)
