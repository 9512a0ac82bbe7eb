// jwt.mjs - JSON Web Tokens signed with node's crypto, for the auth suites.
import crypto from 'node:crypto'

const b64u = b => Buffer.from(b).toString('base64url')
// alg HS256 (key: the secret), RS256 or ES256 (key: a private KeyObject); any other alg: no signature.
export function signJwt (alg, key, payload, header = {}) {
  const data = `${b64u(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64u(JSON.stringify(payload))}`
  let sig
  if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(data).digest()
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(data), key)
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' })
  else sig = Buffer.alloc(0)
  return `${data}.${b64u(sig)}`
}
