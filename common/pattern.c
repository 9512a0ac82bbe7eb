/* pattern.c - PCRE2-backed listen patterns, bounded (see pattern.h). One
 * match context with the limits serves every thread; each thread that
 * matches gets its own JIT stack (PCRE2 asks for it through a callback),
 * freed when the thread ends. Not for what a match means: node/listen.c. */
#include "pattern.h"

#include <pthread.h>
#include <stdlib.h>

#include <pcre2.h>

#include "log.h"
#include "mem.h"

struct pattern {
    pcre2_code *code;
    pcre2_match_data *md;
    bool jit;
    size_t len;
    uint64_t limit_hits;
    char shown[64]; /* the text, printable and cut, for the log */
};

#define OPTIONS (PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_MATCH_UNSET_BACKREF | PCRE2_ALLOW_EMPTY_CLASS)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pcre2_match_context *limits; /* read-only once made: shared by every thread */
static pthread_key_t stack_key;
static bool have_stack_key;

static void free_stack(void *stack)
{
    pcre2_jit_stack_free(stack);
}

/* PCRE2's JIT asks for a stack at every match: this thread's, made on first
 * use. NULL (no memory) makes it use its 32 KiB default on the machine stack. */
static pcre2_jit_stack *thread_stack(void *unused)
{
    if (!have_stack_key)
        return NULL;
    pcre2_jit_stack *s = pthread_getspecific(stack_key);
    if (s == NULL && (s = pcre2_jit_stack_create(32 * 1024, PATTERN_JIT_STACK, NULL)) != NULL &&
        pthread_setspecific(stack_key, s) != 0) {
        pcre2_jit_stack_free(s);
        s = NULL;
    }
    return s;
}

static void make_limits(void)
{
    limits = pcre2_match_context_create(NULL);
    if (limits == NULL)
        abort(); /* out of memory at start: as xmalloc */
    pcre2_set_match_limit(limits, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(limits, PATTERN_DEPTH_LIMIT);
    pcre2_set_heap_limit(limits, PATTERN_HEAP_LIMIT_KB);
    have_stack_key = pthread_key_create(&stack_key, free_stack) == 0;
    pcre2_jit_stack_assign(limits, thread_stack, NULL);
}

static pcre2_code *compile(const char *text, size_t len)
{
    if (text == NULL || len == 0 || len > PATTERN_MAX)
        return NULL;
    int err;
    PCRE2_SIZE off;
    return pcre2_compile((PCRE2_SPTR)text, len, OPTIONS, &err, &off, NULL);
}

pattern *pattern_compile(const char *text, size_t len)
{
    pcre2_code *code = compile(text, len);
    if (code == NULL)
        return NULL;
    pthread_once(&once, make_limits);
    pattern *p = xcalloc(1, sizeof(*p));
    p->code = code;
    p->md = pcre2_match_data_create_from_pattern(code, NULL);
    if (p->md == NULL)
        abort();
    /* no JIT (not built in, no executable memory): the interpreter, same limits */
    p->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    p->len = len;
    size_t n = len < sizeof(p->shown) - 1 ? len : sizeof(p->shown) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        p->shown[i] = c < 0x20 || c == 0x7f || c == '"' ? '?' : (char)c;
    }
    p->shown[n] = '\0';
    return p;
}

bool pattern_valid(const char *text, size_t len)
{
    pcre2_code *code = compile(text, len);
    bool ok = code != NULL;
    pcre2_code_free(code);
    return ok;
}

void pattern_free(pattern *p)
{
    if (p == NULL)
        return;
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
    xfree(p);
}

static const char *limit_name(int rc)
{
    switch (rc) {
    case PCRE2_ERROR_MATCHLIMIT: return "match-limit";
    case PCRE2_ERROR_DEPTHLIMIT: return "depth-limit";
    case PCRE2_ERROR_HEAPLIMIT: return "heap-limit";
    case PCRE2_ERROR_JIT_STACKLIMIT: return "jit-stack-limit";
    case PCRE2_ERROR_NOMEMORY: return "no-memory";
    default: return NULL;
    }
}

bool pattern_match(pattern *p, const char *name, size_t len)
{
    int rc = pcre2_match(p->code, (PCRE2_SPTR)name, len, 0, 0, p->md, limits);
    if (rc >= 0)
        return true;
    const char *limit = limit_name(rc);
    if (limit != NULL && p->limit_hits++ == 0) /* other errors (a name that is not UTF-8): no match */
        log_warn("listen-pattern-limit", "pattern=\"%s\" pattern_len=%zu name_len=%zu limit=%s jit=%s "
                 "(counted as no match; logged once per pattern)", p->shown, p->len, len, limit,
                 p->jit ? "yes" : "no");
    return false;
}

uint64_t pattern_limit_hits(const pattern *p)
{
    return p->limit_hits;
}

bool pattern_jit(const pattern *p)
{
    return p->jit;
}
