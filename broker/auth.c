/* auth.c - login: "none" (every JSON-object login succeeds; the user id is the
 * username when given, else "open") and "file" (a users YAML file with
 * Argon2id hashes and per-user clientData/serverData). Password checks cost
 * tens of milliseconds of CPU by design, so they run on a worker thread and the
 * result comes back to the service thread through the broker's inbound queue
 * (the post hook); the websocket loop never waits for them. Failed attempts are counted per connection; after
 * auth.maxAuthAttempts the client gets TOO_MANY_AUTH_ATTEMPTS and is closed. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "yamljson.h"

#define AUTH_QUEUE_LEN 1024
#define MAX_CREDENTIAL 1024

typedef struct user {
    char *hash;
    char *client_data; /* JSON text, NULL when absent */
    char *server_data; /* JSON text, NULL when absent (for permissions, later) */
} user;

typedef struct auth_job {
    uint64_t session_id;
    char *username;
    char *password;
} auth_job;

struct auth_result {
    uint64_t session_id;
    char *username;
    bool ok;
};

struct auth {
    const eddy_config *cfg;
    sessions *set;
    int (*post)(void *ctx, int kind, int li, uint64_t seq, void *item);
    void (*login)(void *ctx, session *s);
    void *ctx;
    dict *users; /* username -> user */
    queue *jobs;
    pthread_t worker;
    bool worker_running;
    char dummy_hash[crypto_pwhash_STRBYTES]; /* verified for unknown users: same cost */
};

static void free_job(void *p)
{
    auth_job *j = p;
    if (j == NULL)
        return;
    xfree(j->username);
    if (j->password != NULL)
        sodium_memzero(j->password, strlen(j->password));
    xfree(j->password);
    xfree(j);
}

static void *worker_main(void *arg)
{
    auth *a = arg;
    for (;;) {
        auth_job *j = queue_pop(a->jobs, 1000);
        if (j == NULL)
            continue;
        if (j->session_id == 0) { /* the stop marker */
            free_job(j);
            break;
        }
        const user *u = dict_get(a->users, j->username, strlen(j->username));
        const char *hash = u != NULL ? u->hash : a->dummy_hash;
        bool ok = crypto_pwhash_str_verify(hash, j->password, strlen(j->password)) == 0 && u != NULL;
        struct auth_result *r = xcalloc(1, sizeof(*r));
        r->session_id = j->session_id;
        r->username = j->username;
        j->username = NULL;
        r->ok = ok;
        free_job(j);
        if (a->post(a->ctx, INBOUND_AUTH, -1, 0, r) != 0) {
            xfree(r->username);
            xfree(r);
        }
    }
    return NULL;
}

static char *json_text(json_t *v)
{
    if (v == NULL)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *out = s ? xstrdup(s) : NULL;
    free(s);
    return out;
}

static void free_user(void *v)
{
    user *u = v;
    xfree(u->hash);
    xfree(u->client_data);
    xfree(u->server_data);
    xfree(u);
}

static int load_users(auth *a, const char *path)
{
    char why[512];
    json_t *root = yaml_load_file(path, why, sizeof(why));
    if (root == NULL) {
        fprintf(stderr, "eddy: config error: auth.users (--users): %s\n", why);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        fprintf(stderr, "eddy: config error: auth.users (--users): %s: expected a mapping of users\n", path);
        rc = -1;
    }
    const char *name;
    json_t *entry;
    if (rc == 0)
        json_object_foreach(root, name, entry) {
            const char *hash = json_string_value(json_object_get(entry, "password"));
            if (hash == NULL || strncmp(hash, "$argon2id$", 10) != 0) {
                fprintf(stderr,
                        "eddy: config error: auth.users (--users): user '%s': password must be "
                        "an Argon2id hash from `eddy hash PASSWORD`\n", name);
                rc = -1;
                break;
            }
            user *u = xcalloc(1, sizeof(*u));
            u->hash = xstrdup(hash);
            u->client_data = json_text(json_object_get(entry, "clientData"));
            u->server_data = json_text(json_object_get(entry, "serverData"));
            dict_put(a->users, name, strlen(name), u);
        }
    json_decref(root);
    if (rc == 0)
        log_info("auth-users-loaded", "file=%s users=%zu", path, dict_size(a->users));
    return rc;
}

int auth_hash_password(const char *password, char *out, size_t out_len)
{
    if (sodium_init() < 0 || out_len < crypto_pwhash_STRBYTES)
        return -1;
    return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

auth *auth_create(const eddy_config *cfg, sessions *set,
                  int (*post)(void *ctx, int kind, int li, uint64_t seq, void *item),
                  void (*login)(void *ctx, session *s), void *ctx, bool *config_error)
{
    auth *a = xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    a->set = set;
    a->post = post;
    a->login = login;
    a->ctx = ctx;
    a->users = dict_new();
    if (cfg->auth_type != AUTH_FILE)
        return a;
    if (sodium_init() < 0 || load_users(a, cfg->users_file) != 0) {
        *config_error = true;
        auth_destroy(a);
        return NULL;
    }
    if (auth_hash_password("dummy-password", a->dummy_hash, sizeof(a->dummy_hash)) != 0) {
        auth_destroy(a);
        return NULL;
    }
    a->jobs = queue_new(AUTH_QUEUE_LEN);
    if (pthread_create(&a->worker, NULL, worker_main, a) != 0) {
        auth_destroy(a);
        return NULL;
    }
    a->worker_running = true;
    return a;
}

void auth_destroy(auth *a)
{
    if (a == NULL)
        return;
    if (a->worker_running) {
        auth_job *stop = xcalloc(1, sizeof(*stop)); /* session_id 0 */
        while (queue_push(a->jobs, stop, 1000) != 0)
            ;
        pthread_join(a->worker, NULL);
    }
    queue_free(a->jobs, free_job);
    dict_free_with(a->users, free_user);
    xfree(a);
}

static void send_auth(session *s, int action, const char *data)
{
    reply_send(s, TOPIC__TOPIC_AUTH, &(client_reply){.action = action, .data = data});
}

static void login_ok(auth *a, session *s, const char *user_id, const char *client_data, const char *server_data)
{
    session_login(s, user_id, server_data);
    send_auth(s, AUTH__ACTION__AUTH_AUTH_SUCCESSFUL, client_data);
    a->login(a->ctx, s);
    log_info("login", "session=%llu user=%s", (unsigned long long)s->id, user_id);
}

static void login_failed(auth *a, session *s, const char *data, const char *user_id)
{
    s->auth_attempts++;
    send_auth(s, AUTH__ACTION__AUTH_AUTH_UNSUCCESSFUL, data);
    log_info("login-failed", "session=%llu user=%s attempt=%d", (unsigned long long)s->id,
             user_id ? user_id : "-", s->auth_attempts);
    if (s->auth_attempts >= a->cfg->max_auth_attempts) {
        send_auth(s, AUTH__ACTION__AUTH_TOO_MANY_AUTH_ATTEMPTS, NULL);
        session_close_after_flush(s);
    }
}

void auth_request(auth *a, session *s, const char *data)
{
    if (s->auth_pending || s->closing) {
        send_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE, NULL);
        return;
    }
    json_error_t jerr;
    json_t *params = data != NULL ? json_loads(data, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(params)) {
        log_warn("auth-invalid-data", "session=%llu (not a JSON object; closing)",
                 (unsigned long long)s->id);
        send_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE_DATA, NULL);
        session_close_after_flush(s);
        json_decref(params);
        return;
    }
    json_t *jname = json_object_get(params, "username");
    const char *username = json_string_value(jname);
    if (a->cfg->auth_type == AUTH_NONE) {
        if (username != NULL && strlen(username) > MAX_CREDENTIAL) {
            login_failed(a, s, "{\"error\":\"username longer than 1024 bytes\"}", NULL);
            json_decref(params);
            return;
        }
        char idbuf[64];
        const char *id = username;
        if (id == NULL && json_is_integer(jname)) {
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(jname));
            id = idbuf;
        }
        login_ok(a, s, id != NULL && id[0] != '\0' ? id : "open", NULL, NULL);
        json_decref(params);
        return;
    }
    const char *password = json_string_value(json_object_get(params, "password"));
    if (username == NULL || password == NULL || strlen(username) > MAX_CREDENTIAL ||
        strlen(password) > MAX_CREDENTIAL) {
        login_failed(a, s,
                     "{\"error\":\"missing authentication parameter: username or/and password\"}",
                     username);
        json_decref(params);
        return;
    }
    auth_job *j = xcalloc(1, sizeof(*j));
    j->session_id = s->id;
    j->username = xstrdup(username);
    j->password = xstrdup(password);
    if (queue_push(a->jobs, j, 0) != 0) {
        log_warn("auth-queue-full", "session=%llu pending=%d", (unsigned long long)s->id,
                 AUTH_QUEUE_LEN);
        free_job(j);
        login_failed(a, s, NULL, username);
    } else
        s->auth_pending = true;
    json_decref(params);
}

void auth_result_free(struct auth_result *r)
{
    xfree(r->username);
    xfree(r);
}

void auth_complete(auth *a, struct auth_result *r)
{
    session *s = sessions_get(a->set, r->session_id);
    if (s != NULL && !s->closing) {
        s->auth_pending = false;
        if (r->ok) {
            const user *u = dict_get(a->users, r->username, strlen(r->username));
            login_ok(a, s, r->username, u && u->client_data ? u->client_data : "null",
                     u ? u->server_data : NULL);
        } else
            login_failed(a, s, NULL, r->username);
    }
    xfree(r->username);
    xfree(r);
}
