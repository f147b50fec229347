/* mb_relay.c: the outbox relay: status events from Redis to Kafka, in order, none lost.
 *
 * Per shard: hold the shard's relay lease (one relayer per shard keeps per-key order),
 * read a batch from the head of the outbox, produce it, and once every delivery report of
 * the batch is in, trim the longest delivered prefix.  Entries after a failed one are
 * read and sent again (consumers drop a seq seen twice); nothing is trimmed unsent.
 */
#include "mb_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_log.h"
#include "mb_store.h"

typedef struct slot {
    mb_dr_hdr hdr; /* first: the loop dispatches delivery reports on it */
    struct shard *sh;
    size_t idx;
} slot;

typedef struct shard {
    mb_relay *r;
    int id;
    unsigned gen;          /* bumped when the lease is lost: a fresh token */
    char token[240];
    int held;
    mb_outbox_batch batch; /* the batch in flight (n == 0: none) */
    slot *slots;
    signed char *result;   /* per entry: 0 waiting, 1 delivered, -1 failed/not sent */
    size_t waiting;        /* produced, report not in yet */
    long long next_peek_ms;
} shard;

struct mb_relay {
    mb_store *st;
    rd_kafka_t *rk;
    mb_relay_opts o;
    mb_worker_metrics *m;
    int n;
    shard *sh;
    size_t inflight;
};

static void set_token(shard *s)
{
    snprintf(s->token, sizeof(s->token), "%s:%u", s->r->o.worker_id, s->gen);
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

static void batch_done(shard *s)
{
    mb_outbox_batch_clear(&s->batch);
    free(s->slots);
    free(s->result);
    s->slots = NULL;
    s->result = NULL;
    s->waiting = 0;
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
        mb_warn("relay", "shard %d: delivery of %s failed: %s (retried)", s->id,
                s->batch.entries[sl->idx].key, rd_kafka_err2str(m->err));
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

/* Every report of the batch is in: trim the delivered prefix. */
static void finish_batch(shard *s)
{
    size_t ok = 0;
    mb_error e;
    int removed = 0;
    mb_status st;

    while (ok < s->batch.n && s->result[ok] == 1)
        ok++;
    if (ok == 0) {
        batch_done(s);
        return;
    }
    mb_error_clear(&e);
    st = mb_store_outbox_ack(s->r->st, s->id, s->token, ok, &removed, &e);
    if (st != MB_OK) {
        /* The entries stay and are sent again later: a duplicate, never a loss. */
        mb_warn("relay", "shard %d: trim of %zu entries: %s", s->id, ok, e.msg);
    } else if (!removed) {
        lost(s, "at trim");
    }
    batch_done(s);
}

void mb_relay_tick(mb_relay *r, long long now_ms)
{
    const char **tokens = NULL;
    mb_outbox_batch *b = NULL;
    shard **who = NULL;
    size_t k = 0, ns = (size_t)(r->n > 0 ? r->n : 1);
    mb_error e;

    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 && s->waiting == 0)
            finish_batch(s);
    }
    tokens = calloc(ns, sizeof(*tokens));
    b = calloc(ns, sizeof(*b));
    who = calloc(ns, sizeof(*who));
    if (tokens == NULL || b == NULL || who == NULL)
        goto out;
    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 || now_ms < s->next_peek_ms)
            continue;
        tokens[k] = s->token;
        b[k].shard = s->id;
        who[k++] = s;
    }
    if (k == 0)
        goto out;
    mb_error_clear(&e);
    if (mb_store_outbox_peek(r->st, tokens, b, k, r->o.lease_ms, r->o.batch, &e) != MB_OK) {
        mb_debug("relay", "peek: %s", e.msg);
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        shard *s = who[i];
        if (!b[i].held) {
            if (s->held)
                lost(s, "taken by another worker");
            /* Someone else relays it; look again after a while to take over if it dies. */
            s->next_peek_ms = now_ms + r->o.lease_ms / 2;
            continue;
        }
        if (!s->held)
            mb_debug("relay", "shard %d: relay lease taken", s->id);
        s->held = 1;
        if (b[i].n == 0) {
            mb_outbox_batch_clear(&b[i]);
            s->next_peek_ms = now_ms + r->o.idle_ms;
            continue;
        }
        s->batch = b[i];
        memset(&b[i], 0, sizeof(b[i])); /* owned by the shard now */
        s->next_peek_ms = 0;
        produce_batch(s);
    }
out:
    free(tokens);
    free(b);
    free(who);
}

size_t mb_relay_inflight(const mb_relay *r)
{
    return r->inflight;
}

void mb_relay_release(mb_relay *r)
{
    mb_error e;

    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n > 0 && s->waiting == 0)
            finish_batch(s);
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
