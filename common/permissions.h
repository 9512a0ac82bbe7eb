/* permissions.h - deepstream's Valve permissions: a permissions.yml compiled
 * once into rules (expression trees, rules.h) per section, name pattern and
 * action, and the check a door (broker, node) runs for one operation.
 *
 * A loaded permissions set is immutable: threads may check against it at the
 * same time, and a reload builds a new one and swaps it in. Nothing here does
 * I/O after load: a rule that reads another record (`_('name')`) answers
 * PERM_VERDICT_NEED_RECORD, the caller fetches that record, adds it to a
 * perm_records and asks again. */
#ifndef EDDY_PERMISSIONS_H
#define EDDY_PERMISSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum perm_section { PERM_RECORD, PERM_EVENT, PERM_RPC, PERM_PRESENCE, PERM_SECTIONS };

enum perm_action {
    PERM_CREATE,    /* record */
    PERM_WRITE,     /* record */
    PERM_READ,      /* record */
    PERM_DELETE,    /* record */
    PERM_LISTEN,    /* record, event */
    PERM_NOTIFY,    /* record */
    PERM_PUBLISH,   /* event */
    PERM_SUBSCRIBE, /* event */
    PERM_PROVIDE,   /* rpc */
    PERM_REQUEST,   /* rpc */
    PERM_ALLOW,     /* presence */
    PERM_ACTIONS
};

/* What the rule that applies to an operation reads (permissions_needs). */
#define PERM_NEEDS_DATA 1u      /* `data` */
#define PERM_NEEDS_OLD_DATA 2u  /* `oldData` */
#define PERM_NEEDS_RECORDS 4u   /* cross-references `_()` */
#define PERM_NEEDS_USER_DATA 8u /* `user.data` */

typedef struct permissions permissions;

/* Reads and compiles a permissions YAML file (deepstream's format). Returns the
 * set (owned; permissions_free) or NULL with one line in err naming the file,
 * section, pattern, action and, for a rule, the column. */
permissions *permissions_load(const char *path, int max_rule_iterations, char *err, size_t err_len);
/* The same from YAML text; source names it in errors. */
permissions *permissions_parse(const char *yaml, size_t len, const char *source, int max_rule_iterations,
                               char *err, size_t err_len);
void permissions_free(permissions *p); /* NULL is fine */

/* The PERM_NEEDS_* bits of the rule that applies to (section, action, name). */
unsigned permissions_needs(const permissions *p, enum perm_section section, enum perm_action action,
                           const char *name, size_t name_len);

/* The user a check runs for. */
typedef struct perm_user {
    const char *id; /* NULL: not logged in */
    size_t id_len;
    bool authenticated; /* user.isAuthenticated (false for auth none's anonymous logins) */
    const char *data;   /* user.data: the login's serverData as JSON text, NULL when none */
    size_t data_len;
} perm_user;

/* One operation to check. */
typedef struct perm_request {
    enum perm_section section;
    enum perm_action action;
    const char *name;
    size_t name_len;
    const perm_user *user;
    const char *data; /* JSON text: event/RPC data, the record after the write; NULL when none */
    size_t data_len;
    const char *old_data; /* JSON text: the record before the write; NULL when it does not exist */
    size_t old_data_len;
    int64_t now_ms; /* `now` */
    int message_action; /* the client message's action number (deepstream's `action`, see
                         * perm_wire_action); 0: none (`action` is null) */
} perm_request;

/* deepstream's `action` for a check of (section, action) made for a message
 * of message_action: what it derives (record create checks CREATE, a
 * subscribe's read READ, a create-and-write's write UPDATE or PATCH). */
int perm_wire_action(enum perm_section section, enum perm_action action, int message_action);

/* The PERM_NEEDS_* bits of every rule of p together (0 for PERM_NEEDS_RECORDS:
 * no rule reads another record, nothing need be fetched for any check). */
unsigned permissions_reads(const permissions *p);

/* Records a check has read so far (cross-references), filled by the caller. */
typedef struct perm_records perm_records;
perm_records *perm_records_new(void);
/* Adds name's JSON (copied); json NULL: the record does not exist. */
void perm_records_put(perm_records *r, const char *name, size_t name_len, const char *json, size_t json_len);
void perm_records_free(perm_records *r); /* NULL is fine */
/* name's JSON in r (NULL: it does not exist, or *known false: not in r). */
const char *perm_records_get(const perm_records *r, const char *name, size_t name_len, size_t *json_len, bool *known);
/* r as a JSON object, name -> the record's data or null when it does not
 * exist (r NULL: "{}"). Owned by the caller (xfree). */
char *perm_records_json(const perm_records *r);
/* The records of such an object (owned by the caller), or NULL when json is
 * not one. */
perm_records *perm_records_from_json(const char *json, size_t len);

enum perm_verdict {
    PERM_VERDICT_DENY = 0,        /* MESSAGE_DENIED (no rule applies, or it is falsy) */
    PERM_VERDICT_ALLOW = 1,
    PERM_VERDICT_NEED_RECORD = 2, /* fetch `need` and ask again */
    PERM_VERDICT_ERROR = 3        /* MESSAGE_PERMISSION_ERROR: the rule failed (deepstream: it threw,
                                   * or needed more than max_rule_iterations records) */
};

/* Checks req. PERM_VERDICT_NEED_RECORD: the rule reads a record records
 * lacks; its name is copied to need (NUL-terminated; a name that does not
 * fit need_len whole or holds a NUL byte is PERM_VERDICT_ERROR instead);
 * the caller fetches it, puts it and calls again. A rule that needs more
 * than max_rule_iterations runs is PERM_VERDICT_ERROR (deepstream's count:
 * a run reads every record loaded so far and may ask for several at once;
 * reading oldData costs the first run; each call replays the runs, so the
 * verdict does not depend on the order the caller fetched in). records may
 * be NULL (none read yet). On DENY or ERROR, why (may be NULL) says which
 * rule and why, for the log. */
enum perm_verdict permissions_check(const permissions *p, const perm_request *req, const perm_records *records,
                                    char *need, size_t need_len, char *why, size_t why_len);

#endif
