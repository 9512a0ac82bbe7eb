/* metamap.c - the replicated shard map: apply, spread, snapshot encode and
 * validated decode (see metamap.h). Every check runs before the first change,
 * so a refused command leaves the map exactly as it was. */
#include "metamap.h"

#include <string.h>

#include "mem.h"
#include "metacmd.h"
#include "mpack.h"

const char *meta_strerror(int status)
{
    switch (status) {
    case META_OK: return "applied";
    case META_EMALFORMED: return "refused: malformed command";
    case META_ESTALE: return "refused: the map version moved on";
    case META_EEXISTS: return "refused: a member with this id, name or address exists";
    case META_ENOTFOUND: return "refused: no such member";
    case META_EFULL: return "refused: too many members";
    case META_EINUSE: return "refused: the member holds shard copies";
    case META_EEPOCH: return "refused: epoch does not move forward, or not from the one stated";
    case META_ENOTINSYNC: return "refused: the new primary is not in the in-sync set";
    case META_EDOWN: return "refused: the node is marked down";
    case META_EASSIGNED: return "refused: shards are assigned already";
    case META_EINVALID: return "refused: invalid copies or in-sync set";
    default: return "unknown status";
    }
}

void metamap_init(metamap *m)
{
    memset(m, 0, sizeof(*m));
}

static int member_index(const metamap *m, uint16_t id)
{
    for (unsigned i = 0; i < m->nmembers; i++)
        if (m->members[i].id == id)
            return (int)i;
    return -1;
}

const meta_member *metamap_member(const metamap *m, uint16_t id)
{
    int i = member_index(m, id);
    return i < 0 ? NULL : &m->members[i];
}

static bool strn_eq(const char *a, const char *b, uint32_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

static void copy_str(char *dst, const char *src, uint32_t len)
{
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

int metamap_position(const meta_shard *sh, uint16_t id)
{
    for (unsigned i = 0; i < sh->ncopies; i++)
        if (sh->copies[i] == id)
            return (int)i;
    return -1;
}

unsigned metamap_primaries_of(const metamap *m, uint16_t id)
{
    unsigned n = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        n += m->shards[s].ncopies > 0 && m->shards[s].copies[0] == id;
    return n;
}

unsigned metamap_copies_of(const metamap *m, uint16_t id)
{
    unsigned n = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        n += metamap_position(&m->shards[s], id) >= 0;
    return n;
}

/* Copies (n ids) valid for m: distinct members. */
static meta_status check_copies(const metamap *m, const uint16_t *ids, unsigned n)
{
    if (n == 0 || n > META_MAX_COPIES)
        return META_EINVALID;
    for (unsigned i = 0; i < n; i++) {
        if (member_index(m, ids[i]) < 0)
            return META_ENOTFOUND;
        for (unsigned j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return META_EINVALID;
    }
    return META_OK;
}

/* The in-sync ids as a bit per position of sh's copies; each must be a copy,
 * listed once, and the primary must be among them. */
static meta_status insync_mask(const meta_shard *sh, const uint16_t *ids, unsigned n, uint8_t *mask)
{
    uint8_t bits = 0;
    for (unsigned i = 0; i < n; i++) {
        int pos = metamap_position(sh, ids[i]);
        if (pos < 0 || (bits & (1u << pos)))
            return META_EINVALID;
        bits |= (uint8_t)(1u << pos);
    }
    if (!(bits & 1u))
        return META_EINVALID; /* the primary is always in sync */
    *mask = bits;
    return META_OK;
}

static meta_status add_node(metamap *m, const meta_cmd *c)
{
    if (member_index(m, c->node) >= 0)
        return META_EEXISTS;
    for (unsigned i = 0; i < m->nmembers; i++) {
        const meta_member *o = &m->members[i];
        if (strn_eq(o->name, c->name, c->name_len) || (c->raft_len && strn_eq(o->raft, c->raft, c->raft_len)))
            return META_EEXISTS;
    }
    if (m->nmembers >= META_MAX_MEMBERS)
        return META_EFULL;
    unsigned at = 0; /* members stay sorted by id */
    while (at < m->nmembers && m->members[at].id < c->node)
        at++;
    memmove(&m->members[at + 1], &m->members[at], (m->nmembers - at) * sizeof(m->members[0]));
    meta_member *n = &m->members[at];
    memset(n, 0, sizeof(*n));
    n->id = c->node;
    copy_str(n->name, c->name, c->name_len);
    copy_str(n->request, c->request, c->request_len);
    copy_str(n->delivery, c->delivery, c->delivery_len);
    copy_str(n->raft, c->raft, c->raft_len);
    m->nmembers++;
    return META_OK;
}

static meta_status remove_node(metamap *m, const meta_cmd *c)
{
    int i = member_index(m, c->node);
    if (i < 0)
        return META_ENOTFOUND;
    if (metamap_copies_of(m, c->node) > 0)
        return META_EINUSE;
    memmove(&m->members[i], &m->members[i + 1], (m->nmembers - (unsigned)i - 1) * sizeof(m->members[0]));
    m->nmembers--;
    memset(&m->members[m->nmembers], 0, sizeof(m->members[0]));
    return META_OK;
}

static meta_status mark(metamap *m, const meta_cmd *c, bool down)
{
    int i = member_index(m, c->node);
    if (i < 0)
        return META_ENOTFOUND;
    if (m->members[i].down == down)
        return META_EINVALID; /* nothing would change: refused, so the version says "changed" */
    m->members[i].down = down;
    return META_OK;
}

static meta_status spread(metamap *m, const meta_cmd *c)
{
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (m->shards[s].ncopies > 0 || m->shards[s].epoch > 0) /* assigned, or unavailable */
            return META_EASSIGNED;
    if (c->epoch == 0)
        return META_EEPOCH;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (m->shards[s].epoch >= c->epoch)
            return META_EEPOCH;
    uint16_t ids[META_MAX_MEMBERS];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nmembers; i++)
        if (!m->members[i].down)
            ids[n++] = m->members[i].id;
    if (c->ncopies == 0 || c->ncopies > n)
        return META_EINVALID;
    meta_shard *shards = xmalloc(sizeof(m->shards));
    uint16_t *primaries = xmalloc(SHARD_COUNT * sizeof(*primaries));
    bool listed = metacmd_primaries(c, primaries);
    /* -1 also when a listed primary is not a member, or is down */
    int rc = metamap_spread(ids, n, c->ncopies, c->epoch, listed ? primaries : NULL, shards);
    if (rc == 0)
        memcpy(m->shards, shards, sizeof(m->shards));
    xfree(primaries);
    xfree(shards);
    return rc == 0 ? META_OK : META_EINVALID;
}

static meta_status set_shard(metamap *m, const meta_cmd *c)
{
    meta_shard *sh = &m->shards[c->shard];
    if (c->epoch <= sh->epoch)
        return META_EEPOCH;
    meta_status st = check_copies(m, c->copies, c->ncopies);
    if (st != META_OK)
        return st;
    if (metamap_member(m, c->copies[0])->down)
        return META_EDOWN;
    meta_shard next = {.epoch = c->epoch, .ncopies = c->ncopies};
    memcpy(next.copies, c->copies, c->ncopies * sizeof(c->copies[0]));
    if ((st = insync_mask(&next, c->insync, c->ninsync, &next.insync)) != META_OK)
        return st;
    *sh = next;
    return META_OK;
}

static meta_status promote(metamap *m, const meta_cmd *c)
{
    meta_shard *sh = &m->shards[c->shard];
    if (sh->ncopies == 0)
        return META_EINVALID;
    if (c->epoch != sh->epoch)
        return META_EEPOCH; /* decided on another epoch: fenced */
    const meta_member *to = metamap_member(m, c->node);
    if (to == NULL)
        return META_ENOTFOUND;
    int pos = metamap_position(sh, c->node);
    if (pos <= 0)
        return pos == 0 ? META_EINVALID : META_ENOTINSYNC; /* already primary / not a copy */
    if (!(sh->insync & (1u << pos)))
        return META_ENOTINSYNC;
    if (to->down)
        return META_EDOWN;
    /* The new primary first, the others in their order; the old primary stays
     * a copy but leaves the in-sync set: it must truncate and catch up first. */
    meta_shard next = {.epoch = sh->epoch + 1, .ncopies = sh->ncopies};
    next.copies[0] = c->node;
    next.insync = 1u;
    unsigned k = 1;
    for (unsigned i = 0; i < sh->ncopies; i++) {
        if ((int)i == pos)
            continue;
        if (i > 0 && (sh->insync & (1u << i)))
            next.insync |= (uint8_t)(1u << k);
        next.copies[k++] = sh->copies[i];
    }
    *sh = next;
    return META_OK;
}

/* FAIL_NODE: the member is down and leaves every copy list (a replica copy:
 * the shard keeps its primary and epoch; the primary: the first in-sync
 * replica that is up takes over at epoch + 1, the others keep their order and
 * in-sync bits; none: the shard is unavailable, epoch + 1 and no copies).
 * Refused (nothing to change) when the member is down and holds no copy. */
static meta_status fail_node(metamap *m, const meta_cmd *c)
{
    int mi = member_index(m, c->node);
    if (mi < 0)
        return META_ENOTFOUND;
    if (m->members[mi].down && metamap_copies_of(m, c->node) == 0)
        return META_EINVALID;
    m->members[mi].down = true; /* first: a promotion below never picks it */
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        meta_shard *sh = &m->shards[s];
        int pos = metamap_position(sh, c->node);
        if (pos < 0)
            continue;
        int to = -1; /* the position promoted when the failed one is the primary */
        for (unsigned i = 1; pos == 0 && to < 0 && i < sh->ncopies; i++)
            if ((sh->insync & (1u << i)) && !metamap_member(m, sh->copies[i])->down)
                to = (int)i;
        if (pos == 0 && to < 0) {
            meta_shard lost = {.epoch = sh->epoch + 1}; /* unavailable: no copy to serve it */
            *sh = lost;
            continue;
        }
        meta_shard next = {.epoch = pos == 0 ? sh->epoch + 1 : sh->epoch};
        if (pos == 0) {
            next.copies[next.ncopies] = sh->copies[to];
            next.insync = 1u;
            next.ncopies++;
        }
        for (unsigned i = 0; i < sh->ncopies; i++) {
            if ((int)i == pos || (int)i == to)
                continue;
            if (sh->insync & (1u << i))
                next.insync |= (uint8_t)(1u << next.ncopies);
            next.copies[next.ncopies++] = sh->copies[i];
        }
        *sh = next;
    }
    return META_OK;
}

bool metamap_unavailable(const meta_shard *sh)
{
    return sh->ncopies == 0 && sh->epoch > 0;
}

unsigned metamap_unavailable_count(const metamap *m)
{
    unsigned n = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        n += metamap_unavailable(&m->shards[s]);
    return n;
}

static meta_status set_insync(metamap *m, const meta_cmd *c)
{
    meta_shard *sh = &m->shards[c->shard];
    if (sh->ncopies == 0)
        return META_EINVALID;
    if (c->epoch != sh->epoch)
        return META_EEPOCH;
    uint8_t mask;
    meta_status st = insync_mask(sh, c->insync, c->ninsync, &mask);
    if (st != META_OK)
        return st;
    if (mask == sh->insync)
        return META_EINVALID; /* no change */
    sh->insync = mask;
    return META_OK;
}

/* SYNC_REPLICA: the replica's in-sync bit in every shard led by the primary
 * that holds a copy on it. Refused when nothing changes, or when a replica
 * marked down would come in. */
static meta_status sync_replica(metamap *m, const meta_cmd *c)
{
    const meta_member *p = metamap_member(m, c->node), *r = metamap_member(m, c->replica);
    if (p == NULL || r == NULL)
        return META_ENOTFOUND;
    if (c->in && r->down)
        return META_EDOWN;
    unsigned changed = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        meta_shard *sh = &m->shards[s];
        if (sh->ncopies == 0 || sh->copies[0] != c->node)
            continue;
        int pos = metamap_position(sh, c->replica);
        if (pos <= 0)
            continue;
        uint8_t bit = (uint8_t)(1u << pos), next = c->in ? (uint8_t)(sh->insync | bit) : (uint8_t)(sh->insync & ~bit);
        changed += next != sh->insync;
        sh->insync = next;
    }
    return changed > 0 ? META_OK : META_EINVALID;
}

/* ADD_REPLICA: the member (up) joins, out of sync and last, every assigned
 * shard with fewer than c->ncopies copies that it holds none of. The epoch
 * stays (the primary does not change). Refused when no shard needs it. */
static meta_status add_replica(metamap *m, const meta_cmd *c)
{
    const meta_member *a = metamap_member(m, c->node);
    if (a == NULL)
        return META_ENOTFOUND;
    if (a->down)
        return META_EDOWN;
    unsigned added = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        meta_shard *sh = &m->shards[s];
        if (sh->ncopies == 0 || sh->ncopies >= c->ncopies || sh->ncopies >= META_MAX_COPIES ||
            metamap_position(sh, c->node) >= 0)
            continue;
        sh->copies[sh->ncopies++] = c->node; /* its in-sync bit stays clear */
        added++;
    }
    return added > 0 ? META_OK : META_EINVALID;
}

/* ADD_COPY: one more (out-of-sync) replica of one shard, decided on its epoch. */
static meta_status add_copy(metamap *m, const meta_cmd *c)
{
    meta_shard *sh = &m->shards[c->shard];
    if (sh->ncopies == 0 || sh->ncopies >= META_MAX_COPIES)
        return META_EINVALID;
    if (c->epoch != sh->epoch)
        return META_EEPOCH;
    const meta_member *a = metamap_member(m, c->node);
    if (a == NULL)
        return META_ENOTFOUND;
    if (a->down)
        return META_EDOWN;
    if (metamap_position(sh, c->node) >= 0)
        return META_EINVALID; /* a copy already */
    sh->copies[sh->ncopies++] = c->node; /* its in-sync bit stays clear */
    return META_OK;
}

/* DROP_COPY: a replica leaves one shard's copies (the primary never does:
 * that is PROMOTE's or FAIL_NODE's), decided on its epoch; the copies after
 * it move up with their in-sync bits. */
static meta_status drop_copy(metamap *m, const meta_cmd *c)
{
    meta_shard *sh = &m->shards[c->shard];
    if (c->epoch != sh->epoch)
        return META_EEPOCH;
    int pos = metamap_position(sh, c->node);
    if (pos <= 0)
        return META_EINVALID; /* the primary, or not a copy */
    uint8_t low = (uint8_t)(sh->insync & ((1u << pos) - 1u)), high = (uint8_t)(sh->insync >> (pos + 1));
    for (unsigned i = (unsigned)pos; i + 1 < sh->ncopies; i++)
        sh->copies[i] = sh->copies[i + 1];
    sh->copies[--sh->ncopies] = 0;
    sh->insync = (uint8_t)(low | (high << pos));
    return META_OK;
}

meta_status metamap_apply(metamap *m, const meta_cmd *c)
{
    if (c->expect_version != 0 && c->expect_version != m->version)
        return META_ESTALE;
    meta_status st;
    switch (c->kind) {
    case META_ADD_NODE: st = add_node(m, c); break;
    case META_REMOVE_NODE: st = remove_node(m, c); break;
    case META_SPREAD: st = spread(m, c); break;
    case META_SET_SHARD: st = set_shard(m, c); break;
    case META_PROMOTE: st = promote(m, c); break;
    case META_SET_INSYNC: st = set_insync(m, c); break;
    case META_NODE_DOWN: st = mark(m, c, true); break;
    case META_NODE_UP: st = mark(m, c, false); break;
    case META_FAIL_NODE: st = fail_node(m, c); break;
    case META_SYNC_REPLICA: st = sync_replica(m, c); break;
    case META_ADD_REPLICA: st = add_replica(m, c); break;
    case META_ADD_COPY: st = add_copy(m, c); break;
    case META_DROP_COPY: st = drop_copy(m, c); break;
    default: st = META_EMALFORMED; break;
    }
    if (st == META_OK)
        m->version++;
    return st;
}

meta_status metamap_apply_bytes(metamap *m, const void *data, size_t len)
{
    meta_cmd c;
    if (metacmd_decode(&c, data, len) != 0)
        return META_EMALFORMED;
    return metamap_apply(m, &c);
}

/* Primaries as given, or contiguous ranges as shardmap_init_even; each
 * shard's replicas are the members after its primary in id order, wrapping:
 * exactly what replicas_of (common/shardmap.c) gives the static map, so that
 * a group bootstrapped from the configuration routes as the nodes did
 * before it. */
int metamap_spread(const uint16_t *ids, unsigned n, unsigned copies, uint64_t epoch, const uint16_t *primaries,
                   meta_shard *shards)
{
    if (n == 0 || copies == 0 || copies > META_MAX_COPIES || copies > n)
        return -1;
    unsigned p = 0; /* the primary's position in ids */
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        if (primaries == NULL)
            p = (unsigned)((uint64_t)s * n / SHARD_COUNT);
        else if (s == 0 || primaries[s] != primaries[s - 1]) { /* a run starts: find its member */
            for (p = 0; p < n && ids[p] != primaries[s]; p++)
                ;
            if (p == n)
                return -1;
        }
        meta_shard *sh = &shards[s];
        memset(sh, 0, sizeof(*sh));
        sh->epoch = epoch;
        sh->ncopies = (uint8_t)copies;
        sh->insync = (uint8_t)((1u << copies) - 1);
        for (unsigned j = 0; j < copies; j++)
            sh->copies[j] = ids[(p + j) % n];
    }
    return 0;
}

static bool cstr_ok(const char *s, size_t max)
{
    return memchr(s, '\0', max + 1) != NULL;
}

int metamap_check(const metamap *m)
{
    if (m->nmembers > META_MAX_MEMBERS)
        return -1;
    for (unsigned i = 0; i < m->nmembers; i++) {
        const meta_member *a = &m->members[i];
        if (a->id == 0 || (i > 0 && m->members[i - 1].id >= a->id) || !cstr_ok(a->name, META_MAX_NAME) ||
            a->name[0] == '\0' || !cstr_ok(a->request, META_MAX_ADDR) || !cstr_ok(a->delivery, META_MAX_ADDR) ||
            !cstr_ok(a->raft, META_MAX_ADDR))
            return -1;
        for (unsigned j = 0; j < i; j++) {
            const meta_member *b = &m->members[j];
            if (strcmp(a->name, b->name) == 0 || (a->raft[0] && strcmp(a->raft, b->raft) == 0))
                return -1;
        }
    }
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s];
        if (sh->ncopies == 0) {
            if (sh->insync != 0)
                return -1;
            continue;
        }
        if (check_copies(m, sh->copies, sh->ncopies) != META_OK || sh->epoch == 0 || !(sh->insync & 1u) ||
            sh->insync >= (1u << sh->ncopies))
            return -1;
    }
    return 0;
}

void metamap_encode(const metamap *m, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, META_FORMAT);
    msgpack_pack_uint64(&pk, m->version);
    msgpack_pack_array(&pk, m->nmembers);
    for (unsigned i = 0; i < m->nmembers; i++) {
        const meta_member *a = &m->members[i];
        msgpack_pack_array(&pk, 6);
        msgpack_pack_uint16(&pk, a->id);
        if (a->down)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        msgpack_pack_str_with_body(&pk, a->name, strlen(a->name));
        msgpack_pack_str_with_body(&pk, a->request, strlen(a->request));
        msgpack_pack_str_with_body(&pk, a->delivery, strlen(a->delivery));
        msgpack_pack_str_with_body(&pk, a->raft, strlen(a->raft));
    }
    msgpack_pack_array(&pk, SHARD_COUNT);
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s];
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint64(&pk, sh->epoch);
        msgpack_pack_uint8(&pk, sh->insync);
        msgpack_pack_array(&pk, sh->ncopies);
        for (unsigned i = 0; i < sh->ncopies; i++)
            msgpack_pack_uint16(&pk, sh->copies[i]);
    }
}

static int read_cstr(mp_reader *r, char *dst, uint32_t max)
{
    const char *s;
    uint32_t len;
    if (mp_read_bytes(r, &s, &len) != 0 || len > max || (len && memchr(s, '\0', len) != NULL))
        return -1;
    copy_str(dst, s, len);
    return 0;
}

static int decode_into(metamap *m, const void *data, size_t len)
{
    mp_reader r;
    mp_reader_init(&r, data, len);
    uint32_t n, count;
    uint64_t format, v;
    if (mp_read_array(&r, &n) != 0 || n != 4 || mp_read_uint(&r, &format) != 0 || format != META_FORMAT ||
        mp_read_uint(&r, &m->version) != 0 || mp_read_array(&r, &count) != 0 || count > META_MAX_MEMBERS)
        return -1;
    m->nmembers = count;
    for (uint32_t i = 0; i < count; i++) {
        meta_member *a = &m->members[i];
        bool down;
        if (mp_read_array(&r, &n) != 0 || n != 6 || mp_read_uint(&r, &v) != 0 || v == 0 ||
            v > META_MAX_NODE_ID || mp_read_bool(&r, &down) != 0 || read_cstr(&r, a->name, META_MAX_NAME) != 0 ||
            read_cstr(&r, a->request, META_MAX_ADDR) != 0 || read_cstr(&r, a->delivery, META_MAX_ADDR) != 0 ||
            read_cstr(&r, a->raft, META_MAX_ADDR) != 0)
            return -1;
        a->id = (uint16_t)v;
        a->down = down;
    }
    if (mp_read_array(&r, &count) != 0 || count != SHARD_COUNT)
        return -1;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        meta_shard *sh = &m->shards[s];
        if (mp_read_array(&r, &n) != 0 || n != 3 || mp_read_uint(&r, &sh->epoch) != 0 ||
            mp_read_uint(&r, &v) != 0 || v > 0xff || mp_read_array(&r, &count) != 0 || count > META_MAX_COPIES)
            return -1;
        sh->insync = (uint8_t)v;
        sh->ncopies = (uint8_t)count;
        for (uint32_t i = 0; i < count; i++) {
            if (mp_read_uint(&r, &v) != 0 || v == 0 || v > META_MAX_NODE_ID)
                return -1;
            sh->copies[i] = (uint16_t)v;
        }
    }
    return mp_remaining(&r) == 0 ? 0 : -1;
}

int metamap_decode(metamap *m, const void *data, size_t len)
{
    if (len == 0 || len > META_SNAPSHOT_MAX)
        return -1;
    metamap *tmp = xcalloc(1, sizeof(*tmp));
    int rc = decode_into(tmp, data, len) == 0 && metamap_check(tmp) == 0 ? 0 : -1;
    if (rc == 0)
        *m = *tmp;
    xfree(tmp);
    return rc;
}
