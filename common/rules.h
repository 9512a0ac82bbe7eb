/* rules.h - deepstream's Valve rule language: the JavaScript-like
 * expressions of permissions.yml, compiled once into an expression tree and
 * evaluated by a small interpreter with JavaScript's semantics for the
 * values a rule meets (numbers, strings, booleans, null, undefined, JSON
 * objects and arrays).
 *
 * The language: literals (numbers, '...' and "..." strings, /regex/flags,
 * true, false, null, undefined, NaN, Infinity, [array, literals]); `user`
 * (.id, .isAuthenticated, .data), `data`, `oldData`, `now`, `name`, the
 * pattern's `$variables`, cross-references `_(expr)`; member `a.b`, `a?.b`,
 * index `a[expr]`; the methods startsWith, endsWith, includes, indexOf,
 * match, toUpperCase, toLowerCase, trim and the `length` property; ! - +
 * typeof; * / % + -; < <= > >= == != === !==; && || ??; ?: and parentheses.
 * Anything else (assignments, `new`, functions, other calls, semicolons,
 * blocks, bitwise operators, unknown identifiers, a `$variable` the pattern
 * lacks, `data`/`oldData` where the action has none) fails to compile with
 * a message and its column.
 *
 * A rule is bounded: RULES_MAX_TEXT bytes, RULES_MAX_NODES nodes, nesting
 * RULES_MAX_DEPTH deep (so the interpreter's recursion is bounded), strings
 * it builds at most RULES_MAX_STRING bytes and RULES_MAX_SCRATCH in all per
 * evaluation, regular expressions matched with PCRE2's match limits
 * (pattern.h). Going over a run-time bound is an error: the rule fails.
 *
 * Evaluation reads `data`, `oldData`, `user.data` and cross-referenced
 * records as JSON text, parsed (jansson) only when the rule reads them and
 * at most once per evaluation. A compiled rule is immutable: any number of
 * threads may evaluate it at once. Not for patterns, sections and actions:
 * permissions.c. */
#ifndef EDDY_RULES_H
#define EDDY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULES_MAX_TEXT 16384          /* bytes of one rule */
#define RULES_MAX_NODES 4096          /* expression nodes of one rule */
#define RULES_MAX_DEPTH 96            /* nesting of one rule's tree */
#define RULES_MAX_VARS 16             /* $variables of one pattern */
#define RULES_MAX_STRING 65536        /* bytes of one string an evaluation builds */
#define RULES_MAX_SCRATCH (1u << 20)  /* bytes an evaluation builds in all */
#define RULES_MAX_MATCHES 1024        /* results of one match() with the g flag */
#define RULES_MAX_JSON_DEPTH 64       /* nesting an array is joined to (String([[...]])) */

/* What a rule reads (the same values as permissions.h's PERM_NEEDS_*). */
#define RULE_READS_DATA 1u
#define RULE_READS_OLD_DATA 2u
#define RULE_READS_RECORDS 4u
#define RULE_READS_USER_DATA 8u

typedef struct rule rule;

/* What a rule may name, given when it is compiled. */
typedef struct rule_scope {
    const char *const *vars; /* the pattern's variables, "$userId" (NUL-terminated), in pattern order */
    size_t nvars;            /* at most RULES_MAX_VARS */
    bool data;               /* the action carries `data` */
    bool old_data;           /* the action has `oldData` */
    const char *section;     /* for messages ("record"); may be NULL */
    const char *action;      /* for messages ("write"); may be NULL */
} rule_scope;

/* Compiles text (len bytes). Returns the rule (owned by the caller:
 * rule_free) or NULL with the reason in err and its 1-based column (in
 * characters) in *column (0 when the reason is not about one place). */
rule *rule_compile(const char *text, size_t len, const rule_scope *scope, char *err, size_t err_len,
                   size_t *column);
/* The rule of a YAML boolean (`read: true`): owned by the caller. */
rule *rule_constant(bool value);
void rule_free(rule *r); /* NULL is fine */

/* RULE_READS_* of r. */
unsigned rule_reads(const rule *r);
/* True when r is a boolean rule; its value in *value. */
bool rule_is_constant(const rule *r, bool *value);
/* The rule as written ("true"/"false" for a boolean); owned by r. */
const char *rule_text(const rule *r);

/* A string of the input; p NULL is `undefined`. Borrowed. */
typedef struct rule_str {
    const char *p;
    size_t len;
} rule_str;

/* Looks up a cross-referenced record: 1 when the caller has it, with its
 * JSON in *json (NULL: the record does not exist), 0 when it must be fetched.
 * The JSON stays the caller's and must live through the evaluation. */
typedef int (*rule_record_fn)(void *ctx, const char *name, size_t len, const char **json, size_t *json_len);

/* One evaluation's input; every pointer is borrowed for the call. */
typedef struct rule_input {
    const char *name; /* `name` */
    size_t name_len;
    const rule_str *vars; /* the scope's variables' values, in scope order */
    size_t nvars;         /* fewer than the scope's: the rest are undefined */
    const char *user_id;  /* `user.id`; NULL: null */
    size_t user_id_len;
    bool authenticated;    /* `user.isAuthenticated` */
    const char *user_data; /* `user.data`, JSON; NULL: null */
    size_t user_data_len;
    const char *data; /* `data`, JSON; NULL: undefined */
    size_t data_len;
    const char *old_data; /* `oldData`, JSON; NULL: null (no such record) */
    size_t old_data_len;
    int64_t now_ms;          /* `now` */
    int32_t action;          /* `action`: deepstream's action number of the checked message; <= 0: null */
    rule_record_fn record;   /* NULL: no record is at hand (every `_()` needs a fetch) */
    void *record_ctx;
    int max_iterations;      /* deepstream's maxRuleIterations (< 1: 1) */
} rule_input;

enum rule_outcome {
    RULE_FALSE = 0,       /* the rule's value is falsy */
    RULE_TRUE = 1,        /* truthy */
    RULE_NEED_RECORD = 2, /* it reads a record the input lacks: its name in need */
    RULE_ERROR = 3        /* it failed (deepstream's MESSAGE_PERMISSION_ERROR): the reason in why */
};

/* Evaluates r as deepstream's rule application does: runs it, and while it
 * asks for records it has not read, reads them and runs it again, at most
 * in->max_iterations runs (reading `oldData` costs the first run, as in
 * deepstream); beyond that RULE_ERROR. RULE_NEED_RECORD copies the name of
 * the record to fetch to need (NUL-terminated); a name that would not fit
 * need_len whole, or that holds a NUL byte, is RULE_ERROR instead (nobody
 * could fetch it by that text). why (may be NULL) gets the reason of a
 * RULE_ERROR. */
enum rule_outcome rule_eval(const rule *r, const rule_input *in, char *need, size_t need_len, char *why,
                            size_t why_len);

/* rule_eval, and the final value written to show as "<typeof>:<String(value)>"
 * ("number:0.30000000000000004", "string:a1", "object:null"); for tests and
 * tools. show is written only for RULE_TRUE and RULE_FALSE. */
enum rule_outcome rule_eval_show(const rule *r, const rule_input *in, char *need, size_t need_len, char *why,
                                 size_t why_len, char *show, size_t show_len);

#endif
