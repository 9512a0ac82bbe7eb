/* pattern.c - PCRE2-backed listen patterns (see pattern.h). */
#include "pattern.h"

#include <pcre2.h>

#include "mem.h"

struct pattern {
    pcre2_code *code;
    pcre2_match_data *md;
};

pattern *pattern_compile(const char *text, size_t len)
{
    if (len == 0 || len > PATTERN_MAX)
        return NULL;
    int err;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)text, len,
                                     PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_MATCH_UNSET_BACKREF |
                                         PCRE2_ALLOW_EMPTY_CLASS,
                                     &err, &off, NULL);
    if (code == NULL)
        return NULL;
    pattern *p = xmalloc(sizeof(*p));
    p->code = code;
    p->md = pcre2_match_data_create_from_pattern(code, NULL);
    return p;
}

void pattern_free(pattern *p)
{
    if (p == NULL)
        return;
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
    xfree(p);
}

bool pattern_match(const pattern *p, const char *name, size_t len)
{
    return pcre2_match(p->code, (PCRE2_SPTR)name, len, 0, 0, p->md, NULL) >= 0;
}
