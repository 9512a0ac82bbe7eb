/* price_feed.c - an example backend built only on eddy.h: a price feed.
 *
 * It listens to events named "prices/<SYMBOL>": while at least one client
 * subscribes to a symbol, it publishes that symbol's price there twice a
 * second (and stops when the last subscriber leaves). It also provides the RPC
 * "prices/quote" ({"symbol":"ABC"} -> {"symbol":"ABC","price":123.45}) and
 * keeps the record "prices/latest" with the last price of every symbol.
 *
 *   build/examples/price_feed [tcp://127.0.0.1:6021]
 *
 * and from a browser or node:  client.event.subscribe('prices/ABC', console.log)
 *                              await client.rpc.make('prices/quote', {symbol: 'ABC'}) */
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy.h"

#define MAX_SYMBOLS 64
#define SYMBOL_MAX 32

typedef struct feed {
    pthread_mutex_t lock;
    int count;
    struct {
        char symbol[SYMBOL_MAX];
        double price;
        bool published; /* someone subscribes to prices/<symbol> */
    } s[MAX_SYMBOLS];
} feed;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The symbol's slot (created at a starting price); lock held. NULL when full. */
static int slot(feed *f, const char *symbol)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->s[i].symbol, symbol) == 0)
            return i;
    if (f->count == MAX_SYMBOLS || strlen(symbol) >= SYMBOL_MAX)
        return -1;
    int i = f->count++;
    snprintf(f->s[i].symbol, SYMBOL_MAX, "%s", symbol);
    f->s[i].price = 100.0 + (double)(rand() % 10000) / 100.0;
    return i;
}

/* Listening callback (the library's callback thread): a name matching
 * prices/.* got its first subscriber, or lost its last. */
static bool on_interest(void *arg, const char *pattern, const char *name, bool found)
{
    (void)pattern;
    feed *f = arg;
    const char *symbol = name + strlen("prices/");
    pthread_mutex_lock(&f->lock);
    int i = slot(f, symbol);
    if (i >= 0)
        f->s[i].published = found;
    pthread_mutex_unlock(&f->lock);
    printf("%s %s\n", found ? "publishing" : "stopped", name);
    fflush(stdout);
    return i >= 0; /* accept: we provide this name */
}

/* RPC provider (callback thread): answers at once. */
static void on_quote(void *arg, eddy_rpc *call, const char *name, const char *json, const char *user)
{
    (void)name;
    (void)user;
    feed *f = arg;
    char symbol[SYMBOL_MAX] = "";
    /* a tiny reader for {"symbol":"ABC"}: a real service would use a JSON library */
    const char *p = json ? strstr(json, "\"symbol\"") : NULL;
    if (p != NULL && (p = strchr(p + 8, '"')) != NULL)
        sscanf(p + 1, "%31[A-Za-z0-9_.-]", symbol);
    if (symbol[0] == '\0') {
        eddy_rpc_error(call, "expected {\"symbol\": \"ABC\"}");
        return;
    }
    pthread_mutex_lock(&f->lock);
    int i = slot(f, symbol);
    double price = i >= 0 ? f->s[i].price : 0;
    pthread_mutex_unlock(&f->lock);
    if (i < 0) {
        eddy_rpc_error(call, "too many symbols");
        return;
    }
    char answer[128];
    snprintf(answer, sizeof(answer), "{\"symbol\":\"%s\",\"price\":%.2f}", symbol, price);
    eddy_rpc_respond(call, answer);
}

int main(int argc, char **argv)
{
    const char *cluster = argc > 1 ? argv[1] : "tcp://127.0.0.1:6021";
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    feed f = {.lock = PTHREAD_MUTEX_INITIALIZER};
    eddy *e;
    eddy_status st = eddy_connect(cluster, NULL, &e);
    if (st != EDDY_OK) {
        fprintf(stderr, "price_feed: cannot connect to %s: %s\n", cluster, eddy_strerror(st));
        return 1;
    }
    if ((st = eddy_listen(e, EDDY_EVENTS, "prices/.*", on_interest, &f)) != EDDY_OK ||
        (st = eddy_provide(e, "prices/quote", on_quote, &f)) != EDDY_OK) {
        fprintf(stderr, "price_feed: %s\n", eddy_strerror(st));
        eddy_close(e);
        return 1;
    }
    printf("price feed ready on %s\n", cluster);
    fflush(stdout);
    while (!stop) {
        usleep(500 * 1000);
        char latest[4096] = "{";
        size_t used = 1;
        pthread_mutex_lock(&f.lock);
        for (int i = 0; i < f.count; i++) {
            f.s[i].price *= 1.0 + ((double)(rand() % 201) - 100.0) / 10000.0; /* a random walk */
            if (f.s[i].published) {
                char event[128], name[64];
                snprintf(event, sizeof(event), "{\"symbol\":\"%s\",\"price\":%.2f}", f.s[i].symbol, f.s[i].price);
                snprintf(name, sizeof(name), "prices/%s", f.s[i].symbol);
                eddy_emit(e, name, event);
            }
            used += (size_t)snprintf(latest + used, sizeof(latest) - used, "%s\"%s\":%.2f", i ? "," : "",
                                     f.s[i].symbol, f.s[i].price);
            if (used >= sizeof(latest) - 2)
                break;
        }
        pthread_mutex_unlock(&f.lock);
        if (f.count > 0 && used < sizeof(latest) - 2) {
            strcat(latest, "}");
            eddy_set(e, "prices/latest", NULL, latest, EDDY_VERSION_ANY, NULL);
        }
    }
    eddy_close(e);
    return 0;
}
