/*
 * mailbox.h - hand work from any thread to a libuv loop: a locked list of
 * mail and a uv_async that delivers it, in order, on the loop thread.
 *
 * The one way the house crosses into a loop (issue 10: it was written three
 * times): the committer's finished requests, the engine's inbox of calls,
 * the server's notes of new tasks. Mail is intrusive: embed a cbm_mail_t in
 * your struct and get back to it with CBM_MAIL_OWNER.
 *
 * Threads: cbm_mailbox_post from any thread, also after the mailbox was
 * closed (the mail then waits for cbm_mailbox_take); everything else on the
 * loop thread (init before the loop runs).
 */
#ifndef CBM_MAILBOX_H
#define CBM_MAILBOX_H

#include <stddef.h>
#include <uv.h>

typedef struct cbm_mail {
    struct cbm_mail *next;
} cbm_mail_t;

#define CBM_MAIL_OWNER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct cbm_mailbox cbm_mailbox_t;

/* Loop thread: the mail posted since the last delivery, oldest first (a
 * NULL-terminated list through next; the callee owns it). */
typedef void (*cbm_mailbox_cb)(cbm_mailbox_t *mb, cbm_mail_t *mail);

struct cbm_mailbox {
    uv_async_t async;
    uv_mutex_t mu;
    cbm_mail_t *head, *tail; /* guarded by mu */
    int closed;              /* guarded by mu */
    cbm_mailbox_cb deliver;
    void *data;              /* for the owner */
};

/* 0, or a libuv error (nothing to clean up then). */
int cbm_mailbox_init(cbm_mailbox_t *mb, uv_loop_t *loop, cbm_mailbox_cb deliver, void *data);

/* Any thread. After cbm_mailbox_close the mail is kept, not delivered. */
void cbm_mailbox_post(cbm_mailbox_t *mb, cbm_mail_t *m);

/* Post a list already linked through next, first to last, in one go. */
void cbm_mailbox_post_list(cbm_mailbox_t *mb, cbm_mail_t *first, cbm_mail_t *last);

/* All mail waiting now (NULL if none), oldest first; the caller owns it. */
cbm_mail_t *cbm_mailbox_take(cbm_mailbox_t *mb);

/* Stop delivering and close the async handle (cb as uv_close's; the handle
 * is &mb->async). Mail posted afterwards waits for cbm_mailbox_take. */
void cbm_mailbox_close(cbm_mailbox_t *mb, uv_close_cb cb);

/* After the close callback ran: free the lock. */
void cbm_mailbox_finish(cbm_mailbox_t *mb);

#endif
