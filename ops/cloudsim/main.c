/* main.c: cloudsim, the cloud simulator (CCE, CAM releases, VPC, Kubernetes) for tests, demo
 * and benchmarks; also a request signer for curl (--sign). */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cs_api.h"
#include "mb_log.h"
#include "mb_sign.h"
#include "mb_version.h"

/* jemalloc's options (MALLOC_CONF still overrides them; unused with glibc's malloc).  The
 * bench's 10,000 clusters grow cloudsim to 800 MB of small JSON objects, and first touches
 * of 4 kB pages were 11% of its CPU in that run; huge pages, where the kernel gives them
 * on request (transparent_hugepage=madvise), cut its CPU per saga by about 10%. */
const char *malloc_conf = "thp:always";

static const char usage[] =
    "usage: cloudsim --listen HOST:PORT --addr-file FILE --scenario FILE.json [options]\n"
    "       cloudsim --sign [--date YYYYMMDDTHHMMSSZ] METHOD URL [BODY|@FILE]\n"
    "\n"
    "Simulates the cloud APIs meshbuy calls (CCE clusters/nodes, CCE releases, VPC\n"
    "security-group rules, Kubernetes under /k8s/{cluster_id}) with state, AK/SK\n"
    "signature checks, fault injection and an admin API (/admin/...). See\n"
    "ops/cloudsim/README.md.\n"
    "\n"
    "  --listen HOST:PORT        address to serve (port 0: kernel-chosen)\n"
    "  --addr-file FILE          write \"HOST:PORT\\n\" here once listening (tmp+rename)\n"
    "  --scenario FILE.json      initial state (clusters, credentials, ...)\n"
    "  --release-install-ms N    PENDING_INSTALL -> DEPLOYED after N ms (default 1500)\n"
    "  --release-delete-ms N     DELETING -> gone after N ms (default 500)\n"
    "  --latency-ms N            answer every cloud request N ms after it arrived (default 0)\n"
    "  --seed N                  seed of fault-injection randomness (default 1)\n"
    "  --threads N               event loops, one thread each on the same port\n"
    "                            (SO_REUSEPORT); default: online cores, at most 4\n"
    "  --no-auth                 accept requests without checking signatures\n"
    "  --kubectl-read            accept unsigned GETs under /k8s (kubectl); mutations\n"
    "                            always need a signature\n"
    "  -h, --help                this text\n"
    "  --version                 print the version and exit\n"
    "\n"
    "--sign prints Host, X-Sdk-Date and Authorization header lines for curl -H,\n"
    "signing host;x-sdk-date and the body with MESHBUY_AK / MESHBUY_SK from the\n"
    "environment.\n"
    "Exit codes: 0 stopped by SIGTERM/SIGINT (or --sign/--help done), 1 runtime\n"
    "error, 2 usage or configuration error.\n";

#define MAX_THREADS 64

static volatile sig_atomic_t stopping;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    stopping = 1;
    mb_info("cloudsim", "signal %d: stopping", (int)sig);
    event_base_loopbreak(arg);
}

/* One loop per online core, at most 4: past that the server lock, not
 * the HTTP work, is what limits. */
static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 4 ? 4 : (int)n;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            mb_warn("cloudsim", "raising RLIMIT_NOFILE: %s", strerror(errno));
    }
}

/* A bound, listening, non-blocking IPv4 socket with SO_REUSEPORT, so that
 * every loop can have its own on the same port; *port: 0 for a
 * kernel-chosen one (then set to the port bound).  Returns the fd or -1. */
static int listen_one(const char *host, int *port)
{
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof(sa);
    int one = 1;

    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)*port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* A deep backlog: 10,000 clients may connect at once. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 65535) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* n listening sockets on the address of spec (HOST:PORT), all on the port
 * the first one got.  Returns 0 with fds filled, or -1 (none left open). */
static int listen_on(const char *spec, int *fds, int n, int *port)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    long p;

    if (colon == NULL || (size_t)(colon - spec) >= sizeof(host) ||
        parse_long(colon + 1, 0, 65535, &p) < 0)
        return -1;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
    *port = (int)p;
    for (int i = 0; i < n; i++) {
        fds[i] = listen_one(host, port);
        if (fds[i] < 0) {
            int e = errno;
            while (i-- > 0)
                close(fds[i]);
            errno = e;
            return -1;
        }
    }
    return 0;
}

static int write_addr_file(const char *path, const char *addr)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", addr);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- --sign */

static char *read_body(const char *arg, size_t *len)
{
    if (arg[0] != '@') {
        *len = strlen(arg);
        return strdup(arg);
    }
    FILE *f = fopen(arg + 1, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    if (f == NULL)
        return NULL;
    do {
        if (n + 4096 > cap) {
            char *nb = realloc(buf, cap + 65536);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        r = fread(buf + n, 1, 4096, f);
        n += r;
    } while (r > 0);
    fclose(f);
    *len = n;
    return buf;
}

static int sign_main(int argc, char **argv)
{
    const char *ak = getenv("MESHBUY_AK"), *sk = getenv("MESHBUY_SK");
    char date[MB_SIGN_DATE_LEN + 1], host[512], path[8192], auth[1024];
    const char *query = NULL;
    int i = 0;

    if (argc >= 2 && strcmp(argv[0], "--date") == 0) {
        snprintf(date, sizeof(date), "%s", argv[1]);
        i = 2;
    } else {
        mb_sign_date(time(NULL), date);
    }
    if (argc - i < 2 || ak == NULL || sk == NULL) {
        fprintf(stderr, "cloudsim --sign: need METHOD URL [BODY|@FILE] and MESHBUY_AK, "
                        "MESHBUY_SK in the environment\n");
        return 2;
    }
    const char *method = argv[i], *url = argv[i + 1];
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t hl = strcspn(p, "/?");
    snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    p += hl;
    size_t pl = strcspn(p, "?");
    snprintf(path, sizeof(path), "%.*s", (int)(pl ? pl : 1), pl ? p : "/");
    if (p[pl] == '?')
        query = p + pl + 1;
    size_t blen = 0;
    char *body = argc - i >= 3 ? read_body(argv[i + 2], &blen) : strdup("");
    if (body == NULL) {
        fprintf(stderr, "cloudsim --sign: cannot read body %s\n", argv[i + 2]);
        return 2;
    }
    mb_hdr hdrs[] = {{"Host", host}, {"X-Sdk-Date", date}};
    if (mb_sign_authorization(ak, sk, method, path, query, hdrs, 2, body, blen, auth,
                              sizeof(auth)) < 0) {
        fprintf(stderr, "cloudsim --sign: cannot sign\n");
        free(body);
        return 2;
    }
    printf("Host: %s\nX-Sdk-Date: %s\nAuthorization: %s\n", host, date, auth);
    free(body);
    return 0;
}

/* ---------------------------------------------------------------- main */

typedef struct opts {
    const char *listen, *addr_file, *scenario;
    long install_ms, delete_ms, latency_ms, seed, threads;
    int no_auth, kubectl_read;
} opts;

static int parse_opts(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"listen", required_argument, NULL, 'l'},
        {"addr-file", required_argument, NULL, 'a'},
        {"scenario", required_argument, NULL, 's'},
        {"release-install-ms", required_argument, NULL, 'i'},
        {"release-delete-ms", required_argument, NULL, 'd'},
        {"latency-ms", required_argument, NULL, 'L'},
        {"seed", required_argument, NULL, 'S'},
        {"threads", required_argument, NULL, 'T'},
        {"no-auth", no_argument, NULL, 'n'},
        {"kubectl-read", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    o->install_ms = 1500;
    o->delete_ms = 500;
    o->seed = 1;
    opterr = 0; /* our one line names the flag */
    while ((ch = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        long *target = NULL;
        switch (ch) {
        case 'l': o->listen = optarg; break;
        case 'a': o->addr_file = optarg; break;
        case 's': o->scenario = optarg; break;
        case 'i': target = &o->install_ms; break;
        case 'd': target = &o->delete_ms; break;
        case 'L': target = &o->latency_ms; break;
        case 'S': target = &o->seed; break;
        case 'T': target = &o->threads; break;
        case 'n': o->no_auth = 1; break;
        case 'k': o->kubectl_read = 1; break;
        case 'h': fputs(usage, stdout); exit(0);
        case ':':
            fprintf(stderr, "cloudsim: %s needs a value (see cloudsim --help)\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "cloudsim: unknown option %s (see cloudsim --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        if (target && parse_long(optarg, 0, 86400000, target) < 0) {
            fprintf(stderr, "cloudsim: bad number '%s'\n", optarg);
            return -1;
        }
    }
    if (o->threads > MAX_THREADS) {
        fprintf(stderr, "cloudsim: --threads at most %d\n", MAX_THREADS);
        return -1;
    }
    if (optind != argc || o->listen == NULL || o->scenario == NULL) {
        fprintf(stderr, "cloudsim: %s%s (see cloudsim --help)\n",
                optind != argc ? "unexpected argument " : "--listen and --scenario are required",
                optind != argc ? argv[optind] : "");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {0};
    cs_server s = {0};
    char err[512], addr[96];
    json_error_t je;
    struct event *sigterm = NULL, *sigint = NULL;
    struct event_base *sigbase = NULL;
    int port = 0, rc = 1;

    if (mb_version_flag(argc, argv, "cloudsim"))
        return 0;
    if (argc >= 2 && strcmp(argv[1], "--sign") == 0)
        return sign_main(argc - 2, argv + 2);
    mb_log_init("cloudsim");
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    json_t *doc = json_load_file(o.scenario, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL) {
        mb_error("cloudsim", "scenario %s: %s (line %d)", o.scenario, je.text, je.line);
        return 2;
    }
    s.m = cs_model_new(doc, o.install_ms, o.delete_ms, err, sizeof(err));
    json_decref(doc);
    if (s.m == NULL) {
        mb_error("cloudsim", "scenario %s: %s", o.scenario, err);
        return 2;
    }
    s.install_ms = o.install_ms;
    s.delete_ms = o.delete_ms;
    s.latency_ms = o.latency_ms;
    s.no_auth = o.no_auth;
    s.kubectl_read = o.kubectl_read;
    s.audit = cs_audit_new(100000, 2000000);
    s.faults = cs_faults_new((uint64_t)o.seed);
    sigbase = event_base_new(); /* signals only: the loops are cs_server's */
    if (s.audit == NULL || s.faults == NULL || sigbase == NULL) {
        mb_error("cloudsim", "out of memory");
        goto out;
    }
    int nthreads = o.threads > 0 ? (int)o.threads : default_threads();
    int fds[MAX_THREADS];
    if (listen_on(o.listen, fds, nthreads, &port) < 0) {
        mb_error("cloudsim", "cannot listen on %s: %s", o.listen, strerror(errno));
        rc = 2;
        goto out;
    }
    /* read before the loops start: from then on the model is theirs (under s.lock) */
    size_t nclusters = cs_map_count(s.m->clusters);
    int kubectl_read = s.kubectl_read || s.m->kubectl_read;
    if (cs_server_start(&s, fds, nthreads) < 0) {
        mb_error("cloudsim", "cannot start the HTTP server");
        goto out;
    }
    snprintf(addr, sizeof(addr), "%.*s:%d", (int)(strrchr(o.listen, ':') - o.listen), o.listen,
             port);
    sigterm = evsignal_new(sigbase, SIGTERM, on_signal, sigbase);
    sigint = evsignal_new(sigbase, SIGINT, on_signal, sigbase);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 || evsignal_add(sigint, NULL) < 0)
        goto out;
    if (o.addr_file && write_addr_file(o.addr_file, addr) < 0) {
        mb_error("cloudsim", "cannot write %s: %s", o.addr_file, strerror(errno));
        goto out;
    }
    mb_info("cloudsim", "listening on %s (%d loops, clusters %zu, auth %s, kubectl_read %s)", addr,
            nthreads, nclusters, s.no_auth ? "off" : "on", kubectl_read ? "on" : "off");
    event_base_dispatch(sigbase);
    rc = stopping ? 0 : 1;
    mb_info("cloudsim", "stopped");
out:
    cs_server_stop(&s);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    cs_model_free(s.m);
    cs_audit_free(s.audit);
    cs_faults_free(s.faults);
    if (sigbase)
        event_base_free(sigbase);
    return rc;
}
