/* mb_relay.c: the outbox relay: status events from Redis to Kafka, in order, none lost.
 *
 * Per shard: hold the shard's relay lease (one relayer per shard keeps per-key order),
 * read a batch from the head of the outbox, produce it, and once every delivery report of
 * the batch is in, trim the longest delivered prefix.  Entries after a failed one are
 * read and sent again (consumers drop a seq seen twice); nothing is trimmed unsent.
 *
 * While a batch is out its lease is renewed every third of the lease (a read of one entry
 * renews it), and the producer's message.timeout.ms is below the lease, so a batch has all
 * its reports before the lease can pass to another worker even if renewing stops.  When the
 * producer dies (a fatal error) the loop purges it, then mb_relay_producer_lost counts
 * every missing report as a failure, trims what was delivered and gives up every lease.
 *
 * Redis work is a request (run on a store, then completed on the loop): one peek and one
 * renewal at a time, one trim per shard.  A request carries copies of the tokens and the
 * shard's generation: a completion for a generation since given up is dropped.
 */
#include "mb_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_log.h"
#include "mb_store.h"

#define TOKEN_LEN 240

typedef struct slot {
    mb_dr_hdr hdr; /* first: the loop dispatches delivery reports on it */
    struct shard *sh;
    size_t idx;
} slot;

typedef struct shard {
    mb_relay *r;
    int id;
    unsigned gen; /* bumped when the lease is lost: a fresh token */
    char token[TOKEN_LEN];
    int held;
    int busy;              /* a peek or a trim of this shard is out */
    mb_outbox_batch batch; /* the batch in flight (n == 0: none) */
    slot *slots;
    signed char *result; /* per entry: 0 waiting, 1 delivered, -1 failed/not sent */
    size_t waiting;      /* produced, report not in yet */
    int failures_logged; /* the batch's first failed report was logged */
    long long next_peek_ms;
    int woken;            /* woken while busy or holding a batch: look as soon as free */
    long long renewed_ms; /* when the lease was last taken or renewed (request time) */
} shard;

struct mb_relay {
    mb_store *st; /* the synchronous store: shutdown, and requests without a queue */
    mb_submit_fn *submit;
    void *submit_ctx;
    rd_kafka_t *rk; /* NULL while the loop replaces a dead producer */
    mb_relay_opts o;
    mb_worker_metrics *m;
    int n;
    shard *sh;
    size_t inflight;
    int peeking, renewing; /* a peek / a renewal request is out */
};

/* One request: a peek or renewal over k shards, a trim, or a release. */
typedef struct req {
    mb_relay *r;
    long long now_ms;
    size_t k;
    size_t max; /* peek: entries per shard (0 for a renewal: the leases only) */
    shard **who;
    unsigned *gens;
    char (*tokens)[TOKEN_LEN];
    const char **tok;
    mb_outbox_batch *b;
    size_t count; /* trim */
    int removed;
    mb_status st;
    mb_error e;
} req;

static void set_token(shard *s)
{
    snprintf(s->token, sizeof(s->token), "%s:%u", s->r->o.worker_id, s->gen);
}

static void req_free(req *q)
{
    if (q == NULL)
        return;
    if (q->b) {
        for (size_t i = 0; i < q->k; i++)
            mb_outbox_batch_clear(&q->b[i]);
    }
    free(q->who);
    free(q->gens);
    free(q->tokens);
    free(q->tok);
    free(q->b);
    free(q);
}

/* A request over k shards with copies of their tokens and generations.  NULL when out of
 * memory. */
static req *req_new(mb_relay *r, size_t k, long long now_ms)
{
    req *q = calloc(1, sizeof(*q));
    size_t n = k ? k : 1;

    if (q == NULL)
        return NULL;
    q->r = r;
    q->now_ms = now_ms;
    q->who = calloc(n, sizeof(*q->who));
    q->gens = calloc(n, sizeof(*q->gens));
    q->tokens = calloc(n, sizeof(*q->tokens));
    q->tok = calloc(n, sizeof(*q->tok));
    q->b = calloc(n, sizeof(*q->b));
    if (q->who == NULL || q->gens == NULL || q->tokens == NULL || q->tok == NULL || q->b == NULL) {
        req_free(q);
        return NULL;
    }
    return q;
}

static void req_add(req *q, shard *s)
{
    size_t i = q->k++;

    q->who[i] = s;
    q->gens[i] = s->gen;
    memcpy(q->tokens[i], s->token, TOKEN_LEN);
    q->tok[i] = q->tokens[i];
    q->b[i].shard = s->id;
    /* Entries only from a shard this worker holds: another's outbox would be read for
     * nothing.  A lease taken now is read at the next round (peek_done). */
    q->b[i].lease_only = !s->held;
}

/* Runs fn then done, through the loop's queue when there is one.  -1: not queued (done
 * will not run). */
static int submit(mb_relay *r, mb_req_fn *fn, mb_req_done *done, req *q)
{
    if (r->submit)
        return r->submit(r->submit_ctx, fn, done, q);
    fn(r->st, q);
    done(q);
    return 0;
}

mb_relay *mb_relay_new(mb_store *st, rd_kafka_t *producer, const mb_relay_opts *o,
                       mb_worker_metrics *m)
{
    mb_relay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->st = st;
    r->rk = producer;
    r->o = *o;
    r->m = m;
    r->n = mb_store_shards(st);
    r->sh = calloc((size_t)r->n, sizeof(*r->sh));
    if (r->sh == NULL) {
        free(r);
        return NULL;
    }
    for (int i = 0; i < r->n; i++) {
        r->sh[i].r = r;
        r->sh[i].id = i;
        /* A restarted worker must not reuse a token its previous life may still hold. */
        r->sh[i].gen = (unsigned)(mb_loop_now_ms() & 0xffffff);
        set_token(&r->sh[i]);
    }
    return r;
}

void mb_relay_set_submit(mb_relay *r, mb_submit_fn *fn, void *ctx)
{
    r->submit = fn;
    r->submit_ctx = ctx;
}

static void batch_done(shard *s)
{
    mb_outbox_batch_clear(&s->batch);
    free(s->slots);
    free(s->result);
    s->slots = NULL;
    s->result = NULL;
    s->waiting = 0;
    s->failures_logged = 0;
}

static void lost(shard *s, const char *why)
{
    if (s->held)
        mb_info("relay", "shard %d: relay lease lost (%s)", s->id, why);
    s->held = 0;
    s->gen++;
    set_token(s);
}

static void on_dr(mb_dr_hdr *h, const rd_kafka_message_t *m)
{
    slot *sl = (slot *)h;
    shard *s = sl->sh;

    if (m->err) {
        s->result[sl->idx] = -1;
        s->r->m->relay_failures++;
        /* One line per batch: a purge fails hundreds of entries at once. */
        if (!s->failures_logged)
            mb_warn("relay", "shard %d: delivery of %s failed: %s (resent from there)", s->id,
                    s->batch.entries[sl->idx].key, rd_kafka_err2str(m->err));
        s->failures_logged = 1;
    } else {
        s->result[sl->idx] = 1;
        s->r->m->events_relayed++;
    }
    s->waiting--;
    s->r->inflight--;
}

/* Produces the batch of s; entries that cannot be queued are marked failed, and so is
 * everything after the first of them (never send a later entry of a key before it). */
static void produce_batch(shard *s)
{
    mb_relay *r = s->r;
    int stop = 0;

    s->slots = calloc(s->batch.n, sizeof(*s->slots));
    s->result = calloc(s->batch.n, sizeof(*s->result));
    if (s->slots == NULL || s->result == NULL) {
        batch_done(s);
        return;
    }
    for (size_t i = 0; i < s->batch.n; i++) {
        const mb_outbox_entry *e = &s->batch.entries[i];
        rd_kafka_resp_err_t err;

        s->slots[i].hdr.on_dr = on_dr;
        s->slots[i].sh = s;
        s->slots[i].idx = i;
        if (stop) {
            s->result[i] = -1;
            continue;
        }
        /* No copy: the batch outlives every delivery report of its entries.  The
         * headers are taken over by a successful produce; no traceparent header
         * at all when the order had none (never an empty one). */
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
        rd_kafka_header_add(hdrs, "content-type", -1, "application/cloudevents+json", -1);
        if (e->traceparent[0])
            rd_kafka_header_add(hdrs, "traceparent", -1, e->traceparent, -1);
        err = rd_kafka_producev(
            r->rk, RD_KAFKA_V_TOPIC(r->o.topic), RD_KAFKA_V_KEY(e->key, strlen(e->key)),
            RD_KAFKA_V_VALUE((void *)e->event, e->event_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(&s->slots[i]), RD_KAFKA_V_END);
        if (err)
            rd_kafka_headers_destroy(hdrs);
        if (err) {
            mb_warn("relay", "shard %d: produce: %s (retried)", s->id, rd_kafka_err2str(err));
            s->result[i] = -1;
            stop = 1;
            continue;
        }
        s->waiting++;
        r->inflight++;
    }
}

/* ================================================================ trim */

static void ack_fn(mb_store *st, void *ctx)
{
    req *q = ctx;

    mb_error_clear(&q->e);
    q->st = mb_store_outbox_ack(st, q->who[0]->id, q->tok[0], q->count, &q->removed, &q->e);
}

static void ack_done(void *ctx)
{
    req *q = ctx;
    shard *s = q->who[0];

    if (q->st != MB_OK) {
        /* The entries stay and are sent again later: a duplicate, never a loss. */
        mb_warn("relay", "shard %d: trim of %zu entries: %s", s->id, q->count, q->e.msg);
    } else if (!q->removed && s->gen == q->gens[0]) {
        lost(s, "at trim");
    }
    s->busy = 0;
    batch_done(s);
    req_free(q);
}

/* Every report of the batch is in: trim the delivered prefix. */
static void finish_batch(shard *s, long long now_ms)
{
    size_t ok = 0;
    req *q;

    if (s->busy)
        return;
    while (ok < s->batch.n && s->result[ok] == 1)
        ok++;
    if (ok == 0) {
        batch_done(s);
        return;
    }
    q = req_new(s->r, 1, now_ms);
    if (q == NULL)
        return; /* tried again next tick */
    req_add(q, s);
    q->count = ok;
    s->busy = 1;
    if (submit(s->r, ack_fn, ack_done, q) < 0) {
        s->busy = 0;
        req_free(q);
    }
}

/* ================================================================ peek, renew */

static void peek_fn(mb_store *st, void *ctx)
{
    req *q = ctx;

    mb_error_clear(&q->e);
    q->st = mb_store_outbox_peek(st, q->tok, q->b, q->k, q->r->o.lease_ms, q->max, &q->e);
}

/* Renewal reply: the lease of each shard with a batch out is renewed, or lost. */
static void renew_done(void *ctx)
{
    req *q = ctx;
    mb_relay *r = q->r;

    r->renewing = 0;
    if (q->st != MB_OK)
        mb_debug("relay", "renew: %s", q->e.msg);
    for (size_t i = 0; q->st == MB_OK && i < q->k; i++) {
        shard *s = q->who[i];
        if (s->gen != q->gens[i])
            continue; /* given up meanwhile */
        if (q->b[i].held)
            s->renewed_ms = q->now_ms;
        else
            lost(s, "taken by another worker while a batch was out");
    }
    req_free(q);
}

/* Renews the leases of shards with a batch out, every third of the lease, in one round trip
 * (a peek of the leases only: it takes or renews like any peek). */
static void renew_busy(mb_relay *r, long long now_ms)
{
    size_t k = 0;
    req *q;

    if (r->renewing)
        return;
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0 || !s->held)
            continue;
        if (now_ms - s->renewed_ms > r->o.lease_ms) {
            /* Renewing failed for a whole lease: another worker may relay it now.  The
             * reports still come (message.timeout.ms is shorter); the trim will be refused. */
            lost(s, "not renewed within the lease while a batch was out");
            continue;
        }
        if (now_ms - s->renewed_ms >= r->o.lease_ms / 3)
            k++;
    }
    if (k == 0)
        return;
    q = req_new(r, k, now_ms);
    if (q == NULL)
        return;
    q->max = 0; /* the leases only */
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 && s->held && now_ms - s->renewed_ms >= r->o.lease_ms / 3)
            req_add(q, s);
    }
    r->renewing = 1;
    if (submit(r, peek_fn, renew_done, q) < 0) {
        r->renewing = 0;
        req_free(q);
    }
}

static void peek_done(void *ctx)
{
    req *q = ctx;
    mb_relay *r = q->r;

    r->peeking = 0;
    for (size_t i = 0; i < q->k; i++)
        q->who[i]->busy = 0;
    if (q->st != MB_OK) {
        mb_debug("relay", "peek: %s", q->e.msg);
        req_free(q);
        return;
    }
    for (size_t i = 0; i < q->k; i++) {
        shard *s = q->who[i];
        if (s->gen != q->gens[i] || r->rk == NULL)
            continue; /* given up meanwhile, or no producer now: read again later */
        if (!q->b[i].held) {
            if (s->held)
                lost(s, "taken by another worker");
            /* Someone else relays it; look again once its lease could have run out, to take
             * over if it died (new events wake us sooner: mb_relay_wake). */
            s->next_peek_ms = q->now_ms + r->o.lease_ms;
            continue;
        }
        if (!s->held)
            mb_debug("relay", "shard %d: relay lease taken", s->id);
        s->held = 1;
        s->renewed_ms = q->now_ms;
        if (q->b[i].n == 0) {
            s->next_peek_ms = s->woken || q->b[i].lease_only ? 0 : q->now_ms + r->o.idle_ms;
            s->woken = 0;
            continue;
        }
        s->batch = q->b[i];
        memset(&q->b[i], 0, sizeof(q->b[i])); /* owned by the shard now */
        s->next_peek_ms = 0;
        produce_batch(s);
    }
    req_free(q);
}

void mb_relay_tick(mb_relay *r, long long now_ms)
{
    size_t k = 0;
    req *q;

    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 && s->waiting == 0)
            finish_batch(s, now_ms);
    }
    if (r->rk == NULL)
        return; /* no producer: nothing to send with, no lease to take */
    renew_busy(r, now_ms);
    if (r->peeking)
        return;
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0 && !s->busy && now_ms >= s->next_peek_ms)
            k++;
    }
    if (k == 0)
        return;
    q = req_new(r, k, now_ms);
    if (q == NULL)
        return;
    q->max = r->o.batch;
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0 && !s->busy && now_ms >= s->next_peek_ms) {
            req_add(q, s);
            s->busy = 1;
        }
    }
    r->peeking = 1;
    if (submit(r, peek_fn, peek_done, q) < 0) {
        r->peeking = 0;
        for (size_t i = 0; i < q->k; i++)
            q->who[i]->busy = 0;
        req_free(q);
    }
}

size_t mb_relay_inflight(const mb_relay *r)
{
    return r->inflight;
}

void mb_relay_set_producer(mb_relay *r, rd_kafka_t *producer)
{
    r->rk = producer;
}

/* ================================================================ giving up */

static void release_fn(mb_store *st, void *ctx)
{
    req *q = ctx;

    mb_error_clear(&q->e);
    q->st = mb_store_outbox_release(st, q->who[0]->id, q->tok[0], &q->e);
}

static void release_done(void *ctx)
{
    req *q = ctx;

    if (q->st != MB_OK)
        mb_debug("relay", "shard %d: release: %s", q->who[0]->id, q->e.msg);
    req_free(q);
}

void mb_relay_producer_lost(mb_relay *r)
{
    size_t missing = 0;
    long long now = mb_loop_now_ms();

    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0 || s->result == NULL)
            continue;
        /* Reports that never came: unknown outcome, so sent again (at-least-once). */
        for (size_t k = 0; k < s->batch.n; k++) {
            if (s->result[k] == 0) {
                s->result[k] = -1;
                missing++;
            }
        }
        r->inflight -= s->waiting;
        s->waiting = 0;
        finish_batch(s, now); /* the trim goes before the release below */
    }
    if (missing)
        mb_warn("relay", "%zu status event(s) without a delivery report: sent again", missing);
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        req *q;
        if (s->held && (q = req_new(r, 1, now)) != NULL) {
            req_add(q, s);
            if (submit(r, release_fn, release_done, q) < 0)
                req_free(q);
        }
        /* A fresh token: nothing of the old producer's life can pass for this one. */
        s->held = 0;
        s->gen++;
        set_token(s);
        s->next_peek_ms = 0;
    }
}

void mb_relay_release(mb_relay *r)
{
    mb_error e;

    /* Shutdown: the loop has stopped (and its Redis queue with it): synchronous calls. */
    r->submit = NULL;
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 && s->waiting == 0 && !s->busy)
            finish_batch(s, mb_loop_now_ms());
        if (!s->held)
            continue;
        mb_error_clear(&e);
        if (mb_store_outbox_release(r->st, s->id, s->token, &e) != MB_OK)
            mb_debug("relay", "shard %d: release: %s", s->id, e.msg);
        s->held = 0;
    }
}

void mb_relay_free(mb_relay *r)
{
    if (r == NULL)
        return;
    /* Batches with reports outstanding are freed only after the producer is gone (the
     * loop destroys it first), so no report can point into freed memory. */
    for (int i = 0; i < r->n; i++)
        batch_done(&r->sh[i]);
    free(r->sh);
    free(r);
}

void mb_relay_wake(mb_relay *r, int id)
{
    shard *s;

    if (id < 0 || id >= r->n)
        return;
    s = &r->sh[id];
    /* A peek out now may have read the outbox before the new events: look again after it. */
    if (s->busy)
        s->woken = 1;
    else if (s->batch.n == 0)
        s->next_peek_ms = 0;
}

void mb_relay_wake_own(mb_relay *r, int id)
{
    if (id >= 0 && id < r->n && r->sh[id].held)
        mb_relay_wake(r, id);
}

int mb_relay_held(const mb_relay *r)
{
    int n = 0;

    for (int i = 0; i < r->n; i++)
        n += r->sh[i].held != 0;
    return n;
}
