/*
 * buf.h - the growable byte buffer of the LLM worker (workers/llm): the SSE
 * parser's line and event, the answer's content, an error body. Always
 * NUL-terminated once anything was appended, so its text can be handed to
 * cJSON and printf as it is.
 *
 * Threads: a buffer belongs to whoever holds it.
 */
#ifndef CBM_LLM_BUF_H
#define CBM_LLM_BUF_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct llm_buf {
    char *p;     /* NULL until the first append */
    size_t len;  /* bytes held, without the NUL */
    size_t cap;  /* bytes allocated */
} llm_buf_t;

/* Append n bytes; 0, or -1 when out of memory (the buffer is unchanged). */
static inline int llm_buf_add(llm_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap < 256 ? 256 : b->cap;
        char *p;
        while (cap < b->len + n + 1) cap *= 2;
        if ((p = realloc(b->p, cap)) == NULL) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n > 0) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* The text held ("" when empty). */
static inline const char *llm_buf_str(const llm_buf_t *b)
{
    return b->p != NULL ? b->p : "";
}

/* Empty it, keeping the memory. */
static inline void llm_buf_reset(llm_buf_t *b)
{
    b->len = 0;
    if (b->p != NULL) b->p[0] = '\0';
}

/* Free the memory; the buffer is empty and usable again. */
static inline void llm_buf_finish(llm_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

#endif
