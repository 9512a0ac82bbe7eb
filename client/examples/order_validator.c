/* order_validator.c - an example backend built on eddy.h: an order service
 * that validates every write to the records "orders/<id>" before the cluster
 * applies it (README: Validating writes).
 *
 * An order is {"item": TEXT, "qty": N, "status": "open"|"shipped"}:
 *  - "qty" must be a whole number from 1 to 1000, "item" a non-empty text:
 *    else the write is refused, with the reason the writer sees;
 *  - a "qty" written as text ("3") is corrected to the number (the write is
 *    replaced by the corrected document, which every subscriber gets);
 *  - a shipped order cannot be changed or deleted any more.
 * Anything else is accepted. Several copies may run: the cluster shares the
 * writes between them and moves a write on when one of them stops.
 *
 *   build/examples/order_validator [tcp://127.0.0.1:6021]
 *
 * and from node:  await client.record.setDataWithAck('orders/7', {item: 'tea', qty: -1})
 *                 // rejects with MESSAGE_DENIED; the HTTP API and eddy ctl show the reason */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "eddy.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Why order (the document a write would leave) is not a valid order, or
 * NULL; *fixed gets a corrected copy when one can be made (qty as text). */
static const char *check(json_t *order, json_t **fixed)
{
    *fixed = NULL;
    if (!json_is_object(order))
        return "an order is a JSON object";
    json_t *item = json_object_get(order, "item");
    if (!json_is_string(item) || json_string_length(item) == 0)
        return "an order needs an item";
    json_t *qty = json_object_get(order, "qty");
    long long n;
    if (json_is_string(qty)) { /* "3": correct it to 3 */
        char *end;
        n = strtoll(json_string_value(qty), &end, 10);
        if (*json_string_value(qty) == '\0' || *end != '\0')
            return "qty must be a whole number";
        *fixed = json_deep_copy(order);
        json_object_set_new(*fixed, "qty", json_integer(n));
    } else if (json_is_integer(qty)) {
        n = json_integer_value(qty);
    } else {
        return "qty must be a whole number";
    }
    if (n < 1 || n > 1000) {
        json_decref(*fixed);
        *fixed = NULL;
        return n < 1 ? "qty must be at least 1" : "qty must be at most 1000";
    }
    return NULL;
}

/* One write to an order: the request is the JSON text eddy.h describes. */
static void validate_order(void *arg, eddy_validation *v, const char *name, const char *request)
{
    (void)arg;
    json_t *req = json_loads(request, 0, NULL);
    const char *action = json_string_value(json_object_get(req, "action"));
    json_t *current = json_object_get(req, "current");
    const char *status = json_string_value(json_object_get(current, "status"));
    json_t *fixed = NULL;
    const char *why = NULL;
    if (req == NULL || action == NULL)
        why = "the request could not be read";
    else if (status != NULL && strcmp(status, "shipped") == 0)
        why = "a shipped order cannot change";
    else if (strcmp(action, "delete") != 0)
        why = check(json_object_get(req, "proposed"), &fixed);
    if (why != NULL) {
        fprintf(stderr, "order_validator: %s refused: %s\n", name, why);
        eddy_validation_reject(v, why);
    } else if (fixed != NULL) {
        char *doc = json_dumps(fixed, JSON_COMPACT);
        eddy_validation_replace(v, doc);
        free(doc);
    } else {
        eddy_validation_accept(v);
    }
    json_decref(fixed);
    json_decref(req);
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "tcp://127.0.0.1:6021";
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    eddy *e;
    eddy_status st = eddy_connect(url, NULL, &e);
    if (st != EDDY_OK) {
        fprintf(stderr, "order_validator: cannot connect to %s: %s\n", url, eddy_strerror(st));
        return 1;
    }
    if ((st = eddy_validate(e, "^orders/", validate_order, NULL)) != EDDY_OK) {
        fprintf(stderr, "order_validator: cannot validate orders/: %s\n", eddy_strerror(st));
        eddy_close(e);
        return 1;
    }
    printf("order_validator: ready, validating orders/ at %s\n", url);
    fflush(stdout);
    while (!stop)
        pause();
    eddy_close(e); /* the cluster moves what this one had pending to another validator */
    return 0;
}
