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
    int failures_logged;   /* the batch's first failed report was logged */
    long long next_peek_ms;
    long long renewed_ms;  /* when the lease was last taken or renewed (request time) */
} shard;

struct mb_relay {
    mb_store *st;
    rd_kafka_t *rk; /* NULL while the loop replaces a dead producer */
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
        /* No copy: the batch outlives every delivery report of its entries. */
        err = rd_kafka_producev(
            r->rk, RD_KAFKA_V_TOPIC(r->o.topic), RD_KAFKA_V_KEY(e->key, strlen(e->key)),
            RD_KAFKA_V_VALUE((void *)e->event, e->event_len),
            RD_KAFKA_V_HEADER("traceparent", e->traceparent,
                              e->traceparent[0] ? (ssize_t)strlen(e->traceparent) : 0),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
            RD_KAFKA_V_OPAQUE(&s->slots[i]), RD_KAFKA_V_END);
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

/* Renews the leases of shards with a batch out, every third of the lease, in one round trip
 * (a peek of one entry, dropped: it takes or renews like any peek). */
static void renew_busy(mb_relay *r, long long now_ms)
{
    const char *tokens[MB_STORE_MAX_SHARDS];
    mb_outbox_batch b[MB_STORE_MAX_SHARDS];
    shard *who[MB_STORE_MAX_SHARDS];
    size_t k = 0;
    mb_error e;

    for (int i = 0; i < r->n && k < MB_STORE_MAX_SHARDS; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0 || !s->held)
            continue;
        if (now_ms - s->renewed_ms > r->o.lease_ms) {
            /* Renewing failed for a whole lease: another worker may relay it now.  The
             * reports still come (message.timeout.ms is shorter); the trim will be refused. */
            lost(s, "not renewed within the lease while a batch was out");
            continue;
        }
        if (now_ms - s->renewed_ms < r->o.lease_ms / 3)
            continue;
        memset(&b[k], 0, sizeof(b[k]));
        b[k].shard = s->id;
        tokens[k] = s->token;
        who[k++] = s;
    }
    if (k == 0)
        return;
    mb_error_clear(&e);
    if (mb_store_outbox_peek(r->st, tokens, b, k, r->o.lease_ms, 1, &e) != MB_OK) {
        mb_debug("relay", "renew: %s", e.msg);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        if (b[i].held)
            who[i]->renewed_ms = now_ms;
        else
            lost(who[i], "taken by another worker while a batch was out");
        mb_outbox_batch_clear(&b[i]);
    }
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
    if (r->rk == NULL)
        return; /* no producer: nothing to send with, no lease to take */
    renew_busy(r, now_ms);
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
        s->renewed_ms = now_ms;
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

void mb_relay_set_producer(mb_relay *r, rd_kafka_t *producer)
{
    r->rk = producer;
}

void mb_relay_producer_lost(mb_relay *r)
{
    size_t missing = 0;

    for (int i = 0; i < r->n; i++) {
        shard *s = &r->sh[i];
        if (s->batch.n == 0)
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
    }
    if (missing)
        mb_warn("relay", "%zu status event(s) without a delivery report: sent again", missing);
    mb_relay_release(r);
    for (int i = 0; i < r->n; i++) {
        /* A fresh token: nothing of the old producer's life can pass for this one. */
        r->sh[i].gen++;
        set_token(&r->sh[i]);
        r->sh[i].next_peek_ms = 0;
    }
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
