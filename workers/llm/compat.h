/*
 * compat.h - the two worker SDK calls the LLM worker needs, for a tree where
 * they have not landed yet: cbm_step_on_cancel (abort the HTTP transfer
 * when the server cancels the task) and cbm_step_fail_after (a retryable
 * failure carrying a Retry-After). meson defines CBM_LLM_HAVE_CANCEL when
 * cerebelum.h declares them; without them a cancelled call runs to its end
 * and the Retry-After is only named in the message.
 */
#ifndef CBM_LLM_COMPAT_H
#define CBM_LLM_COMPAT_H

#include <stdint.h>
#include <stdio.h>

#include "cerebelum/cerebelum.h"

#ifndef CBM_LLM_HAVE_CANCEL
typedef void (*cbm_cancel_fn)(void *arg);

static inline void cbm_step_on_cancel(cbm_step_out_t *out, cbm_cancel_fn fn, void *arg)
{
    (void)out;
    (void)fn;
    (void)arg;
}

static inline int cbm_step_fail_after(cbm_step_out_t *out, const char *kind, const char *message,
                                      int64_t retry_after_ms)
{
    char m[600];
    snprintf(m, sizeof(m), "%s (retry after %lld ms)", message, (long long)retry_after_ms);
    return cbm_step_fail(out, kind, m, true);
}
#endif

#endif
