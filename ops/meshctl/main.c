/* main.c: meshctl, the SREs' CLI for meshbuy jobs: list, show, replay, roll back, cancel,
 * the DLQ, and live progress.  Dispatches to one mc_cmd_* per command. */
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mb_conf.h"
#include "mb_log.h"
#include "mb_sagadef.h"
#include "mb_version.h"
#include "mc.h"

static const mb_conf_key CONF_KEYS[] = {
    {"REDIS_URL", MB_CONF_STR, "redis://127.0.0.1:6379", 0, 0, NULL,
     "the job store (redis://[:password@]host:port[/db] or unix:///path)"},
    {"MESHBUY_SHARDS", MB_CONF_INT, "16", 1, 1024, NULL, "store shards; must match the workers'"},
    {"KAFKA_BROKERS", MB_CONF_STR, "", 0, 0, NULL,
     "Kafka bootstrap servers (dlq show/redrive, watch, status events in show)"},
    {"MESHBUY_ORDERS_TOPIC", MB_CONF_STR, "mesh.orders", 0, 0, NULL, "where redrive publishes"},
    {"MESHBUY_STATUS_TOPIC", MB_CONF_STR, "mesh.status", 0, 0, NULL, "status events (watch, show)"},
    {"MESHBUY_DLQ_TOPIC", MB_CONF_STR, "mesh.orders.dlq", 0, 0, NULL, "rejected messages"},
    {"MESHBUY_CCE_URL", MB_CONF_STR, NULL, 0, 0, NULL, "CCE API base (replay --dry-run)"},
    {"MESHBUY_VPC_URL", MB_CONF_STR, NULL, 0, 0, NULL, "VPC API base (replay --dry-run)"},
    {"MESHBUY_K8S_URL", MB_CONF_STR, NULL, 0, 0, NULL,
     "Kubernetes API base template with {cluster_id} (replay --dry-run)"},
    {"MESHBUY_AK", MB_CONF_STR, NULL, 0, 0, NULL, "access key for AK/SK signing"},
    {"MESHBUY_SK", MB_CONF_SECRET, NULL, 0, 0, NULL, "secret key (or MESHBUY_SK_FILE)"},
    {"MESHBUY_CA_FILE", MB_CONF_STR, NULL, 0, 0, NULL, "CA bundle for the cloud APIs"},
    {"MESHBUY_CATALOG", MB_CONF_STR, NULL, 0, 0, NULL,
     "Istio catalog file, as the workers' (replay --dry-run of validate)"},
    {"MESHBUY_HTTP_TIMEOUT_MS", MB_CONF_INT, "15000", 100, 600000, NULL,
     "bound on each cloud read of replay --dry-run"},
    MB_SAGA_CONF_DEADLINES, /* as the workers' (a step past its deadline shows as stuck) */
    {"MESHBUY_LOG_LEVEL", MB_CONF_ENUM, "warn", 0, 0, "debug|info|warn|error|off",
     "level of the JSON log lines on stderr"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const DLQ_SUBS[] = {"list", "show", "redrive", NULL};
static const char *const COMPLETION_SUBS[] = {"bash", NULL};

const mc_command mc_commands[] = {
    {"jobs", mc_cmd_jobs, mc_jobs_opts, NULL, MC_OPERAND_NONE, 0,
     "[--status S] [--account A] [--since DUR]   list jobs of every saga; stuck flagged\n"},
    {"show", mc_cmd_show, mc_show_opts, NULL, MC_OPERAND_JOB, 0,
     "JOB... [--no-events]           order, steps, history, replays, status events\n"},
    {"replay", mc_cmd_replay, mc_replay_opts, NULL, MC_OPERAND_JOB, 0,
     "JOB [--from-step STEP] [--dry-run] [--force] [--reason R]  re-run a job\n"
     "  replay --status failed --reason R [--error-code C] [--limit N] [--rate R]\n"
     "         [--yes | --dry-run]          bulk replay (after a cloud outage)\n"},
    {"rollback", mc_cmd_rollback, mc_rollback_opts, NULL, MC_OPERAND_JOB, 0,
     "JOB                        compensate now: undo everything the job did\n"},
    {"cancel", mc_cmd_cancel, mc_cancel_opts, NULL, MC_OPERAND_JOB, 0,
     "JOB                          stop at the next step boundary and compensate\n"},
    {"dlq", mc_cmd_dlq, mc_dlq_opts, DLQ_SUBS, MC_OPERAND_NONE, 0,
     "list [--limit N]                messages the workers rejected, with reasons\n"
     "  dlq show ID                         one record and its message bytes\n"
     "  dlq redrive ID [--edit FILE]        publish it (or a corrected order) to mesh.orders\n"},
    {"watch", mc_cmd_watch, mc_watch_opts, NULL, MC_OPERAND_JOB, 0,
     "JOB|--all [--timeout SEC]     live progress from mesh.status (waits for a JOB\n"
     "                                      not accepted yet; --all --until-done ends\n"
     "                                      when the jobs seen have ended)\n"},
    {"workers", mc_cmd_workers, mc_workers_opts, NULL, MC_OPERAND_WORKER, 0,
     "[WORKER...] [--all]         live workers, the jobs and relay shards each holds,\n"
     "                                      lease time left; late and gone ones flagged\n"},
    {"outbox", mc_cmd_outbox, mc_outbox_opts, NULL, MC_OPERAND_NONE, 0,
     "[--all]                      status events waiting per shard, oldest age, relay\n"
     "                                      lease holder\n"},
    {"completion", mc_cmd_completion, mc_completion_opts, COMPLETION_SUBS, MC_OPERAND_NONE, 1,
     "bash                     a bash completion script:\n"
     "                                      source <(meshctl completion bash)\n"},
};
const size_t mc_commands_count = sizeof(mc_commands) / sizeof(mc_commands[0]);

static void usage(FILE *f)
{
    fprintf(f, "usage: meshctl COMMAND [options]     (meshctl COMMAND --help for each)\n"
               "       meshctl --help | --version\n"
               "\n"
               "See and fix meshbuy jobs without reading Redis or writing Kafka messages by hand.\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < mc_commands_count; i++)
        fprintf(f, "  %s %s", mc_commands[i].name, mc_commands[i].help);
    fprintf(f,
            "\n"
            "Listings and show take -o table|wide|json|yaml|name (--json = -o json) and\n"
            "--no-headers; replay --dry-run takes -o json|yaml.\n"
            "\n"
            "JOB is the order id (billing's order_id).  Every change meshctl makes is recorded in\n"
            "the job's history with who asked ($USER@host).\n"
            "\n"
            "exit codes:\n"
            "  0  ok\n"
            "  1  the operation failed or was refused (a worker holds the job's lease, the job is\n"
            "     in a state that does not allow it, a watched job ended Failed, a timeout)\n"
            "  2  usage: bad command line, nothing was done\n"
            "  3  configuration or connection: bad environment, Redis/Kafka/cloud unreachable\n"
            "  4  not found: no such job, DLQ record or worker\n"
            "  130  watch interrupted (Ctrl-C)\n"
            "\n"
            "environment:\n");
    mb_conf_help(f, CONF_KEYS);
    fprintf(f, "  KAFKA_<X>          any librdkafka property <x> (KAFKA_SECURITY_PROTOCOL=ssl)\n");
}

static void who_am_i(char *buf, size_t len)
{
    const char *user = getenv("SUDO_USER");
    char host[128] = "localhost";

    if (user == NULL || *user == '\0')
        user = getenv("USER");
    if (user == NULL || *user == '\0') {
        struct passwd *pw = getpwuid(geteuid());
        user = pw ? pw->pw_name : "unknown";
    }
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, len, "%s@%s", user, host);
}

int main(int argc, char **argv)
{
    char err[512];
    mc_ctx c;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    memset(&c, 0, sizeof(c));
    if (argc < 2) {
        usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (mb_version_flag(argc, argv, "meshctl"))
        return MC_EXIT_OK;
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return MC_EXIT_OK;
    }
    for (size_t i = 0; i < mc_commands_count; i++) {
        if (strcmp(argv[1], mc_commands[i].name) != 0)
            continue;
        if (mc_commands[i].no_store)
            return mc_commands[i].fn(&c, argc - 1, argv + 1);
        if (mb_conf_load(&c.conf, CONF_KEYS, err, sizeof(err)) != 0)
            return mc_fail(MC_EXIT_CONFIG, "configuration: %s (see meshctl --help)", err);
        setenv("MESHBUY_LOG_LEVEL", mb_conf_str(c.conf, "MESHBUY_LOG_LEVEL"), 1);
        mb_log_init("meshctl");
        who_am_i(c.who, sizeof(c.who));
        rc = mc_commands[i].fn(&c, argc - 1, argv + 1);
        mb_store_free(c.store);
        mb_conf_free(c.conf);
        return rc;
    }
    return mc_fail(MC_EXIT_USAGE, "unknown command '%s' (see meshctl --help)", argv[1]);
}
