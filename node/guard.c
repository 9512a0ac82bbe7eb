/* guard.c - the owner's half of permissions: a record operation the broker
 * marked OP_FLAG_CHECK (its rule reads the record: `data` after the write,
 * `oldData` before it) is checked here, at apply time under the node's lock,
 * so no other write can slip between the check and the change it allows.
 * The requester's user travels in the operation (user, meta,
 * OP_FLAG_AUTHENTICATED). A cross-reference (`_('name')`) is read from the
 * records the broker read for the rule (refs: it evaluated the rule on the
 * record as it read it, to learn which), else from the records this node
 * holds in memory; one neither has fails the rule (MESSAGE_PERMISSION_ERROR:
 * fail closed; the record changed between the broker's read and the write
 * in a way that makes the rule read another one). */
#include <string.h>

#include "deepstream.pb-c.h"
#include "internal.h"
#include "log.h"
#include "util.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

uint32_t guard_check(const node_env *env, const op *o, enum perm_action action, strview data, strview old,
                     const char *(*read)(void *ctx, strview name, size_t *len, bool *held), void *ctx)
{
    const permissions *rules = env->rules;
    if (rules == NULL || !(o->flags & OP_FLAG_CHECK))
        return 0;
    perm_user u = {.id = o->user.len ? o->user.ptr : NULL, .id_len = o->user.len,
                   .authenticated = (o->flags & OP_FLAG_AUTHENTICATED) != 0,
                   .data = o->meta.len ? o->meta.ptr : NULL, .data_len = o->meta.len};
    perm_request req = {.section = PERM_RECORD, .action = action, .name = o->name.ptr, .name_len = o->name.len,
                        .user = &u, .data = data.ptr, .data_len = data.len, .old_data = old.ptr,
                        .old_data_len = old.len, .now_ms = wall_ms(), .message_action = (int)o->action};
    /* the records the broker read for this rule first, then those this node holds */
    perm_records *read_so_far = o->refs.len > 0 ? perm_records_from_json(o->refs.ptr, o->refs.len) : NULL;
    char need[OP_NAME_MAX + 1], why[256] = "";
    enum perm_verdict v;
    while ((v = permissions_check(rules, &req, read_so_far, need, sizeof(need), why, sizeof(why))) ==
           PERM_VERDICT_NEED_RECORD) {
        size_t len = 0;
        bool held = false;
        const char *json = read(ctx, (strview){need, (uint32_t)strlen(need)}, &len, &held);
        if (!held) {
            snprintf(why, sizeof(why), "cross-reference to '%.160s', which this node does not hold in memory", need);
            v = PERM_VERDICT_ERROR;
            break;
        }
        if (read_so_far == NULL)
            read_so_far = perm_records_new();
        perm_records_put(read_so_far, need, strlen(need), json, len);
    }
    perm_records_free(read_so_far);
    if (v == PERM_VERDICT_ALLOW)
        return 0;
    if (v == PERM_VERDICT_DENY) {
        prom_add(&env->stats->denied, 1);
        log_debug("permission-denied", "name=%.*s user=%.*s %s", (int)o->name.len, o->name.ptr, (int)o->user.len,
                  o->user.ptr, why);
        return ACT(MESSAGE_DENIED);
    }
    prom_add(&env->stats->rule_errors, 1);
    log_warn("permission-error", "name=%.*s user=%.*s %s (answered MESSAGE_PERMISSION_ERROR)", (int)o->name.len,
             o->name.ptr, (int)o->user.len, o->user.ptr, why);
    return ACT(MESSAGE_PERMISSION_ERROR);
}
