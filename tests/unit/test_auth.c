/* test_auth.c - the file strategy's password checks in both formats it reads
 * (eddy's Argon2id, deepstream's PBKDF2 with vectors computed by node's
 * crypto.pbkdf2, including the hash deepstream ships in conf/users.yml), what
 * it answers for unknown users and missing fields, what it refuses at start,
 * and the login cache (keyed per strategy and credential, expiring, bounded). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "broker.h"
#include "config.h"
#include "internal.h"

static char err[512];
static char users_path[64];

/* A users file holding text, and a config whose strategy 0 is file with flags. */
static void setup_config(eddy_config *c, const char *users, const char *const *flags)
{
    strcpy(users_path, "/tmp/eddy-test-users-XXXXXX");
    int fd = mkstemp(users_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, users, strlen(users)), (ssize_t)strlen(users));
    close(fd);
    config_defaults(c);
    assert_int_equal(config_set_flag(c, "--auth", "file", err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(c, "--users", users_path, err, sizeof(err)), 0);
    /* cheap Argon2id for the unknown-user check */
    assert_int_equal(config_set_flag(c, "--auth-argon2-ops-limit", "1", err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(c, "--auth-argon2-mem-limit", "8", err, sizeof(err)), 0);
    for (int i = 0; flags != NULL && flags[i] != NULL; i += 2)
        if (config_set_flag(c, flags[i], flags[i + 1], err, sizeof(err)) != 0)
            fail_msg("%s", err);
}

static void *create(eddy_config *c)
{
    void *f = auth_file_ops.create(c, 0, err, sizeof(err));
    unlink(users_path);
    return f;
}

/* What the file strategy answers for authData text. */
static enum auth_verdict check(void *f, const char *data, auth_outcome *out)
{
    auth_login l = {.session_id = 1};
    l.data = json_loads(data, 0, NULL);
    assert_non_null(l.data);
    memset(out, 0, sizeof(*out));
    auth_file_ops.check(f, &l, out);
    json_decref(l.data);
    return out->verdict;
}

static void expect(void *f, const char *data, enum auth_verdict want)
{
    auth_outcome out;
    if (check(f, data, &out) != want)
        fail_msg("%s: verdict %d, want %d (%s)", data, out.verdict, want, out.reason ? out.reason : "");
    auth_outcome_clear(&out);
}

/* deepstream's conf/users.yml: "password" hashed with md5, 100 iterations, 32 bytes */
#define SHIPPED "rCOSZxJrgze2AZdVQh12c6ErDMOG0M+Rx5Yu7S5d91c=GS4SbTQYmoaGwjm2shEobg=="

static void test_deepstream_hashes(void **state)
{
    (void)state;
    eddy_config c;
    const char *md5[] = {"--auth-hash", "md5", "--auth-iterations", "100", "--auth-key-length", "32", NULL};
    setup_config(&c, "userA:\n  password: \"" SHIPPED "\"\n  serverData: {someOptional: auth-data}\n"
                     "  clientData: {favouriteColor: red}\n", md5);
    void *f = create(&c);
    if (f == NULL)
        fail_msg("%s", err);
    auth_outcome out;
    assert_int_equal(check(f, "{\"username\":\"userA\",\"password\":\"password\"}", &out), AUTH_ACCEPT);
    assert_string_equal(out.user_id, "userA");
    assert_string_equal(out.client_data, "{\"favouriteColor\":\"red\"}");
    assert_string_equal(out.server_data, "{\"someOptional\":\"auth-data\"}");
    auth_outcome_clear(&out);
    expect(f, "{\"username\":\"userA\",\"password\":\"Password\"}", AUTH_REJECT);
    expect(f, "{\"username\":\"userA\",\"password\":\"\"}", AUTH_REJECT);
    auth_file_ops.destroy(f);
    config_free(&c);

    /* other digests, key lengths, iteration counts and a UTF-8 password (node's crypto.pbkdf2) */
    const char *sha256[] = {"--auth-hash", "sha256", "--auth-iterations", "1000", "--auth-key-length", "64", NULL};
    setup_config(&c, "u:\n  password: \"S5lSoWrqYY03dfU83PYta7a0AYjvFBa4u2qSU4BCI8kCcw7PpnaDwK4OpboH+24qgpZ8dph9xh4h"
                     "oOB6isFviw==q0Nf3oR5pXyG4u0b3Lq8Tw==\"\n", sha256);
    f = create(&c);
    assert_non_null(f);
    expect(f, "{\"username\":\"u\",\"password\":\"s3cret\"}", AUTH_ACCEPT);
    expect(f, "{\"username\":\"u\",\"password\":\"s3cret \"}", AUTH_REJECT);
    auth_file_ops.destroy(f);
    config_free(&c);

    const char *sha1[] = {"--auth-hash", "sha1", "--auth-iterations", "10", "--auth-key-length", "20", NULL};
    setup_config(&c, "u:\n  password: \"MO5sPCReMi4Au/Mi4m5+I6vZhtk=Zm9vYmFyYmF6cXV4cXV1eA==\"\n", sha1);
    f = create(&c);
    assert_non_null(f);
    expect(f, "{\"username\":\"u\",\"password\":\"p\\u00e4ssw\\u00f6rd\"}", AUTH_ACCEPT);
    expect(f, "{\"username\":\"u\",\"password\":\"passwoerd\"}", AUTH_REJECT);
    auth_file_ops.destroy(f);
    config_free(&c);

    const char *sha512[] = {"--auth-hash", "sha512", "--auth-iterations", "5", "--auth-key-length", "33", NULL};
    setup_config(&c, "u:\n  password: \"Mddx+O4JWosFWnD4icbd59SRUzQx3ntZ2A0fYQYugXIZAAAAAAAAAAAAAAAAAAAAAA==\"\n", sha512);
    f = create(&c);
    assert_non_null(f);
    expect(f, "{\"username\":\"u\",\"password\":\"x\"}", AUTH_ACCEPT);
    expect(f, "{\"username\":\"u\",\"password\":\"y\"}", AUTH_REJECT);
    auth_file_ops.destroy(f);
    config_free(&c);
}

static void test_argon2_and_mixed(void **state)
{
    (void)state;
    char hash[256];
    assert_int_equal(auth_hash_password("correct horse", 1, 8, hash, sizeof(hash)), 0);
    assert_non_null(strstr(hash, "$argon2id$v=19$m=8,t=1,p=1$"));
    char users[1024];
    snprintf(users, sizeof(users), "alice:\n  password: \"%s\"\nuserA:\n  password: \"" SHIPPED "\"\n", hash);
    eddy_config c;
    const char *md5[] = {"--auth-hash", "md5", NULL}; /* iterations 100 and keyLength 32 are the defaults */
    setup_config(&c, users, md5);
    void *f = create(&c);
    if (f == NULL)
        fail_msg("%s", err);
    expect(f, "{\"username\":\"alice\",\"password\":\"correct horse\"}", AUTH_ACCEPT);
    expect(f, "{\"username\":\"alice\",\"password\":\"correct horse!\"}", AUTH_REJECT);
    expect(f, "{\"username\":\"userA\",\"password\":\"password\"}", AUTH_ACCEPT);
    /* an unknown user is passed on (deepstream), after a check of the same cost */
    expect(f, "{\"username\":\"mallory\",\"password\":\"password\"}", AUTH_PASS);
    /* missing fields: refused with deepstream's message */
    auth_outcome out;
    assert_int_equal(check(f, "{\"username\":\"alice\"}", &out), AUTH_REJECT);
    assert_string_equal(out.client_data, "{\"error\":\"missing authentication parameter: username or/and password\"}");
    auth_outcome_clear(&out);
    expect(f, "{\"username\":\"alice\",\"password\":7}", AUTH_REJECT);
    auth_file_ops.destroy(f);
    config_free(&c);

    /* reportInvalidParameters false: refusals are passed on */
    const char *quiet[] = {"--auth-report-invalid-parameters", "false", NULL};
    snprintf(users, sizeof(users), "alice:\n  password: \"%s\"\n", hash);
    setup_config(&c, users, quiet);
    f = create(&c);
    assert_non_null(f);
    expect(f, "{\"username\":\"alice\",\"password\":\"nope\"}", AUTH_PASS);
    expect(f, "{\"username\":\"alice\"}", AUTH_PASS);
    expect(f, "{\"username\":\"alice\",\"password\":\"correct horse\"}", AUTH_ACCEPT);
    auth_file_ops.destroy(f);
    config_free(&c);
}

static void expect_refused(const char *users, const char *const *flags, const char *part)
{
    eddy_config c;
    setup_config(&c, users, flags);
    void *f = create(&c);
    if (f != NULL)
        fail_msg("users file accepted: %s", users);
    if (strstr(err, part) == NULL)
        fail_msg("error '%s' does not say '%s'", err, part);
    config_free(&c);
}

static void test_refused_at_start(void **state)
{
    (void)state;
    const char *md5[] = {"--auth-hash", "md5", NULL};
    expect_refused("alice:\n  password: secret\n", NULL, "user 'alice': password must be an Argon2id hash");
    expect_refused("alice:\n  password: secret\n", md5, "or a deepstream hash");
    /* a deepstream hash needs the hash option, and the right keyLength */
    expect_refused("userA:\n  password: \"" SHIPPED "\"\n", NULL, "userA");
    const char *md5_16[] = {"--auth-hash", "md5", "--auth-key-length", "16", NULL};
    expect_refused("userA:\n  password: \"" SHIPPED "\"\n", md5_16, "userA");
    const char *bad[] = {"--auth-hash", "md55", NULL};
    expect_refused("userA:\n  password: \"" SHIPPED "\"\n", bad, "auth.options.hash (--auth-hash): unknown digest 'md55'");
    expect_refused("alice: {}\n", NULL, "alice");
    expect_refused("[1, 2]\n", NULL, "auth.users (--users)");
    expect_refused("{}\n", NULL, "mapping of users");
}

static void test_cache(void **state)
{
    (void)state;
    assert_null(auth_cache_new(0, 10)); /* auth.cacheTtl 0: no cache */
    auth_cache *c = auth_cache_new(60000, 3);
    auth_outcome ok = {.verdict = AUTH_ACCEPT, .user_id = "alice", .client_data = "{\"a\":1}",
                       .cache_until = INT64_MAX};
    auth_outcome out = {0};
    const uint8_t cred[] = "\0\0\0\5alicepw";
    assert_false(auth_cache_get(c, 0, cred, sizeof(cred), &out));
    auth_cache_put(c, 0, cred, sizeof(cred), &ok);
    assert_true(auth_cache_get(c, 0, cred, sizeof(cred), &out));
    assert_int_equal(out.verdict, AUTH_ACCEPT);
    assert_string_equal(out.user_id, "alice");
    assert_string_equal(out.client_data, "{\"a\":1}");
    assert_null(out.server_data);
    auth_outcome_clear(&out);
    /* another strategy, another credential: misses */
    assert_false(auth_cache_get(c, 1, cred, sizeof(cred), &out));
    assert_false(auth_cache_get(c, 0, cred, sizeof(cred) - 1, &out));
    /* refusals are never cached */
    auth_outcome no = {.verdict = AUTH_REJECT, .user_id = "x"};
    auth_cache_put(c, 0, (const uint8_t *)"no", 2, &no);
    assert_false(auth_cache_get(c, 0, (const uint8_t *)"no", 2, &out));
    /* bounded: the oldest goes */
    auth_cache_put(c, 0, (const uint8_t *)"b", 1, &ok);
    auth_cache_put(c, 0, (const uint8_t *)"c", 1, &ok);
    auth_cache_put(c, 0, (const uint8_t *)"d", 1, &ok);
    assert_false(auth_cache_get(c, 0, cred, sizeof(cred), &out));
    assert_true(auth_cache_get(c, 0, (const uint8_t *)"d", 1, &out));
    auth_outcome_clear(&out);
    /* an answer the strategy says expires (a token's exp) is not served after */
    auth_outcome soon = ok;
    soon.cache_until = 1; /* long past */
    auth_cache_put(c, 0, (const uint8_t *)"e", 1, &soon);
    assert_false(auth_cache_get(c, 0, (const uint8_t *)"e", 1, &out));
    auth_cache_free(c);

    c = auth_cache_new(30, 10); /* 30 ms */
    auth_cache_put(c, 0, cred, sizeof(cred), &ok);
    assert_true(auth_cache_get(c, 0, cred, sizeof(cred), &out));
    auth_outcome_clear(&out);
    usleep(60 * 1000);
    assert_false(auth_cache_get(c, 0, cred, sizeof(cred), &out));
    auth_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepstream_hashes),
        cmocka_unit_test(test_argon2_and_mixed),
        cmocka_unit_test(test_refused_at_start),
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
