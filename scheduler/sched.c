/* sched.c - binary min-heap plus a chained hash set (see sched.h). */
#include "scheduler/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/error.h"

typedef struct set_node {
    struct set_node *next;
    uint64_t hash;
    int64_t due_us;
    char id[37];
    char key[];
} set_node_t;

struct sched {
    sched_entry_t *heap;
    size_t n, cap;
    uint64_t seq;
    set_node_t **buckets;
    size_t nbuckets, nset;
};

static uint64_t hash_of(const char *id, const char *key, int64_t due)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '|') * 1099511628211ull;
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (h ^ (uint64_t)due) * 1099511628211ull;
}

sched_t *sched_create(void)
{
    sched_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void sched_destroy(sched_t *s)
{
    if (s == NULL) return;
    free(s->heap); /* entries' keys belong to the set nodes */
    for (size_t b = 0; b < s->nbuckets; b++) {
        set_node_t *n = s->buckets[b];
        while (n != NULL) {
            set_node_t *next = n->next;
            free(n);
            n = next;
        }
    }
    free(s->buckets);
    free(s);
}

static set_node_t **set_find(sched_t *s, uint64_t h, const char *id, const char *key, int64_t due)
{
    set_node_t **pp = &s->buckets[h % s->nbuckets];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->due_us == due && strcmp((*pp)->id, id) == 0 &&
            strcmp((*pp)->key, key) == 0)
            return pp;
    return pp;
}

static void set_grow(sched_t *s)
{
    size_t nb = s->nbuckets * 2;
    set_node_t **b = calloc(nb, sizeof(*b));
    if (b == NULL) return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        set_node_t *n = s->buckets[i];
        while (n != NULL) {
            set_node_t *next = n->next;
            n->next = b[n->hash % nb];
            b[n->hash % nb] = n;
            n = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static int less(const sched_entry_t *a, const sched_entry_t *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

int sched_push(sched_t *s, const char *id, const char *key, int64_t due_us)
{
    uint64_t h = hash_of(id, key, due_us);
    set_node_t **pp = set_find(s, h, id, key, due_us), *node;
    size_t i;

    if (*pp != NULL) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        sched_entry_t *n = realloc(s->heap, cap * sizeof(*n));
        if (n == NULL) return CBM_ENOMEM;
        s->heap = n;
        s->cap = cap;
    }
    node = malloc(sizeof(*node) + strlen(key) + 1);
    if (node == NULL) return CBM_ENOMEM;
    node->hash = h;
    node->due_us = due_us;
    snprintf(node->id, sizeof(node->id), "%s", id);
    strcpy(node->key, key);
    node->next = NULL;
    *pp = node;
    s->nset++;

    i = s->n++;
    s->heap[i].due_us = due_us;
    s->heap[i].seq = s->seq++;
    snprintf(s->heap[i].id, sizeof(s->heap[i].id), "%s", id);
    s->heap[i].key = node->key; /* shares the set node's copy */
    while (i > 0 && less(&s->heap[i], &s->heap[(i - 1) / 2])) {
        sched_entry_t t = s->heap[i];
        s->heap[i] = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    if (s->nset > s->nbuckets * 2) set_grow(s);
    return 0;
}

int sched_contains(const sched_t *s, const char *id, const char *key, int64_t due_us)
{
    return *set_find((sched_t *)s, hash_of(id, key, due_us), id, key, due_us) != NULL;
}

const sched_entry_t *sched_peek(const sched_t *s)
{
    return s->n > 0 ? &s->heap[0] : NULL;
}

int sched_pop(sched_t *s, sched_entry_t *out)
{
    size_t i = 0;
    set_node_t **pp, *node;
    char *key;

    if (s->n == 0) return -1;
    /* The copy first: out of memory leaves the entry where it was. */
    if ((key = strdup(s->heap[0].key)) == NULL) return CBM_ENOMEM;
    *out = s->heap[0];
    out->key = key;
    pp = set_find(s, hash_of(out->id, s->heap[0].key, out->due_us), out->id, s->heap[0].key,
                  out->due_us);
    node = *pp;
    if (node != NULL) {
        *pp = node->next;
        free(node);
        s->nset--;
    }
    s->heap[0] = s->heap[--s->n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n && less(&s->heap[l], &s->heap[m])) m = l;
        if (r < s->n && less(&s->heap[r], &s->heap[m])) m = r;
        if (m == i) break;
        sched_entry_t t = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = t;
        i = m;
    }
    return 0;
}

size_t sched_size(const sched_t *s)
{
    return s->n;
}
