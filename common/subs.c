/* subs.c - the subscription table (see subs.h). Two indexes kept in step:
 * name -> entry (its holders, pins and the owner's data) and holder pointer
 * -> the names it holds (with how many of its tags hold each). */
#include "subs.h"

#include <string.h>

#include "dict.h"
#include "mem.h"
#include "vec.h"

#define DATA_ALIGN 16

typedef struct entry {
    VEC(subs_holder) holders;
    uint32_t pins;
} entry;

struct subs {
    dict *names;   /* name -> entry (the owner's data follows the entry) */
    dict *held;    /* holder pointer (its bytes) -> dict: name -> tags held (as a pointer-sized count) */
    size_t data_offset, data_size;
    bool tagged;   /* some holder has a tag other than 0 */
    subs_hooks hooks;
    void *ctx;
};

static void *data_of(const subs *t, entry *e)
{
    return (char *)e + t->data_offset;
}

subs *subs_new(size_t data_size, subs_hooks hooks, void *ctx)
{
    subs *t = xcalloc(1, sizeof(*t));
    t->names = dict_new();
    t->held = dict_new();
    t->data_offset = (sizeof(entry) + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
    t->data_size = data_size;
    t->hooks = hooks;
    t->ctx = ctx;
    return t;
}

static void free_entry(void *v)
{
    entry *e = v;
    vec_free(&e->holders);
    xfree(e);
}

static void free_held(void *v)
{
    dict_free(v);
}

void subs_free(subs *t)
{
    if (t == NULL)
        return;
    dict_free_with(t->names, free_entry);
    dict_free_with(t->held, free_held);
    xfree(t);
}

size_t subs_count(const subs *t)
{
    return dict_size(t->names);
}

static entry *get_or_create(subs *t, strview name)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    if (e != NULL)
        return e;
    e = xcalloc(1, t->data_offset + t->data_size);
    dict_put(t->names, name.ptr, name.len, e);
    if (t->hooks.first != NULL)
        t->hooks.first(t->ctx, name, data_of(t, e));
    return e;
}

/* Frees e when nothing holds it any more. */
static void release(subs *t, strview name, entry *e, bool quiet)
{
    if (e->holders.n > 0 || e->pins > 0)
        return;
    if (!quiet && t->hooks.last != NULL)
        t->hooks.last(t->ctx, name, data_of(t, e));
    dict_del(t->names, name.ptr, name.len);
    vec_free(&e->holders);
    xfree(e);
}

/* Counts one more (delta 1) or one less (-1) tag of ptr holding name. */
static void index_step(subs *t, const void *ptr, strview name, int delta)
{
    dict *names = dict_get(t->held, &ptr, sizeof(ptr));
    if (names == NULL) {
        if (delta < 0)
            return;
        names = dict_new();
        dict_put(t->held, &ptr, sizeof(ptr), names);
    }
    uintptr_t n = (uintptr_t)dict_get(names, name.ptr, name.len);
    if (delta > 0)
        dict_put(names, name.ptr, name.len, (void *)(n + 1));
    else if (n > 1)
        dict_put(names, name.ptr, name.len, (void *)(n - 1));
    else {
        dict_del(names, name.ptr, name.len);
        if (dict_size(names) == 0) {
            dict_del(t->held, &ptr, sizeof(ptr));
            dict_free(names);
        }
    }
}

static int find_holder(const entry *e, const void *ptr, uint64_t tag)
{
    for (uint32_t i = 0; i < e->holders.n; i++)
        if (e->holders.v[i].ptr == ptr && e->holders.v[i].tag == tag)
            return (int)i;
    return -1;
}

/* Whether ptr holds name under some tag: the holder index, no scan. */
static bool holds_name(const subs *t, strview name, const void *ptr)
{
    dict *names = dict_get(t->held, &ptr, sizeof(ptr));
    return names != NULL && dict_get(names, name.ptr, name.len) != NULL;
}

bool subs_holds(const subs *t, strview name, const void *ptr, uint64_t tag)
{
    if (!holds_name(t, name, ptr))
        return false;
    if (!t->tagged)
        return true; /* every holder's tag is 0 */
    return find_holder(dict_get(t->names, name.ptr, name.len), ptr, tag) >= 0;
}

bool subs_add(subs *t, strview name, void *ptr, uint64_t tag)
{
    if (subs_holds(t, name, ptr, tag))
        return false;
    entry *e = get_or_create(t, name);
    vec_push(&e->holders, ((subs_holder){ptr, tag, 0}));
    t->tagged |= tag != 0;
    index_step(t, ptr, name, 1);
    return true;
}

bool subs_remove(subs *t, strview name, const void *ptr, uint64_t tag, bool quiet)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    int i = e != NULL ? find_holder(e, ptr, tag) : -1;
    if (i < 0)
        return false;
    vec_swap_remove(&e->holders, (uint32_t)i);
    index_step(t, ptr, name, -1);
    release(t, name, e, quiet);
    return true;
}

typedef VEC(strview) name_vec;

static int copy_name(const void *k, size_t l, void *v, void *arg)
{
    vec_push((name_vec *)arg, ((strview){xstrndup(k, l), (uint32_t)l}));
    return 0;
}

strview *subs_held_names(const subs *t, const void *ptr, uint32_t *n)
{
    name_vec names = {0};
    dict *held = dict_get(t->held, &ptr, sizeof(ptr));
    if (held != NULL)
        dict_foreach(held, copy_name, &names);
    *n = names.n;
    return names.v;
}

void subs_names_free(strview *names, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        xfree((char *)names[i].ptr);
    xfree(names);
}

size_t subs_remove_holder(subs *t, const void *ptr)
{
    uint32_t n;
    strview *names = subs_held_names(t, ptr, &n); /* hooks run while we walk: copies */
    dict_free(dict_del(t->held, &ptr, sizeof(ptr)));
    for (uint32_t k = 0; k < n; k++) {
        strview name = names[k];
        entry *e = dict_get(t->names, name.ptr, name.len);
        for (uint32_t i = 0; e != NULL && i < e->holders.n;) {
            if (e->holders.v[i].ptr == ptr)
                vec_swap_remove(&e->holders, i);
            else
                i++;
        }
        if (e != NULL)
            release(t, name, e, false);
    }
    subs_names_free(names, n);
    return n;
}

void subs_clear(subs *t, strview name)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    if (e == NULL)
        return;
    while (e->holders.n > 0) {
        subs_holder h = e->holders.v[--e->holders.n];
        index_step(t, h.ptr, name, -1);
    }
    release(t, name, e, true);
}

size_t subs_held(const subs *t, const void *ptr)
{
    dict *names = dict_get(t->held, &ptr, sizeof(ptr));
    return names != NULL ? dict_size(names) : 0;
}

subs_holder *subs_holders(const subs *t, strview name, uint32_t *n)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    *n = e != NULL ? e->holders.n : 0;
    return e != NULL ? e->holders.v : NULL;
}

subs_holder *subs_find(const subs *t, strview name, const void *ptr, uint64_t tag)
{
    if (!holds_name(t, name, ptr)) /* (a name's holders are scanned only for one of them) */
        return NULL;
    entry *e = dict_get(t->names, name.ptr, name.len);
    int i = find_holder(e, ptr, tag);
    return i >= 0 ? &e->holders.v[i] : NULL;
}

void *subs_data(const subs *t, strview name)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    return e != NULL ? data_of(t, e) : NULL;
}

void *subs_pin(subs *t, strview name)
{
    entry *e = get_or_create(t, name);
    e->pins++;
    return data_of(t, e);
}

void subs_unpin(subs *t, strview name, bool quiet)
{
    entry *e = dict_get(t->names, name.ptr, name.len);
    if (e == NULL || e->pins == 0)
        return;
    e->pins--;
    release(t, name, e, quiet);
}

struct walk {
    const subs *t;
    int (*fn)(void *arg, strview name, subs_holder *holders, uint32_t n, void *data);
    int (*fn_held)(void *arg, strview name);
    void *arg;
};

static int walk_entry(const void *k, size_t l, void *v, void *arg)
{
    struct walk *w = arg;
    entry *e = v;
    return w->fn(w->arg, (strview){k, (uint32_t)l}, e->holders.v, e->holders.n, data_of(w->t, e));
}

void subs_foreach(const subs *t,
                  int (*fn)(void *arg, strview name, subs_holder *holders, uint32_t n, void *data),
                  void *arg)
{
    struct walk w = {.t = t, .fn = fn, .arg = arg};
    dict_foreach(t->names, walk_entry, &w);
}

static int walk_held(const void *k, size_t l, void *v, void *arg)
{
    struct walk *w = arg;
    return w->fn_held(w->arg, (strview){k, (uint32_t)l});
}

void subs_foreach_held(const subs *t, const void *ptr, int (*fn)(void *arg, strview name), void *arg)
{
    dict *names = dict_get(t->held, &ptr, sizeof(ptr));
    struct walk w = {.t = t, .fn_held = fn, .arg = arg};
    if (names != NULL)
        dict_foreach(names, walk_held, &w);
}
