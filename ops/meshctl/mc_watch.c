/* mc_watch.c: meshctl watch: live progress of one job (or all) from the status topic. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mb_event.h"
#include "mb_order.h"
#include "mb_sagadef.h"
#include "mc.h"
#include "mc_kafka.h"

#define EXIT_INTERRUPTED 130
#define BAR_WIDTH        20

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void watch_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl watch JOB [--timeout SEC] [--accept-timeout SEC]\n"
            "       meshctl watch --all [--until-done] [--timeout SEC]\n"
            "\n"
            "Follows status events on the status topic from now on (needs KAFKA_BROKERS).  On a\n"
            "terminal: a progress bar per job; piped: one plain line per event.  Watching JOB\n"
            "ends when its saga reaches its end (Running: exit 0) or Failed/Cancelled (exit 1); a\n"
            "JOB that already ended is reported at once.  A JOB not accepted yet (published a\n"
            "moment ago) is waited for, up to --accept-timeout SEC (default 60; exit 4 after).\n"
            "--all follows every job; with --until-done it ends once every job it saw start\n"
            "has ended (exit 0 if all reached their saga's end, 1 if one failed or was\n"
            "cancelled), with a summary line.\n"
            "--timeout SEC: give up after SEC seconds (exit 1).  Ctrl-C stops (exit 130).\n"
            "Escape codes (the redrawn bar) only when stdout is a terminal.\n");
}

/* A saga's done status on the status stream (Running for create). */
static int done_event(const char *status)
{
    for (size_t i = 0; i < mb_saga_defs_count; i++) {
        if (strcmp(status, mb_mesh_status_name(mb_saga_defs[i]->done_event)) == 0)
            return 1;
    }
    return 0;
}

static int terminal_event(const char *status)
{
    return done_event(status) || strcmp(status, "Failed") == 0 || strcmp(status, "Cancelled") == 0;
}

static void show_event(const mb_status_event *ev, const json_t *env, int tty, int all)
{
    const char *occurred =
        json_string_value(json_object_get(json_object_get(env, "data"), "occurred_at"));
    const char *status = mb_mesh_status_name(ev->status);
    char bar[BAR_WIDTH + 1];
    int done = ev->step_index - (done_event(status) ? 0 : 1);

    if (!tty) {
        printf("%s %s seq=%lld %s %s %d/%d %s%s%s\n", occurred ? occurred : "-", ev->order_id,
               ev->seq, status, ev->step, ev->step_index, ev->step_total, ev->message,
               ev->error_code ? " error=" : "", ev->error_code ? ev->error_code : "");
        fflush(stdout);
        return;
    }
    if (done_event(status))
        done = ev->step_total;
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < done * BAR_WIDTH / (ev->step_total > 0 ? ev->step_total : 1) ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    /* One job: redraw its line in place; all jobs: one line per event, bar first. */
    printf("%s[%s] %d/%d %-16s %-11s %s%s%s%s%s", all ? "" : "\r\033[K", bar, ev->step_index,
           ev->step_total, ev->step, status, all ? ev->order_id : "", all ? " " : "", ev->message,
           ev->error_code ? "  error " : "", ev->error_code ? ev->error_code : "");
    if (all || terminal_event(status))
        putchar('\n');
    fflush(stdout);
}

/* --until-done: records the job's status; when every job seen has ended, prints the
 * summary, sets *rc (0: all reached their saga's end) and returns 1. */
static int all_ended(json_t *seen, const char *order_id, const char *status, int *rc)
{
    int ended = 0, ok = 0;
    const char *k;
    json_t *v;

    json_object_set_new(seen, order_id, json_string(status));
    json_object_foreach(seen, k, v)
    {
        const char *st = json_string_value(v);
        if (!terminal_event(st))
            return 0;
        ended++;
        ok += done_event(st);
    }
    printf("%d job(s) ended: %d reached their end, %d failed or cancelled\n", ended, ok,
           ended - ok);
    fflush(stdout);
    *rc = ok == ended ? MC_EXIT_OK : MC_EXIT_FAILED;
    return 1;
}

/* The exit code for a job's final status. */
static int final_rc(const char *status)
{
    return done_event(status) || mc_status_done(status) ? MC_EXIT_OK : MC_EXIT_FAILED;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* The order may have been published a moment ago and not be accepted yet: looks for its
 * job until it appears, bound_ms passes (MC_EXIT_NOTFOUND, with what to look at) or
 * Ctrl-C.  *out is new. */
static int wait_accepted(mc_ctx *c, const char *id, long long bound_ms, int tty, mb_job **out)
{
    mb_store *st = mc_store(c);
    long long until = mc_now_ms() + bound_ms;
    int said = 0;
    mb_error e;

    *out = NULL;
    if (st == NULL)
        return MC_EXIT_CONFIG;
    for (;;) {
        mb_error_clear(&e);
        if (mb_store_get(st, id, out, &e) != MB_OK)
            return mc_store_fail("reading the job", &e);
        if (*out)
            return MC_EXIT_OK;
        if (interrupted)
            return EXIT_INTERRUPTED;
        if (mc_now_ms() >= until)
            return mc_fail(MC_EXIT_NOTFOUND,
                           "no job for order %s after waiting %llds: no worker "
                           "accepted it (are workers running? was it rejected: meshctl dlq "
                           "list? is the order id right: meshctl jobs)",
                           id, bound_ms / 1000);
        if (!said) {
            fprintf(tty ? stderr : stdout, "waiting for order %s to be accepted (up to %llds)\n",
                    id, bound_ms / 1000);
            fflush(stdout);
            said = 1;
        }
        sleep_ms(250);
    }
}

/* watch's options (getopt_long; also the completion's). */
const struct option mc_watch_opts[] = {
    {"all", no_argument, NULL, 'a'},           {"until-done", no_argument, NULL, 'u'},
    {"timeout", required_argument, NULL, 't'}, {"accept-timeout", required_argument, NULL, 'A'},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
};

int mc_cmd_watch(mc_ctx *c, int argc, char **argv)
{
    int all = 0, until_done = 0, opt, rc = MC_EXIT_OK, tty = isatty(STDOUT_FILENO);
    json_t *seen = NULL; /* --until-done: order id -> its last status */
    long timeout_s = 0, accept_s = 60;
    const char *id = NULL;
    mb_job *j = NULL;
    rd_kafka_t *rk;
    char err[600];
    long long deadline;
    struct sigaction sa;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", mc_watch_opts, NULL)) != -1) {
        switch (opt) {
        case 'a': all = 1; break;
        case 'u': until_done = 1; break;
        case 't':
            if (mc_parse_long(optarg, 1, 86400 * 7, &timeout_s) != 0)
                return mc_fail(MC_EXIT_USAGE, "--timeout %s: want seconds", optarg);
            break;
        case 'A':
            if (mc_parse_long(optarg, 0, 86400, &accept_s) != 0)
                return mc_fail(MC_EXIT_USAGE, "--accept-timeout %s: want seconds", optarg);
            break;
        case 'h': watch_usage(stdout); return MC_EXIT_OK;
        default: watch_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (all == (optind < argc) || optind + (all ? 0 : 1) != argc)
        return mc_fail(MC_EXIT_USAGE, "watch: want one JOB or --all (see meshctl watch --help)");
    if (until_done && !all)
        return mc_fail(MC_EXIT_USAGE, "watch: --until-done goes with --all");
    if (!all) {
        id = argv[optind];
        if (mb_order_check_order_id(id) != NULL)
            return mc_fail(MC_EXIT_USAGE,
                           "'%s' is not an order id (letters, digits, ._:-, at "
                           "most 64)",
                           id);
        if (mc_store(c) == NULL) /* fails early when Redis is away */
            return MC_EXIT_CONFIG;
    }
    /* Assign at the end first, then look at the job: nothing falls between the two. */
    rk = mc_kafka_tail(c, mb_conf_str(c->conf, "MESHBUY_STATUS_TOPIC"), err, sizeof(err));
    if (rk == NULL)
        return mc_fail(MC_EXIT_CONFIG, "watch: %s", err);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (!all) {
        long long bound = (long long)accept_s * 1000;
        if (timeout_s && timeout_s < accept_s)
            bound = (long long)timeout_s * 1000;
        rc = wait_accepted(c, id, bound, tty, &j);
        if (rc == MC_EXIT_OK && mc_status_terminal(j->status)) {
            printf("%s is %s%s%s%s%s\n", id, j->status, mc_status_done(j->status) ? "" : " at ",
                   mc_status_done(j->status) ? "" : mc_job_step(j), j->error_code[0] ? ": " : "",
                   j->error_code[0] ? j->error_msg : "");
            rc = final_rc(j->status);
            goto out;
        }
        if (rc != MC_EXIT_OK)
            goto out;
        if (!tty) {
            printf("watching %s (%s, step %s)\n", id, j->status,
                   mc_job_step(j)[0] ? mc_job_step(j) : "-");
            fflush(stdout);
        }
    }
    if (all) { /* scripts wait for this line before they publish */
        printf("watching every job from now on%s\n",
               until_done ? ", until those seen have ended" : "");
        fflush(stdout);
        seen = until_done ? json_object() : NULL;
    }
    deadline = timeout_s ? mc_now_ms() + timeout_s * 1000 : 0;
    for (;;) {
        rd_kafka_message_t *m;
        json_t *env;
        mb_status_event ev;

        if (interrupted) {
            rc = EXIT_INTERRUPTED;
            break;
        }
        if (deadline && mc_now_ms() >= deadline) {
            if (tty)
                putchar('\n');
            rc = mc_fail(MC_EXIT_FAILED, "watch: no terminal status within %lds%s", timeout_s,
                         id ? " (look at it: meshctl show JOB)" : "");
            break;
        }
        m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        env = mb_event_parse(m->payload, m->len, err, sizeof(err));
        rd_kafka_message_destroy(m);
        if (env == NULL || mb_event_view(env, &ev) != 0) {
            json_decref(env);
            continue;
        }
        if (id == NULL || strcmp(ev.order_id, id) == 0) {
            show_event(&ev, env, tty, all);
            if (seen && all_ended(seen, ev.order_id, mb_mesh_status_name(ev.status), &rc)) {
                json_decref(env);
                break;
            }
            if (id && terminal_event(mb_mesh_status_name(ev.status))) {
                rc = final_rc(mb_mesh_status_name(ev.status));
                json_decref(env);
                break;
            }
        }
        json_decref(env);
    }
out:
    json_decref(seen);
    mb_job_free(j);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
