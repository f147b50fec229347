/* main.c: meshworker, the meshbuy worker daemon: flags, configuration, the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mb_conf.h"
#include "mb_engine.h"
#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_loop.h"
#include "mb_redis.h"
#include "mb_version.h"

/* jemalloc's options, read before MALLOC_CONF (which still overrides them); unused when
 * linked with glibc's malloc.  One arena: the loop thread makes and frees nearly
 * everything, and with the four arenas a core jemalloc gives by default the Redis and
 * librdkafka threads' allocations land in others, each with partly used pages of its
 * own.  Peak RSS with 10,000 sagas in flight 96-100 -> 86-95 MB, of the 2,000-order
 * throughput run 66-68 -> 58-62 MB, CPU per saga unchanged (ops/bench/README.md).
 * Pages freed and unused for 50 ms go back to the kernel (jemalloc keeps them 10 s): a
 * backlog's first second claims thousands of jobs and puts thousands of calls out, and
 * what that burst freed stayed resident.  With 3,072 calls on the wire, 10,000 sagas in
 * flight peak at 60-63.7 MB instead of 64.6-68, for 13% more CPU a saga in the
 * 2,000-order run (the purging); 20 ms took 59-62 MB for a quarter more, 100 ms 59-65 MB,
 * a background purging thread (20 ms) 62-65 MB. */
const char *malloc_conf = "narenas:1,dirty_decay_ms:50";

/* Exit codes (documented in --help). */
enum { EXIT_OK = 0, EXIT_FORCED = 1, EXIT_USAGE = 2, EXIT_CONFIG = 3, EXIT_FATAL = 4 };

static void usage(FILE *f)
{
    fprintf(f, "usage: meshworker [--check] [--help] [--version]\n"
               "\n"
               "The meshbuy worker: consumes orders, runs the create-mesh saga, publishes status.\n"
               "Configured from the environment:\n\n");
    mb_conf_help(f, mb_loop_conf_keys);
    fprintf(f, "\n"
               "  --check   validate the configuration, print it (secrets masked), exit\n"
               "  -h, --help  this text\n"
               "  --version   print the version and exit\n"
               "\n"
               "Exit codes: 0 drained after SIGTERM/SIGINT (or --check passed), 1 forced by a\n"
               "second signal, 2 usage (bad command line), 3 invalid configuration, 4 fatal\n"
               "runtime error (Redis refused credentials, shard count mismatch, ...).\n");
}

/* Thousands of sagas in flight keep many cloud connections open: the soft
 * limit (often 1024) would refuse sockets long before the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Checks beyond types and bounds: the settings that are parsed elsewhere. */
static int check_more(const mb_conf *c, char *err, size_t errlen)
{
    mb_redis_url u;
    rd_kafka_conf_t *kc;
    int rc;

    rc = mb_redis_url_parse(mb_conf_str(c, "REDIS_URL"), &u, err, errlen);
    memset(&u, 0, sizeof(u));
    if (rc < 0)
        return -1;
    if (mb_engine_check_conf(c, err, errlen) < 0)
        return -1;
    kc = mb_kafka_conf_new("meshworker-check", err, errlen);
    if (kc == NULL)
        return -1;
    rd_kafka_conf_destroy(kc);
    return 0;
}

int main(int argc, char **argv)
{
    int check = 0;
    char err[512];
    mb_conf *conf = NULL;
    mb_loop *loop;
    mb_engine *engine;
    int rc;

    if (mb_version_flag(argc, argv, "meshworker"))
        return EXIT_OK;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else {
            fprintf(stderr, "meshworker: unknown argument: %s (see meshworker --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    raise_fd_limit();
    /* A write to a closed socket (Redis gone) must be an error, not death. */
    signal(SIGPIPE, SIG_IGN);
    if (mb_log_init("meshworker") < 0) {
        fprintf(stderr, "meshworker: MESHBUY_LOG_LEVEL: unknown level\n");
        return EXIT_CONFIG;
    }
    if (mb_conf_load(&conf, mb_loop_conf_keys, err, sizeof(err)) < 0 ||
        check_more(conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "meshworker: invalid configuration: %s\n", err);
        mb_conf_free(conf);
        return EXIT_CONFIG;
    }
    if (check) {
        mb_conf_dump(stdout, conf);
        printf("configuration ok\n");
        mb_conf_free(conf);
        return EXIT_OK;
    }
    loop = mb_loop_new(conf, err, sizeof(err));
    if (loop == NULL) {
        mb_error("main", "cannot start: %s", err);
        mb_conf_free(conf);
        return EXIT_FATAL;
    }
    engine = NULL;
    if (mb_conf_bool(conf, "MESHBUY_RUN_SAGAS")) {
        engine = mb_engine_new(loop, conf, err, sizeof(err));
        if (engine == NULL) {
            fprintf(stderr, "meshworker: invalid configuration: %s\n", err);
            mb_loop_free(loop);
            mb_conf_free(conf);
            return EXIT_CONFIG;
        }
    }
    rc = mb_loop_run(loop);
    mb_engine_free(engine);
    mb_loop_free(loop);
    mb_conf_free(conf);
    rc = rc == 2 ? EXIT_FATAL : rc; /* mb_loop_run: 0 drained, 1 forced, 2 fatal */
    mb_info("main", "exit %d", rc);
    return rc;
}
