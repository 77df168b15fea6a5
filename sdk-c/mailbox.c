/* mailbox.c - see mailbox.h. */
#include "mailbox.h"

static void on_async(uv_async_t *h)
{
    cbm_mailbox_t *mb = h->data;
    cbm_mail_t *m = cbm_mailbox_take(mb);
    if (m != NULL) mb->deliver(mb, m);
}

int cbm_mailbox_init(cbm_mailbox_t *mb, uv_loop_t *loop, cbm_mailbox_cb deliver, void *data)
{
    int rc;
    mb->head = mb->tail = NULL;
    mb->closed = 0;
    mb->deliver = deliver;
    mb->data = data;
    if ((rc = uv_mutex_init(&mb->mu)) != 0) return rc;
    if ((rc = uv_async_init(loop, &mb->async, on_async)) != 0) {
        uv_mutex_destroy(&mb->mu);
        return rc;
    }
    mb->async.data = mb;
    return 0;
}

void cbm_mailbox_post_list(cbm_mailbox_t *mb, cbm_mail_t *first, cbm_mail_t *last)
{
    last->next = NULL;
    uv_mutex_lock(&mb->mu);
    if (mb->tail != NULL) mb->tail->next = first;
    else mb->head = first;
    mb->tail = last;
    /* Under the lock: a close cannot slip in between. */
    if (!mb->closed) uv_async_send(&mb->async);
    uv_mutex_unlock(&mb->mu);
}

void cbm_mailbox_post(cbm_mailbox_t *mb, cbm_mail_t *m)
{
    cbm_mailbox_post_list(mb, m, m);
}

cbm_mail_t *cbm_mailbox_take(cbm_mailbox_t *mb)
{
    cbm_mail_t *m;
    uv_mutex_lock(&mb->mu);
    m = mb->head;
    mb->head = mb->tail = NULL;
    uv_mutex_unlock(&mb->mu);
    return m;
}

void cbm_mailbox_close(cbm_mailbox_t *mb, uv_close_cb cb)
{
    uv_mutex_lock(&mb->mu);
    mb->closed = 1;
    uv_mutex_unlock(&mb->mu);
    uv_close((uv_handle_t *)&mb->async, cb);
}

void cbm_mailbox_finish(cbm_mailbox_t *mb)
{
    uv_mutex_destroy(&mb->mu);
}
