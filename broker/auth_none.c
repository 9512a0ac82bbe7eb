/* auth_none.c - auth type `none` (deepstream's OpenAuthentication): every
 * login succeeds; the user id is authData.username (a string, or an integer
 * as text) when given and not empty, else "open". Never passes a login on:
 * strategies after it in the list are not asked. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"
#include "mem.h"

static void *none_create(const eddy_config *cfg, int index, char *err, size_t err_len)
{
    static int self; /* no state */
    return &self;
}

static void none_check(void *self, const auth_login *l, auth_outcome *out)
{
    json_t *name = json_object_get(l->data, "username");
    const char *id = json_string_value(name);
    char idbuf[32];
    if (id == NULL && json_is_integer(name)) {
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(name));
        id = idbuf;
    }
    out->verdict = AUTH_ACCEPT;
    out->user_id = xstrdup(id != NULL && id[0] != '\0' ? id : "open");
}

const auth_strategy_ops auth_none_ops = {
    .type = "none",
    .run = AUTH_RUN_INLINE,
    .create = none_create,
    .check = none_check,
};
