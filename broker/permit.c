/* permit.c - the broker's door for permissions (permission.type config): one
 * client operation checked against the rules in force before it leaves the
 * broker. A rule that reads only the user, the name and the message is
 * decided here; a record rule that reads the record (`data` of a write,
 * `oldData`) is left to the owning node, which applies it under the single
 * writer (PERMIT_AT_NODE). With permission.type none everything is allowed and
 * no rule is looked at.
 *
 * A rule that reads other records finds them read by gate.c, which holds the
 * message until they are. The rules are replaced whole by permit_reload (SIGHUP); a file that fails to
 * compile leaves the old ones in force. Service thread only. */
#include <string.h>

#include "internal.h"
#include "log.h"
#include "mem.h"
#include "permissions.h"
#include "util.h"

struct permit {
    const eddy_config *cfg;
    permissions *rules; /* NULL: permission.type none */
    uint64_t denied;    /* operations denied since start (metrics) */
    uint64_t errors;    /* rules that failed (MESSAGE_PERMISSION_ERROR) */
};

static permissions *load(const eddy_config *cfg, char *err, size_t err_len)
{
    return permissions_load(cfg->permissions_file, (int)cfg->max_rule_iterations, err, err_len);
}

permit *permit_new(const eddy_config *cfg, char *err, size_t err_len)
{
    permit *p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    if (cfg->permission_type == PERMISSION_CONFIG && (p->rules = load(cfg, err, err_len)) == NULL) {
        xfree(p);
        return NULL;
    }
    return p;
}

void permit_free(permit *p)
{
    if (p == NULL)
        return;
    permissions_free(p->rules);
    xfree(p);
}

int permit_reload(permit *p, char *err, size_t err_len)
{
    if (p->cfg->permission_type != PERMISSION_CONFIG)
        return 0;
    permissions *fresh = load(p->cfg, err, err_len);
    if (fresh == NULL)
        return -1;
    permissions_free(p->rules);
    p->rules = fresh;
    return 0;
}

bool permit_active(const permit *p)
{
    return p->rules != NULL;
}

const permissions *permit_rules(const permit *p)
{
    return p->rules;
}

void permit_user(const session *s, perm_user *u)
{
    *u = (perm_user){0};
    if (s->user != NULL) {
        u->id = s->user;
        u->id_len = strlen(s->user);
        u->authenticated = strcmp(s->user, AUTH_OPEN_USER) != 0;
    }
    if (s->server_data != NULL) {
        u->data = s->server_data;
        u->data_len = strlen(s->server_data);
    }
}

void permit_to_owner(session *s, op *o)
{
    perm_user u;
    permit_user(s, &u);
    o->flags |= OP_FLAG_CHECK | (u.authenticated ? OP_FLAG_AUTHENTICATED : 0);
    o->user = (strview){u.id, u.id_len};
    o->meta = (strview){u.data, u.data_len};
    o->refs = sv_of(gate_refs(s)); /* the records its rule read here, if any */
}

enum permit_answer permit_check(permit *p, const session *s, enum perm_section section, enum perm_action action,
                                const char *name, const char *data)
{
    if (p->rules == NULL)
        return PERMIT_ALLOW;
    size_t name_len = name != NULL ? strlen(name) : 0;
    unsigned needs = permissions_needs(p->rules, section, action, name != NULL ? name : "", name_len);
    if (section == PERM_RECORD && (needs & (PERM_NEEDS_DATA | PERM_NEEDS_OLD_DATA)))
        return PERMIT_AT_NODE;
    bool read_failed;
    const perm_records *read = gate_read(s, &read_failed);
    if ((needs & PERM_NEEDS_RECORDS) && read_failed) {
        p->errors++;
        log_warn("permission-error", "session=%llu name=%s (a record its rule reads could not be read: "
                 "answered MESSAGE_PERMISSION_ERROR)", (unsigned long long)s->id, name ? name : "");
        return PERMIT_ERROR;
    }
    perm_user u;
    permit_user(s, &u);
    perm_request req = {.section = section, .action = action, .name = name != NULL ? name : "",
                        .name_len = name_len, .user = &u, .data = data, .data_len = data ? strlen(data) : 0,
                        .now_ms = wall_ms(), .message_action = s->message_action};
    char need[OP_NAME_MAX + 1], why[256] = "";
    enum perm_verdict v = permissions_check(p->rules, &req, read, need, sizeof(need), why, sizeof(why));
    if (v == PERM_VERDICT_ALLOW)
        return PERMIT_ALLOW;
    if (v == PERM_VERDICT_NEED_RECORD && section == PERM_RECORD) /* the owner reads it */
        return PERMIT_AT_NODE;
    if (v == PERM_VERDICT_DENY) {
        p->denied++;
        log_debug("permission-denied", "session=%llu user=%s name=%s %s", (unsigned long long)s->id,
                  s->user ? s->user : "", name ? name : "", why);
        return PERMIT_DENY;
    }
    p->errors++;
    log_warn("permission-error", "session=%llu user=%s name=%s %s (answered MESSAGE_PERMISSION_ERROR)",
             (unsigned long long)s->id, s->user ? s->user : "", name ? name : "",
             v == PERM_VERDICT_NEED_RECORD ? "it reads a record the gate did not read" : why);
    return PERMIT_ERROR;
}

int permit_refusal(int topic, enum permit_answer a)
{
    bool error = a == PERMIT_ERROR;
    switch (topic) {
    case TOPIC__TOPIC_RECORD:
        return error ? RECORD__ACTION__RECORD_MESSAGE_PERMISSION_ERROR : RECORD__ACTION__RECORD_MESSAGE_DENIED;
    case TOPIC__TOPIC_EVENT:
        return error ? EVENT__ACTION__EVENT_MESSAGE_PERMISSION_ERROR : EVENT__ACTION__EVENT_MESSAGE_DENIED;
    case TOPIC__TOPIC_RPC:
        return error ? RPC__ACTION__RPC_MESSAGE_PERMISSION_ERROR : RPC__ACTION__RPC_MESSAGE_DENIED;
    default:
        return error ? PRESENCE__ACTION__PRESENCE_MESSAGE_PERMISSION_ERROR : PRESENCE__ACTION__PRESENCE_MESSAGE_DENIED;
    }
}

void permit_metrics(const permit *p, FILE *f)
{
    fprintf(f, "# TYPE eddy_permission_denied_total counter\neddy_permission_denied_total %llu\n",
            (unsigned long long)p->denied);
    fprintf(f, "# TYPE eddy_permission_errors_total counter\neddy_permission_errors_total %llu\n",
            (unsigned long long)p->errors);
}
