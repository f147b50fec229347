/* mb_beat.c: the worker's heartbeat (see mb_beat.h).  The description is copied once and
 * only read afterwards, so the Redis thread may read it while the loop runs; the one
 * request is out at most once at a time (`out`, loop thread only). */
#include "mb_beat.h"

#include <stdlib.h>
#include <string.h>

#include "mb_log.h"
#include "mb_rq.h"

struct mb_beat {
    struct mb_rq *rq;
    mb_worker_info info; /* strings below */
    char *host, *version, *admin;
    long long next_ms; /* monotonic: the next beat is due */
    int out;           /* a beat is out on the Redis thread */
    mb_status last;    /* how the last one went */
    int failed_said;   /* a failure was logged (once, until a beat succeeds) */
    int current_now;   /* the last beat's answer (Redis thread) */
    int current;       /* every live worker writes this layout (loop thread, from beat_done) */
};

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

mb_beat *mb_beat_new(struct mb_rq *rq, const mb_worker_info *info)
{
    mb_beat *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->rq = rq;
    b->info = *info;
    b->host = dup_or_empty(info->host);
    b->version = dup_or_empty(info->version);
    b->admin = dup_or_empty(info->admin);
    if (b->host == NULL || b->version == NULL || b->admin == NULL) {
        mb_beat_free(b);
        return NULL;
    }
    b->info.host = b->host;
    b->info.version = b->version;
    b->info.admin = b->admin;
    if (b->info.every_ms <= 0)
        b->info.every_ms = MB_BEAT_EVERY_MS;
    if (b->info.ttl_ms <= 0)
        b->info.ttl_ms = 2 * b->info.lease_ms + b->info.every_ms;
    b->last = MB_OK;
    return b;
}

/* Redis thread: reads only the (immutable) description, writes only last. */
static void beat_run(mb_store *st, void *ctx)
{
    mb_beat *b = ctx;
    mb_error e;

    mb_error_clear(&e);
    b->last = mb_store_worker_beat(st, &b->info, &b->current_now, &e);
    if (b->last != MB_OK && !b->failed_said)
        mb_warn("beat", "heartbeat not written (retried every %lld ms): %s", b->info.every_ms,
                e.msg);
}

static void beat_done(void *ctx)
{
    mb_beat *b = ctx;

    b->out = 0;
    b->failed_said = b->last != MB_OK;
    if (b->last == MB_OK)
        b->current = b->current_now;
}

int mb_beat_peers_current(const mb_beat *b)
{
    return b != NULL && b->current;
}

void mb_beat_tick(mb_beat *b, long long now_ms)
{
    if (b == NULL || b->out || now_ms < b->next_ms)
        return;
    b->next_ms = now_ms + b->info.every_ms;
    if (mb_rq_submit(b->rq, beat_run, beat_done, b) == 0)
        b->out = 1;
}

void mb_beat_gone(mb_beat *b, mb_store *st)
{
    mb_error e;

    if (b == NULL || st == NULL)
        return;
    mb_error_clear(&e);
    if (mb_store_worker_gone(st, &e) != MB_OK)
        mb_warn("beat", "heartbeat record not removed (it expires by itself): %s", e.msg);
}

void mb_beat_free(mb_beat *b)
{
    if (b == NULL)
        return;
    free(b->host);
    free(b->version);
    free(b->admin);
    free(b);
}
