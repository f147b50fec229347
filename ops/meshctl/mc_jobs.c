/* mc_jobs.c: meshctl jobs, show and cancel: reading jobs from the store and one write, cancel. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mb_step.h"
#include "mc.h"
#include "mc_kafka.h"

#define SHOW_EVENTS_TIMEOUT_MS 5000

/* ================================================================ jobs */

typedef struct list_ctx {
    const mc_ctx *c;
    const char *status;  /* canonical, "stuck", or NULL */
    const char *account; /* NULL = all */
    long long since_ms;  /* 0 = any age */
    long long now;
    json_t *rows;
} list_ctx;

static int list_one(void *arg, const mb_job *j)
{
    list_ctx *l = arg;
    size_t alen = l->account ? strlen(l->account) : 0;
    json_t *row;

    if (l->account && (strncmp(j->key, l->account, alen) != 0 || j->key[alen] != '/'))
        return 0;
    if (l->since_ms > 0 && j->created_ms < l->now - l->since_ms)
        return 0;
    row = mc_job_summary(l->c, j, l->now);
    if (row == NULL)
        return 0;
    if (l->status && strcmp(l->status, "stuck") == 0 &&
        !json_is_true(json_object_get(row, "stuck"))) {
        json_decref(row);
        return 0;
    }
    json_array_append_new(l->rows, row);
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "created_ms"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "created_ms"));

    return x < y ? 1 : x > y ? -1 : 0;
}

static void sort_rows(json_t *rows)
{
    size_t n = json_array_size(rows);
    json_t **v = calloc(n ? n : 1, sizeof(*v));

    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(rows, i));
    qsort(v, n, sizeof(*v), newest_first);
    json_array_clear(rows);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(rows, v[i]);
    free(v);
}

static void print_table(json_t *rows, long long now)
{
    size_t i;
    json_t *r;

    (void)now;
    printf("%-34s %-28s %-15s %-16s %4s %5s  %s\n", "ORDER", "MESH", "STATUS", "STEP", "ATT",
           "AGE", "ERROR");
    json_array_foreach(rows, i, r) {
        char age[16], status[32];
        const char *err = json_string_value(json_object_get(r, "error_code"));
        int stuck = json_is_true(json_object_get(r, "stuck"));

        snprintf(status, sizeof(status), "%s%s", json_string_value(json_object_get(r, "status")),
                 stuck ? " STUCK" : json_is_true(json_object_get(r, "parked")) ? " (parked)" : "");
        printf("%-34s %-28s %-15s %-16s %4lld %5s  %s\n",
               json_string_value(json_object_get(r, "order_id")),
               json_string_value(json_object_get(r, "mesh")), status,
               json_string_value(json_object_get(r, "step"))[0]
                   ? json_string_value(json_object_get(r, "step"))
                   : "-",
               (long long)json_integer_value(json_object_get(r, "attempts")),
               mc_fmt_age(json_integer_value(json_object_get(r, "age_ms")), age, sizeof(age)),
               err && *err ? err : "-");
        if (stuck)
            printf("%-34s   stuck: %s\n", "",
                   json_string_value(json_object_get(r, "stuck_reason")));
    }
    if (json_array_size(rows) == 0)
        printf("(no jobs match)\n");
}

static void jobs_usage(FILE *f)
{
    fprintf(f,
        "usage: meshctl jobs [--status S] [--account A] [--since DURATION] [--json]\n"
        "\n"
        "Lists jobs, newest first: order id, mesh (<account>/<name>), status, current step,\n"
        "attempts at that step, age, last error code.  A job is flagged STUCK when its step\n"
        "ran past its deadline, its lease holder stopped renewing, or it is due and no worker\n"
        "claims it; the reason is printed under it.\n"
        "\n"
        "  --status S      Accepted|Installing|RollingBack|Running|Failed|Cancelled|\n"
        "                  NeedsAttention (any case), or 'stuck'\n"
        "  --account A     only this account's jobs\n"
        "  --since DUR     only jobs created within DUR (90s, 15m, 2h, 1d)\n"
        "  --json          one JSON array (fields: order_id mesh status step attempts\n"
        "                  created_ms updated_ms age_ms error_code error_msg lease_owner claims\n"
        "                  stuck stuck_reason [parked])\n");
}

int mc_cmd_jobs(mc_ctx *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"status", required_argument, NULL, 's'}, {"account", required_argument, NULL, 'a'},
        {"since", required_argument, NULL, 'S'},  {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    list_ctx l = {c, NULL, NULL, 0, 0, NULL};
    int json = 0, opt;
    mb_store *st;
    mb_error e;
    const char *scan_status;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            l.status = mc_status_canon(optarg);
            if (l.status == NULL)
                return mc_fail(MC_EXIT_USAGE, "--status %s: not a job status (see meshctl "
                               "jobs --help)", optarg);
            break;
        case 'a':
            l.account = optarg;
            break;
        case 'S':
            if (mc_parse_duration(optarg, &l.since_ms) != 0)
                return mc_fail(MC_EXIT_USAGE, "--since %s: want a duration like 90s, 15m, "
                               "2h, 1d", optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            jobs_usage(stdout);
            return MC_EXIT_OK;
        default:
            jobs_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return mc_fail(MC_EXIT_USAGE, "jobs: unexpected argument '%s'", argv[optind]);
    st = mc_store(c);
    if (st == NULL)
        return MC_EXIT_CONFIG;
    l.now = mc_store_now_ms(c);
    l.rows = json_array();
    mb_error_clear(&e);
    scan_status = l.status && strcmp(l.status, "stuck") != 0 ? l.status : NULL;
    if (mb_store_scan(st, scan_status, list_one, &l, &e) != MB_OK) {
        json_decref(l.rows);
        return mc_store_fail("listing jobs", &e);
    }
    sort_rows(l.rows);
    if (json) {
        json_dumpf(l.rows, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        print_table(l.rows, l.now);
    }
    json_decref(l.rows);
    return MC_EXIT_OK;
}

/* ================================================================ show */

static void show_usage(FILE *f)
{
    fprintf(f,
        "usage: meshctl show JOB [--json] [--no-events] [--events-timeout SEC]\n"
        "\n"
        "Prints the job: its order, where it stands (status, step, lease, stuck or not), each\n"
        "step's history (attempts, start and end, last error, what it changed), the job's\n"
        "history lines (replays, rollbacks and who asked), and the status events emitted for\n"
        "it, read back from the status topic (needs KAFKA_BROKERS; --no-events skips them).\n"
        "--json prints one object: {job, order, state, history, events}.\n");
}

/* Steps in saga order with what the state document recorded for each. */
static void print_steps(const json_t *state)
{
    json_t *steps = json_object_get(state, "steps");

    printf("\nsteps:\n");
    for (int i = 0; i < mb_steps_count; i++) {
        json_t *rec = json_object_get(steps, mb_steps[i]->name);
        json_t *le, *ck;
        char t1[32], t2[32];
        char *cks;

        if (rec == NULL) {
            printf("  %d %-16s -\n", i + 1, mb_steps[i]->name);
            continue;
        }
        printf("  %d %-16s %-20s attempts %lld  started %s  ended %s\n", i + 1,
               mb_steps[i]->name, json_string_value(json_object_get(rec, "status"))
                   ? json_string_value(json_object_get(rec, "status"))
                   : "?",
               (long long)json_integer_value(json_object_get(rec, "attempts")),
               mc_fmt_time(json_integer_value(json_object_get(rec, "started_ms")), t1, sizeof(t1)),
               mc_fmt_time(json_integer_value(json_object_get(rec, "ended_ms")), t2, sizeof(t2)));
        le = json_object_get(rec, "last_error");
        if (le)
            printf("      last error: %s: %s\n", json_string_value(json_object_get(le, "code")),
                   json_string_value(json_object_get(le, "message")));
        ck = json_object_get(rec, "ck");
        if (ck && json_object_size(ck) > 0) {
            cks = json_dumps(ck, JSON_COMPACT | JSON_SORT_KEYS);
            printf("      changed/observed: %s\n", cks ? cks : "?");
            free(cks);
        }
    }
}

static void print_order(const json_t *order)
{
    json_t *d = json_object_get(order, "data");
    json_t *mesh = json_object_get(d, "mesh");
    char *nodes = json_dumps(json_object_get(mesh, "control_plane_nodes"), JSON_COMPACT);
    char *sidecar = json_dumps(json_object_get(mesh, "sidecar"), JSON_COMPACT);

    if (d == NULL) {
        printf("order:    (none stored: the message was rejected; see meshctl dlq list)\n");
        return;
    }
    printf("order:    account %s  project %s  region %s\n",
           json_string_value(json_object_get(d, "account_id")),
           json_string_value(json_object_get(d, "project_id")),
           json_string_value(json_object_get(d, "region")));
    printf("mesh:     %s  istio %s  cluster %s\n", json_string_value(json_object_get(mesh, "name")),
           json_string_value(json_object_get(mesh, "istio_version")),
           json_string_value(json_object_get(mesh, "cluster_id")));
    printf("nodes:    %s\n", nodes ? nodes : "-");
    printf("sidecar:  %s\n", sidecar ? sidecar : "-");
    free(nodes);
    free(sidecar);
}

static void print_job(const mc_ctx *c, const mb_job *j, long long now)
{
    char t1[32], t2[32], t3[32], why[300];
    json_t *err = json_object_get(j->state, "error");

    printf("job:      %s  (%s)\n", j->order_id, j->key);
    printf("status:   %s%s  step %s  attempt %d\n", j->status,
           json_is_true(json_object_get(j->state, "parked")) ? " (parked: effects kept)" : "",
           j->step[0] ? j->step : "-", j->attempt);
    printf("created:  %s  updated %s  next run %s\n", mc_fmt_time(j->created_ms, t1, sizeof(t1)),
           mc_fmt_time(j->updated_ms, t2, sizeof(t2)), mc_fmt_time(j->next_run_ms, t3, sizeof(t3)));
    printf("lease:    %s  fence %lld  claims %lld%s\n",
           j->lease_owner[0] ? j->lease_owner : "(none)", j->fence, j->claims,
           j->cancel_requested ? "  CANCEL REQUESTED" : "");
    if (j->lease_owner[0])
        printf("          until %s\n", mc_fmt_time(j->lease_until_ms, t1, sizeof(t1)));
    if (j->error_code[0])
        printf("error:    %s: %s\n", j->error_code, j->error_msg);
    else if (err)
        printf("error:    %s: %s\n", json_string_value(json_object_get(err, "code")),
               json_string_value(json_object_get(err, "message")));
    mc_stuck_reason(c, j, now, why, sizeof(why));
    if (why[0])
        printf("STUCK:    %s\n", why);
    if (j->traceparent[0])
        printf("trace:    %s\n", j->traceparent);
}

static void print_events(const json_t *events, const char *why_none)
{
    size_t i;
    json_t *ev;

    printf("\nstatus events:\n");
    if (events == NULL) {
        printf("  (not read: %s)\n", why_none);
        return;
    }
    json_array_foreach(events, i, ev) {
        json_t *d = json_object_get(ev, "data");
        json_t *er = json_object_get(d, "error");
        printf("  #%lld %s %-11s %-16s %s%s%s\n",
               (long long)json_integer_value(json_object_get(d, "seq")),
               json_string_value(json_object_get(d, "occurred_at")),
               json_string_value(json_object_get(d, "status")),
               json_string_value(json_object_get(d, "step")),
               json_string_value(json_object_get(d, "message")), er ? "  error " : "",
               er ? json_string_value(json_object_get(er, "code")) : "");
    }
    if (json_array_size(events) == 0)
        printf("  (none found on the status topic)\n");
}

int mc_cmd_show(mc_ctx *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"no-events", no_argument, NULL, 'n'},
        {"events-timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, events = 1, opt, rc;
    long tmo_s = SHOW_EVENTS_TIMEOUT_MS / 1000;
    long long now;
    mb_job *j = NULL;
    json_t *hist = NULL, *evs = NULL;
    char why[300] = "--no-events";
    mb_error e;
    size_t i;
    json_t *h;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'j':
            json = 1;
            break;
        case 'n':
            events = 0;
            break;
        case 't':
            if (mc_parse_long(optarg, 1, 3600, &tmo_s) != 0)
                return mc_fail(MC_EXIT_USAGE, "--events-timeout %s: want seconds", optarg);
            break;
        case 'h':
            show_usage(stdout);
            return MC_EXIT_OK;
        default:
            show_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc)
        return mc_fail(MC_EXIT_USAGE, "show: want exactly one JOB (see meshctl show --help)");
    rc = mc_get_job(c, argv[optind], &j);
    if (rc != MC_EXIT_OK)
        return rc;
    now = mc_store_now_ms(c);
    mb_error_clear(&e);
    if (mb_store_history(c->store, j, &hist, &e) != MB_OK) {
        mb_job_free(j);
        return mc_store_fail("reading the job's history", &e);
    }
    if (events)
        evs = mc_kafka_status_events(c, j->key, j->order_id, (int)tmo_s * 1000, why, sizeof(why));
    if (json) {
        json_t *doc = json_pack("{s:o, s:O, s:O, s:O, s:O}", "job", mc_job_summary(c, j, now),
                                "order", j->order ? j->order : json_null(), "state", j->state,
                                "history", hist, "events", evs ? evs : json_null());
        if (doc && !evs)
            json_object_set_new(doc, "events_unavailable", json_string(why));
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(doc);
    } else {
        print_job(c, j, now);
        print_order(j->order);
        print_steps(j->state);
        printf("\nhistory (replays, rollbacks, cancels; who asked):\n");
        json_array_foreach(hist, i, h)
            printf("  %s\n", json_string_value(h));
        if (json_array_size(hist) == 0)
            printf("  (none)\n");
        print_events(evs, why);
    }
    json_decref(hist);
    json_decref(evs);
    mb_job_free(j);
    return MC_EXIT_OK;
}

/* ================================================================ cancel */

static void cancel_usage(FILE *f)
{
    fprintf(f,
        "usage: meshctl cancel JOB\n"
        "\n"
        "Asks the saga to stop: a worker running the job stops at the next step boundary and\n"
        "undoes what the job changed, then reports Cancelled.  An idle job is made due now so\n"
        "a worker picks the cancel up at once.  A job that already ended (Running, Failed,\n"
        "Cancelled, NeedsAttention) is refused: use `meshctl rollback JOB` to undo a Running\n"
        "mesh.\n");
}

int mc_cmd_cancel(mc_ctx *c, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    mb_job *j = NULL;
    int opt, rc, found = 0;
    char status[32];
    char line[400], t[32];
    mb_error e;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            cancel_usage(stdout);
            return MC_EXIT_OK;
        }
        cancel_usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (optind + 1 != argc)
        return mc_fail(MC_EXIT_USAGE, "cancel: want exactly one JOB (see meshctl cancel --help)");
    rc = mc_get_job(c, argv[optind], &j);
    if (rc != MC_EXIT_OK)
        return rc;
    if (mc_status_terminal(j->status)) {
        rc = mc_fail(MC_EXIT_FAILED, "job %s is already %s: nothing to cancel%s", j->order_id,
                     j->status, strcmp(j->status, "Running") == 0
                                    ? " (to undo the mesh: meshctl rollback JOB)"
                                    : "");
        mb_job_free(j);
        return rc;
    }
    mb_error_clear(&e);
    if (mb_store_cancel(c->store, j->order_id, j->key, &found, status, sizeof(status), &e) !=
        MB_OK) {
        mb_job_free(j);
        return mc_store_fail("cancelling", &e);
    }
    if (!found) {
        mb_job_free(j);
        return mc_fail(MC_EXIT_NOTFOUND, "job vanished while cancelling");
    }
    snprintf(line, sizeof(line), "%s cancel requested by %s (status was %s)",
             mc_fmt_time(mc_now_ms(), t, sizeof(t)), c->who, status);
    mc_history_note(c, j, line);
    printf("cancel requested for %s (status %s): a worker stops it at the next step boundary "
           "and undoes its changes; follow with: meshctl watch %s\n", j->order_id, status,
           j->order_id);
    mb_job_free(j);
    return MC_EXIT_OK;
}
