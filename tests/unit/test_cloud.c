/* test_cloud.c: mb_cloud's pure helpers, then every typed call against the real
 * cloudsim ($MB_BIN/cloudsim), including error paths and injected faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mb_cloud.h"
#include "loop_util.h"
#include "mb_http.h"

#define AK               "MESHBUYDEVACCESSKEY0"
#define SK               "meshbuy-dev-secret-key-0000000000000000"
#define PROJECT          "p0c0a1b2c3d4e5f6"
#define CLUSTER          "c1-7b3f2c1e"
#define CLUSTER_NOTREADY "c2-coredns-down"
#define SG               "sg-5e1c7a30"
#define TP               "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define NPODS            1203

/* The test's own scenario: known ids, more pods than one page, workloads of
 * every kind, a pre-existing rule that covers 7443 through a range. */
static const char scenario[] =
    "{\"credentials\":[{\"ak\":\"" AK "\",\"sk\":\"" SK "\",\"projects\":[\"" PROJECT "\"]}],"
    "\"charts\":[{\"id\":\"asm-istio-1-18\",\"name\":\"asm-istio\",\"version\":\"1.18.7-r1\"}],"
    "\"sg_rule_quota\":4,"
    "\"security_groups\":[{\"id\":\"" SG "\",\"project_id\":\"" PROJECT
    "\",\"name\":\"c1-cce-node\","
    "  \"rules\":[{\"id\":\"rule-pre-1\",\"direction\":\"ingress\",\"ethertype\":\"IPv4\","
    "             \"protocol\":\"tcp\",\"multiport\":\"22,7000-8000\",\"action\":\"allow\","
    "             \"priority\":1,\"remote_ip_prefix\":\"0.0.0.0/0\"}]}],"
    "\"clusters\":["
    " {\"id\":\"" CLUSTER "\",\"project_id\":\"" PROJECT
    "\",\"name\":\"shop\",\"version\":\"v1.25\","
    "  \"phase\":\"Available\",\"security_group_id\":\"" SG "\",\"pods\":1203,"
    "  "
    "\"nodes\":[{\"uid\":\"uid-n1\",\"name\":\"192.168.0.11\",\"az\":\"az1\",\"phase\":\"Active\"},"
    "           "
    "{\"uid\":\"uid-n2\",\"name\":\"192.168.1.12\",\"az\":\"az2\",\"phase\":\"Abnormal\","
    "            \"labels\":{\"team\":\"x\"}}],"
    "  \"namespaces\":[\"default\",\"kube-system\",\"kube-public\",\"apps\"],"
    "  "
    "\"workloads\":[{\"namespace\":\"apps\",\"kind\":\"deployment\",\"name\":\"web\",\"replicas\":"
    "2},"
    "               "
    "{\"namespace\":\"apps\",\"kind\":\"deployment\",\"name\":\"frozen\",\"paused\":true},"
    "               "
    "{\"namespace\":\"apps\",\"kind\":\"statefulset\",\"name\":\"db\",\"replicas\":1},"
    "               {\"namespace\":\"apps\",\"kind\":\"daemonset\",\"name\":\"agent\"}]},"
    " {\"id\":\"" CLUSTER_NOTREADY "\",\"project_id\":\"" PROJECT
    "\",\"coredns\":{\"ready\":false},"
    "  \"nodes\":[{\"uid\":\"uid-m1\",\"name\":\"10.0.0.1\",\"az\":\"az1\"}]}"
    "]}";

/* ------------------------------------------------------------------ */
/* Pure helpers                                                       */
/* ------------------------------------------------------------------ */

static void test_multiport_table(void **state)
{
    static const struct {
        const char *mp;
        int port, want;
    } t[] = {
        {"7443", 7443, 1},
        {"7443", 7444, 0},
        {"7000-8000", 7443, 1},
        {"7000-8000", 7000, 1},
        {"7000-8000", 8000, 1},
        {"7000-8000", 8001, 0},
        {"22,7443", 7443, 1},
        {"22,7443", 22, 1},
        {"22,7443", 80, 0},
        {"22,7000-8000", 7443, 1},
        {"22, 7000 - 8000", 7443, 1},
        {" 7443 ", 7443, 1},
        {"1-65535", 7443, 1},
        {"80,443,8080", 7443, 0},
        {"", 7443, 0},
        {"abc", 7443, 0},
        {"7443-", 7443, 0},
        {"-7443", 7443, 0},
        {"8000-7000", 7443, 0},
        {"0-70000", 7443, 0},
        {"22,,7443", 7443, 0},
        {"22,x,7443", 7443, 0},
        {"7443,", 7443, 0},
        {"99999999999", 7443, 0},
        {"7443abc", 7443, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int got = mb_sg_multiport_covers(t[i].mp, t[i].port);
        if (got != t[i].want)
            fail_msg("multiport \"%s\" port %d: got %d want %d", t[i].mp, t[i].port, got,
                     t[i].want);
    }
    assert_int_equal(mb_sg_multiport_covers(NULL, 7443), 0);
}

static void test_rule_allows(void **state)
{
    char in[] = "ingress", eg[] = "egress", tcp[] = "tcp", udp[] = "udp", any[] = "any",
         allow[] = "allow", deny[] = "deny", v4[] = "IPv4", v6[] = "IPv6", mp[] = "7443",
         mp2[] = "80", empty[] = "";
    mb_sg_rule r = {
        .direction = in, .protocol = tcp, .action = allow, .ethertype = v4, .multiport = mp};
    (void)state;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 1);
    r.multiport = mp2;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 0);
    r.multiport = empty; /* all ports */
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 1);
    r.multiport = NULL;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 1);
    r.multiport = mp;
    r.protocol = any;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 1);
    r.protocol = NULL;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 1);
    r.protocol = udp;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 0);
    r.protocol = tcp;
    r.direction = eg;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 0);
    r.direction = in;
    r.action = deny;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 0);
    r.action = allow;
    r.ethertype = v6;
    assert_int_equal(mb_sg_rule_allows(&r, 7443), 0);
    assert_int_equal(mb_sg_rule_allows(NULL, 7443), 0);
}

static void test_deployment_ready_rule(void **state)
{
    static const struct {
        const char *json;
        int want;
        const char *why;
    } t[] = {
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,\"availableReplicas\":2}}",
         1, ""},
        {"{\"metadata\":{\"generation\":3},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,\"availableReplicas\":2}}",
         0, "spec update"},
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":1,\"availableReplicas\":1}}",
         0, "1 out of 2 new replicas"},
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":3,\"updatedReplicas\":2,\"availableReplicas\":2}}",
         0, "1 old replicas"},
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,\"availableReplicas\":1}}",
         0, "1 of 2 updated replicas are available"},
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,\"availableReplicas\":2,"
         "\"conditions\":[{\"type\":\"Progressing\",\"status\":\"False\","
         "\"reason\":\"ProgressDeadlineExceeded\"}]}}",
         0, "progress deadline"},
        {"{\"metadata\":{\"generation\":1},\"spec\":{\"replicas\":0},\"status\":{"
         "\"observedGeneration\":1}}",
         0, "no available replicas"},
        /* spec.replicas absent means 1 */
        {"{\"metadata\":{\"generation\":1},\"spec\":{},\"status\":{\"observedGeneration\":1}}", 0,
         "0 out of 1"},
        /* other conditions, and elements that are no condition, do not count */
        {"{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},\"status\":{"
         "\"observedGeneration\":2,\"replicas\":2,\"updatedReplicas\":2,\"availableReplicas\":2,"
         "\"conditions\":[7,{\"type\":\"Available\",\"reason\":\"ProgressDeadlineExceeded\"},"
         "{\"type\":\"Progressing\",\"reason\":\"NewReplicaSetAvailable\"}]}}",
         1, ""},
        {"{\"metadata\":{\"generation\":2}", -1, ""}, /* cut: not JSON */
        {"[{\"metadata\":{}}]", -1, ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char why[200] = "";
        int got = mb_k8s_deployment_ready(t[i].json, strlen(t[i].json), why, sizeof(why));
        if (got != t[i].want || strstr(why, t[i].why) == NULL)
            fail_msg("row %zu: got %d \"%s\" want %d \"%s\"", i, got, why, t[i].want, t[i].why);
    }
}

/* ------------------------------------------------------------------ */
/* Loop helpers                                                       */
/* ------------------------------------------------------------------ */

typedef struct res {
    int called;
    mb_error err;
} res;

static void on_done(void *arg, const mb_error *e)
{
    res *r = arg;
    r->called++;
    r->err = *e;
}

/* Runs one call to completion; fails the test if done is not called. */
#define CALL(env, r, expr)                                           \
    do {                                                             \
        memset(&(r), 0, sizeof(r));                                  \
        assert_non_null(expr);                                       \
        assert_int_equal((r).called, 0); /* never synchronously */   \
        run_until((env)->base, &(r).called, 1, 10000);               \
        if ((r).called != 1)                                         \
            fail_msg("%s: done called %d times", #expr, (r).called); \
    } while (0)

#define ASSERT_OK(r)                                                                             \
    do {                                                                                         \
        if ((r).err.status != MB_OK)                                                             \
            fail_msg("expected ok, got %s %s: %s", mb_status_name((r).err.status), (r).err.code, \
                     (r).err.msg);                                                               \
    } while (0)

/* ------------------------------------------------------------------ */
/* Without a server                                                   */
/* ------------------------------------------------------------------ */

static void test_new_checks_templates(void **state)
{
    struct event_base *base = event_base_new();
    char err[256];
    mb_http_opts ho = {0};
    mb_http *h = mb_http_new(base, &ho, err, sizeof(err));
    mb_cloud_opts o = {"http://a", "http://b", "http://c/k8s/{cluster_id}"};
    mb_cloud *c;
    (void)state;

    c = mb_cloud_new(h, &o, err, sizeof(err));
    assert_non_null(c);
    mb_cloud_free(c);

    o.k8s_url = "http://c/k8s";
    assert_null(mb_cloud_new(h, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "MESHBUY_K8S_URL"));
    o.k8s_url = "http://c/{cluster}";
    assert_null(mb_cloud_new(h, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "unknown placeholder"));
    o.k8s_url = "http://c/k8s/{cluster_id}";
    o.vpc_url = NULL;
    assert_null(mb_cloud_new(h, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "MESHBUY_VPC_URL"));
    o.vpc_url = "ftp://x";
    assert_null(mb_cloud_new(h, &o, err, sizeof(err)));
    mb_http_free(h);
    event_base_free(base);
}

typedef struct env {
    struct event_base *base;
    mb_http *http;
    mb_cloud *cloud;
    mb_cloud_target t;
    pid_t pid;
    char dir[64];
    char addr[64];
} env;

/* Immediate failures are reported from the loop, once, never inside the call. */
static void test_immediate_failure_deferred(void **state)
{
    env e = {0};
    char err[256];
    mb_http_opts ho = {0};
    mb_cloud_opts o = {"https://cce.{region}.example", "http://vpc",
                       "https://{cluster_id}.cce.{region}.example"};
    mb_cluster cl = {0};
    mb_release rel = {0};
    res r;
    (void)state;

    e.base = event_base_new();
    e.http = mb_http_new(e.base, &ho, err, sizeof(err));
    e.cloud = mb_cloud_new(e.http, &o, err, sizeof(err));
    assert_non_null(e.cloud);
    /* no region for a template that needs one */
    e.t = (mb_cloud_target){.project_id = "p", .cluster_id = "c"};
    CALL(&e, r, mb_cloud_cluster_get(e.cloud, &e.t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "BadTarget");
    assert_non_null(strstr(r.err.msg, "region"));
    /* an empty name */
    e.t.region = "eu-de";
    CALL(&e, r, mb_cloud_release_get(e.cloud, &e.t, "istio-system", "", &rel, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "BadRequest");
    /* cancel before the deferred report: never called */
    memset(&r, 0, sizeof(r));
    mb_cloud_op *op = mb_cloud_release_get(e.cloud, &e.t, "ns", "", &rel, on_done, &r);
    assert_non_null(op);
    mb_cloud_cancel(op);
    {
        int never = 0;
        run_until(e.base, &never, 1, 100);
    }
    assert_int_equal(r.called, 0);
    assert_int_equal(mb_cloud_inflight(e.cloud), 0);
    /* freeing the client with an op pending: no call either */
    assert_non_null(mb_cloud_release_get(e.cloud, &e.t, "ns", "", &rel, on_done, &r));
    mb_cloud_free(e.cloud);
    {
        int never = 0;
        run_until(e.base, &never, 1, 100);
    }
    assert_int_equal(r.called, 0);
    mb_cluster_clear(&cl);
    mb_release_clear(&rel);
    mb_http_free(e.http);
    event_base_free(e.base);
}

/* ------------------------------------------------------------------ */
/* cloudsim                                                           */
/* ------------------------------------------------------------------ */

static env E;

typedef struct admin_res {
    int done;
    long status;
    json_t *body;
} admin_res;

static void on_admin(void *arg, const mb_http_resp *r, const mb_error *e)
{
    admin_res *a = arg;
    (void)e;
    a->done = 1;
    a->status = r ? r->status : 0;
    a->body = r && r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

/* Blocking admin call (tests only), on a loop of its own.  Returns the HTTP
 * status (0 when none came); *out: new JSON body or NULL. */
static long admin(const char *method, const char *path, const char *body, json_t **out)
{
    struct event_base *base = event_base_new();
    mb_http_opts o = {.timeout_ms = 10000};
    char url[256], err[128];
    mb_http *h = base ? mb_http_new(base, &o, err, sizeof(err)) : NULL;
    admin_res a = {0};
    mb_http_req rq = {
        .method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0};

    if (h == NULL)
        fail_msg("admin: no client");
    snprintf(url, sizeof(url), "http://%s%s", E.addr, path);
    if (mb_http_request(h, &rq, on_admin, &a) == NULL)
        fail_msg("admin: %s %s not sent", method, path);
    while (!a.done)
        event_base_loop(base, EVLOOP_ONCE);
    mb_http_free(h);
    event_base_free(base);
    if (out)
        *out = a.body;
    else
        json_decref(a.body);
    return a.status;
}

static void add_fault(const char *spec)
{
    long st = admin("POST", "/admin/faults", spec, NULL);
    if (st != 201 && st != 200)
        fail_msg("POST /admin/faults %s: HTTP %ld", spec, st);
}

/* Mutations recorded by cloudsim whose JSON text contains all of needles. */
static int mutations_matching(const char *n1, const char *n2)
{
    json_t *j = NULL, *list, *m;
    size_t i;
    int count = 0;
    admin("GET", "/admin/mutations", NULL, &j);
    list = json_is_array(j) ? j : json_object_get(j, "mutations");
    json_array_foreach(list, i, m)
    {
        char *s = json_dumps(m, JSON_COMPACT);
        if (s && strstr(s, n1) && (!n2 || strstr(s, n2)))
            count++;
        free(s);
    }
    json_decref(j);
    return count;
}

/* Starts cloudsim on a kernel-chosen port with scenario file scen_src, or
 * with the test's own scenario when scen_src is NULL. */
static int start_cloudsim_with(const char *scen_src)
{
    const char *bin = getenv("MB_BIN");
    char exe[512], scen[512], addrf[128];
    FILE *f;
    long end;

    if (bin == NULL || bin[0] == '\0') {
        fprintf(stderr, "test_cloud: MB_BIN is not set (tests/run sets it): cannot find "
                        "cloudsim\n");
        return -1;
    }
    snprintf(exe, sizeof(exe), "%s/cloudsim", bin);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr,
                "test_cloud: %s is missing or not executable: build it first "
                "(make all)\n",
                exe);
        return -1;
    }
    snprintf(E.dir, sizeof(E.dir), "/tmp/test_cloud.XXXXXX");
    if (mkdtemp(E.dir) == NULL)
        return -1;
    snprintf(scen, sizeof(scen), "%s/scenario.json", E.dir);
    snprintf(addrf, sizeof(addrf), "%s/addr", E.dir);
    E.addr[0] = '\0';
    f = fopen(scen, "w");
    if (f == NULL)
        return -1;
    fputs(scenario, f);
    fclose(f);
    if (scen_src != NULL) {
        if (access(scen_src, R_OK) != 0) {
            fprintf(stderr, "test_cloud: scenario %s not readable\n", scen_src);
            return -1;
        }
        snprintf(scen, sizeof(scen), "%s", scen_src);
    }

    E.pid = fork();
    if (E.pid == 0) {
        setenv("MESHBUY_LOG_LEVEL", "warn", 0); /* keep the test output readable */
        execl(exe, exe, "--listen", "127.0.0.1:0", "--addr-file", addrf, "--scenario", scen,
              "--release-install-ms", "300", "--release-delete-ms", "200", (char *)NULL);
        _exit(127);
    }
    end = now_ms() + 10000;
    while (now_ms() < end) {
        f = fopen(addrf, "r");
        if (f != NULL) {
            int ok = fgets(E.addr, sizeof(E.addr), f) != NULL;
            fclose(f);
            if (ok && strchr(E.addr, '\n')) {
                E.addr[strcspn(E.addr, "\n")] = '\0';
                break;
            }
        }
        if (waitpid(E.pid, NULL, WNOHANG) == E.pid) {
            fprintf(stderr, "test_cloud: cloudsim exited at start\n");
            E.pid = 0;
            return -1;
        }
        usleep(50000);
    }
    if (E.addr[0] == '\0') {
        fprintf(stderr, "test_cloud: cloudsim wrote no address within 10 s\n");
        return -1;
    }
    return 0;
}

static int start_cloudsim(void **state)
{
    (void)state;
    return start_cloudsim_with(NULL);
}

/* The shipped test scenario, ops/cloudsim/scenarios/basic.json. */
static int start_cloudsim_basic(void **state)
{
    const char *root = getenv("MB_ROOT");
    char path[512];
    (void)state;
    snprintf(path, sizeof(path), "%s/ops/cloudsim/scenarios/basic.json", root ? root : ".");
    return start_cloudsim_with(path);
}

static int stop_cloudsim(void **state)
{
    char cmd[128];
    (void)state;
    if (E.pid > 0) {
        kill(E.pid, SIGTERM);
        waitpid(E.pid, NULL, 0);
        E.pid = 0;
    }
    if (E.dir[0]) {
        snprintf(cmd, sizeof(cmd), "%s/scenario.json", E.dir);
        unlink(cmd);
        snprintf(cmd, sizeof(cmd), "%s/addr", E.dir);
        unlink(cmd);
        rmdir(E.dir);
    }
    return 0;
}

static mb_cloud *make_cloud(mb_http *h)
{
    char cce[128], k8s[160], err[256];
    mb_cloud_opts o = {cce, cce, k8s};
    mb_cloud *c;
    snprintf(cce, sizeof(cce), "http://%s", E.addr);
    snprintf(k8s, sizeof(k8s), "http://%s/k8s/{cluster_id}", E.addr);
    c = mb_cloud_new(h, &o, err, sizeof(err));
    if (c == NULL)
        fail_msg("mb_cloud_new: %s", err);
    return c;
}

/* Each test: a fresh client, cloudsim reset to the scenario, no faults. */
static int setup(void **state)
{
    char err[256];
    mb_http_opts ho = {.ak = AK, .sk = SK, .timeout_ms = 5000};
    if (admin("POST", "/admin/reset", NULL, NULL) != 200)
        return -1;
    admin("DELETE", "/admin/faults", NULL, NULL);
    E.base = event_base_new();
    E.http = mb_http_new(E.base, &ho, err, sizeof(err));
    if (E.http == NULL)
        return -1;
    E.cloud = make_cloud(E.http);
    E.t = (mb_cloud_target){PROJECT, "eu-de", CLUSTER, TP};
    *state = &E;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mb_cloud_free(E.cloud);
    mb_http_free(E.http);
    event_base_free(E.base);
    E.cloud = NULL;
    E.http = NULL;
    E.base = NULL;
    return 0;
}

/* ---- CCE ---- */

static void test_cluster_and_nodes(void **state)
{
    env *e = *state;
    mb_cluster cl = {0};
    mb_node_list nl = {0};
    res r;

    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(cl.id, CLUSTER);
    assert_string_equal(cl.name, "shop");
    assert_string_equal(cl.version, "v1.25");
    assert_string_equal(cl.phase, "Available");
    assert_string_equal(cl.security_group_id, SG);

    CALL(e, r, mb_cloud_nodes_list(e->cloud, &e->t, &nl, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(nl.n, 2);
    for (size_t i = 0; i < nl.n; i++) {
        if (strcmp(nl.items[i].uid, "uid-n1") == 0) {
            assert_string_equal(nl.items[i].name, "192.168.0.11");
            assert_string_equal(nl.items[i].az, "az1");
            assert_string_equal(nl.items[i].phase, "Active");
        } else {
            assert_string_equal(nl.items[i].uid, "uid-n2");
            assert_string_equal(nl.items[i].az, "az2");
            assert_string_equal(nl.items[i].phase, "Abnormal");
        }
    }

    /* 404: a cluster that does not exist */
    mb_cloud_target t = e->t;
    t.cluster_id = "no-such-cluster";
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_int_equal(r.err.http_status, 404);
    assert_non_null(
        strstr(r.err.msg, "GET /api/v3/projects/" PROJECT "/clusters/no-such-cluster: HTTP 404"));
    assert_null(cl.id);
    mb_cluster_clear(&cl);
    mb_node_list_clear(&nl);
}

static void test_release_lifecycle(void **state)
{
    env *e = *state;
    mb_release rel = {0};
    json_t *values = json_pack("{s{s{ss}}}", "global", "nodeSelector", "istio", "master");
    mb_release_spec spec = {.chart_id = "asm-istio-1-18",
                            .name = "istio-master",
                            .namespace = "istio-system",
                            .version = "1.18.7-r1",
                            .values = values,
                            .description = "meshbuy order o-1"};
    res r;
    long end;

    CALL(e, r,
         mb_cloud_release_get(e->cloud, &e->t, "istio-system", "istio-master", &rel, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(rel.exists, 0);

    CALL(e, r, mb_cloud_release_create(e->cloud, &e->t, &spec, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(mutations_matching("istio-master", NULL) >= 1, 1);

    /* installing, then DEPLOYED (cloudsim: 300 ms) */
    end = now_ms() + 5000;
    do {
        CALL(e, r,
             mb_cloud_release_get(e->cloud, &e->t, "istio-system", "istio-master", &rel, on_done,
                                  &r));
        ASSERT_OK(r);
        assert_int_equal(rel.exists, 1);
        if (strcmp(rel.status, "DEPLOYED") == 0)
            break;
        assert_string_equal(rel.status, "PENDING_INSTALL");
        usleep(50000);
    } while (now_ms() < end);
    assert_string_equal(rel.status, "DEPLOYED");
    assert_string_equal(rel.description, "meshbuy order o-1");

    /* creating it again is refused by the server; not a success */
    CALL(e, r, mb_cloud_release_create(e->cloud, &e->t, &spec, on_done, &r));
    assert_int_not_equal(r.err.status, MB_OK);

    CALL(e, r,
         mb_cloud_release_delete(e->cloud, &e->t, "istio-system", "istio-master", on_done, &r));
    ASSERT_OK(r);
    end = now_ms() + 5000;
    do {
        CALL(e, r,
             mb_cloud_release_get(e->cloud, &e->t, "istio-system", "istio-master", &rel, on_done,
                                  &r));
        ASSERT_OK(r);
        if (!rel.exists)
            break;
        usleep(50000);
    } while (now_ms() < end);
    assert_int_equal(rel.exists, 0);
    /* deleting what is gone is fine */
    CALL(e, r,
         mb_cloud_release_delete(e->cloud, &e->t, "istio-system", "istio-master", on_done, &r));
    ASSERT_OK(r);
    mb_release_clear(&rel);
    json_decref(values);
}

/* ---- VPC ---- */

static void test_sg_rules(void **state)
{
    env *e = *state;
    mb_sg_rule_list l = {0};
    mb_sg_rule_created cr = {0};
    mb_sg_rule_spec spec = {.security_group_id = SG,
                            .multiport = "7443",
                            .remote_ip_prefix = "0.0.0.0/0",
                            .description = "asm sidecar injection webhook"};
    char first_id[128];
    int covering = 0;
    res r;

    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &e->t, SG, "ingress", "tcp", &l, on_done, &r));
    ASSERT_OK(r);
    assert_true(l.n >= 1);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.items[i].id, "rule-pre-1") == 0) {
            assert_string_equal(l.items[i].multiport, "22,7000-8000");
            assert_true(mb_sg_rule_allows(&l.items[i], 7443));
            covering++;
        }
    }
    assert_int_equal(covering, 1);

    CALL(e, r, mb_cloud_sg_rule_create(e->cloud, &e->t, &spec, &cr, on_done, &r));
    ASSERT_OK(r);
    assert_non_null(cr.id);
    assert_int_equal(cr.existed, 0);
    snprintf(first_id, sizeof(first_id), "%s", cr.id);

    /* the same rule again: 409 VPC.9902, the id parsed from the message */
    CALL(e, r, mb_cloud_sg_rule_create(e->cloud, &e->t, &spec, &cr, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(cr.existed, 1);
    assert_non_null(cr.id);
    assert_string_equal(cr.id, first_id);

    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &e->t, SG, "ingress", "tcp", &l, on_done, &r));
    ASSERT_OK(r);
    covering = 0;
    for (size_t i = 0; i < l.n; i++)
        covering += strcmp(l.items[i].id, first_id) == 0;
    assert_int_equal(covering, 1);

    CALL(e, r, mb_cloud_sg_rule_delete(e->cloud, &e->t, first_id, on_done, &r));
    ASSERT_OK(r);
    CALL(e, r, mb_cloud_sg_rule_delete(e->cloud, &e->t, first_id, on_done, &r));
    ASSERT_OK(r); /* already gone */

    /* quota (4 in this scenario, one used): VPC.9905 is permanent */
    for (int port = 9001; port < 9010; port++) {
        char mp[16];
        snprintf(mp, sizeof(mp), "%d", port);
        spec.multiport = mp;
        CALL(e, r, mb_cloud_sg_rule_create(e->cloud, &e->t, &spec, &cr, on_done, &r));
        if (r.err.status != MB_OK)
            break;
    }
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "VPC.9905");
    assert_int_equal(r.err.http_status, 409);

    /* a filter that matches nothing is an empty list, as in the real API */
    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &e->t, "sg-nope", NULL, NULL, &l, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(l.n, 0);
    mb_sg_rule_list_clear(&l);
    mb_sg_rule_created_clear(&cr);
}

/* ---- Kubernetes ---- */

static void test_k8s_objects_and_labels(void **state)
{
    env *e = *state;
    mb_k8s_meta m = {0};
    char *ver = NULL;
    res r;

    CALL(e, r, mb_cloud_k8s_version(e->cloud, &e->t, &ver, on_done, &r));
    ASSERT_OK(r);
    assert_non_null(ver);
    assert_true(strncmp(ver, "v1.25", 5) == 0);
    free(ver);

    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 1);
    assert_string_equal(json_string_value(json_object_get(m.labels, "team")), "x");
    assert_null(json_object_get(m.labels, "istio"));

    CALL(e, r,
         mb_cloud_k8s_label_patch(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", "istio", "master",
                                  on_done, &r));
    ASSERT_OK(r);
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", &m, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(json_string_value(json_object_get(m.labels, "istio")), "master");
    assert_string_equal(json_string_value(json_object_get(m.labels, "team")), "x");

    CALL(e, r,
         mb_cloud_k8s_label_patch(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", "istio", NULL,
                                  on_done, &r));
    ASSERT_OK(r);
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", &m, on_done, &r));
    assert_null(json_object_get(m.labels, "istio"));

    /* namespaces: istio-system absent, injection label on apps */
    CALL(e, r,
         mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NAMESPACE, "istio-system", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 0);
    CALL(e, r,
         mb_cloud_k8s_label_patch(e->cloud, &e->t, MB_K8S_NAMESPACE, "apps", "istio-injection",
                                  "enabled", on_done, &r));
    ASSERT_OK(r);
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NAMESPACE, "apps", &m, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(json_string_value(json_object_get(m.labels, "istio-injection")), "enabled");

    /* patching a node that does not exist: Kubernetes Status reason */
    CALL(e, r,
         mb_cloud_k8s_label_patch(e->cloud, &e->t, MB_K8S_NODE, "no-such-node", "istio", "master",
                                  on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "NotFound");
    assert_non_null(strstr(r.err.msg, "PATCH /k8s/" CLUSTER "/api/v1/nodes/no-such-node: "
                                      "HTTP 404"));
    mb_k8s_meta_clear(&m);
}

/* Requests in cloudsim's log after seq since whose path contains needle and
 * whose status is status (0 = any). */
static int requests_matching(long long since, const char *needle, long status)
{
    json_t *j = NULL, *it;
    size_t i;
    int n = 0;
    char path[64];
    snprintf(path, sizeof(path), "/admin/requests?since=%lld", since);
    admin("GET", path, NULL, &j);
    json_array_foreach(json_object_get(j, "requests"), i, it)
    {
        const char *p = json_string_value(json_object_get(it, "path"));
        long st = (long)json_integer_value(json_object_get(it, "status"));
        if (p && strstr(p, needle) && (status == 0 || st == status))
            n++;
    }
    json_decref(j);
    return n;
}

/* Requests since `since` whose path holds needle and whose reply had the
 * Content-Type media (the request log notes any but plain JSON). */
static int media_matching(long long since, const char *needle, const char *media)
{
    json_t *j = NULL, *it;
    size_t i;
    int n = 0;
    char path[64];
    snprintf(path, sizeof(path), "/admin/requests?since=%lld", since);
    admin("GET", path, NULL, &j);
    json_array_foreach(json_object_get(j, "requests"), i, it)
    {
        const char *p = json_string_value(json_object_get(it, "path"));
        const char *m = json_string_value(json_object_get(it, "content_type"));
        if (p && strstr(p, needle) && m && strcmp(m, media) == 0)
            n++;
    }
    json_decref(j);
    return n;
}

static long long requests_total(void)
{
    json_t *j = NULL;
    long long t;
    admin("GET", "/admin/requests?limit=0", NULL, &j);
    t = (long long)json_integer_value(json_object_get(j, "total"));
    json_decref(j);
    return t;
}

/* A URL is its template with the target's names put in, percent-encoded wherever they
 * stand, then the path with its names encoded the same way. */
static void test_url_templates(void **state)
{
    char cce[160], k8s[160], err[256];
    mb_cloud_opts o = {cce, cce, k8s};
    mb_cloud_target t = {"p/1", "eu de", CLUSTER, TP};
    mb_cloud *c;
    mb_cluster cl = {0};
    long long since = requests_total();
    res r;
    (void)state;

    snprintf(cce, sizeof(cce), "http://%s/t/{region}/p-{project_id}{region}.x", E.addr);
    snprintf(k8s, sizeof(k8s), "http://%s/k8s/{cluster_id}", E.addr);
    c = mb_cloud_new(E.http, &o, err, sizeof(err));
    assert_non_null(c);
    CALL(&E, r, mb_cloud_cluster_get(c, &t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM); /* cloudsim has no such route */
    assert_int_equal(requests_matching(since,
                                       "/t/eu%20de/p-p%2F1eu%20de.x/api/v3/projects/p%2F1/"
                                       "clusters/" CLUSTER,
                                       404),
                     1);
    mb_cluster_clear(&cl);
    mb_cloud_free(c);
}

/* Node and namespace reads ask for metadata only and get it from cloudsim
 * (a PartialObjectMetadata, as from the API server): the fields the steps
 * read are all there. */
static void test_k8s_get_metadata_only(void **state)
{
    env *e = *state;
    mb_k8s_meta m = {0};
    long long since = requests_total();
    res r;

    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NODE, "192.168.1.12", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 1);
    assert_string_equal(m.name, "192.168.1.12");
    assert_non_null(m.resource_version);
    assert_string_equal(json_string_value(json_object_get(m.labels, "team")), "x");
    assert_true(json_is_object(m.annotations));
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NAMESPACE, "apps", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 1);
    assert_string_equal(m.name, "apps");
    assert_int_equal(media_matching(since, "/api/v1/nodes/192.168.1.12",
                                    "application/json;as=PartialObjectMetadata;"
                                    "g=meta.k8s.io;v=v1"),
                     1);
    assert_int_equal(media_matching(since, "/api/v1/namespaces/apps",
                                    "application/json;as=PartialObjectMetadata;"
                                    "g=meta.k8s.io;v=v1"),
                     1);
    mb_k8s_meta_clear(&m);
}

static void test_pods_count_and_410(void **state)
{
    env *e = *state;
    long n = -1;
    long long since;
    int never = 0;
    res r;

    /* 1203 pods: three pages of 500 */
    since = requests_total();
    CALL(e, r, mb_cloud_k8s_pods_count(e->cloud, &e->t, &n, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(n, NPODS);
    assert_int_equal(requests_matching(since, "/api/v1/pods?limit=500", 200), 3);
    assert_int_equal(requests_matching(since, "continue=", 200), 2);
    /* every page was asked for, and came back, as metadata only */
    assert_int_equal(media_matching(since, "/api/v1/pods?limit=500",
                                    "application/json;as=PartialObjectMetadataList;"
                                    "g=meta.k8s.io;v=v1"),
                     3);

    /* The continue token expires while the second page is on its way (the
     * second request is delayed, and the list epoch bumped meanwhile): the
     * real 410 Expired makes the count start over, and it is still right. */
    add_fault("{\"match\":{\"method\":\"GET\",\"path_prefix\":\"/k8s/" CLUSTER "/api/v1/pods\"},"
              "\"latency_ms\":400,\"skip\":1,\"count\":1}");
    since = requests_total();
    memset(&r, 0, sizeof(r));
    assert_non_null(mb_cloud_k8s_pods_count(e->cloud, &e->t, &n, on_done, &r));
    run_until(e->base, &never, 1, 150); /* first page back, second one held */
    assert_int_equal(admin("POST", "/admin/expire-continue", NULL, NULL), 200);
    run_until(e->base, &r.called, 1, 10000);
    assert_int_equal(r.called, 1);
    ASSERT_OK(r);
    assert_int_equal(n, NPODS);
    assert_int_equal(requests_matching(since, "/api/v1/pods", 410), 1);
    assert_int_equal(requests_matching(since, "/api/v1/pods", 200), 4);

    /* always 410: bounded restarts, then MB_AGAIN "Expired" */
    add_fault("{\"match\":{\"method\":\"GET\",\"path_prefix\":\"/k8s/" CLUSTER "/api/v1/pods\"},"
              "\"error_status\":410}");
    since = requests_total();
    CALL(e, r, mb_cloud_k8s_pods_count(e->cloud, &e->t, &n, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "Expired");
    assert_int_equal(requests_matching(since, "/api/v1/pods", 410), 4); /* 1 + 3 restarts */
}

static void test_coredns(void **state)
{
    env *e = *state;
    mb_coredns cd;
    mb_cloud_target t = e->t;
    res r;

    CALL(e, r, mb_cloud_k8s_coredns_ready(e->cloud, &e->t, &cd, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(cd.ready, 1);
    assert_string_equal(cd.reason, "");

    t.cluster_id = CLUSTER_NOTREADY;
    CALL(e, r, mb_cloud_k8s_coredns_ready(e->cloud, &t, &cd, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(cd.ready, 0);
    assert_non_null(strstr(cd.reason, "coredns: "));

    /* a 404 from the API is "not ready", not an error */
    add_fault("{\"match\":{\"path_contains\":\"deployments/coredns\"},\"error_status\":404,"
              "\"count\":1}");
    CALL(e, r, mb_cloud_k8s_coredns_ready(e->cloud, &e->t, &cd, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(cd.ready, 0);
    assert_string_equal(cd.reason, "coredns deployment not found");
}

static void test_workloads_and_restart(void **state)
{
    env *e = *state;
    mb_workload_list l = {0};
    int seen[3] = {0};
    res r;
    const char *ts = "2024-05-01T12:00:00Z";

    CALL(e, r, mb_cloud_k8s_workloads_list(e->cloud, &e->t, "apps", &l, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        seen[l.items[i].kind]++;
        assert_null(l.items[i].restarted_at);
        if (strcmp(l.items[i].name, "frozen") == 0)
            assert_int_equal(l.items[i].paused, 1);
        else
            assert_int_equal(l.items[i].paused, 0);
    }
    assert_int_equal(seen[MB_WL_DEPLOYMENT], 2);
    assert_int_equal(seen[MB_WL_STATEFULSET], 1);
    assert_int_equal(seen[MB_WL_DAEMONSET], 1);
    assert_string_equal(mb_workload_kind_name(MB_WL_STATEFULSET), "StatefulSet");

    CALL(e, r,
         mb_cloud_k8s_workload_restart(e->cloud, &e->t, "apps", MB_WL_DEPLOYMENT, "web", ts,
                                       on_done, &r));
    ASSERT_OK(r);
    CALL(e, r,
         mb_cloud_k8s_workload_restart(e->cloud, &e->t, "apps", MB_WL_DAEMONSET, "agent", ts,
                                       on_done, &r));
    ASSERT_OK(r);
    CALL(e, r, mb_cloud_k8s_workloads_list(e->cloud, &e->t, "apps", &l, on_done, &r));
    ASSERT_OK(r);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.items[i].name, "web") == 0 || strcmp(l.items[i].name, "agent") == 0)
            assert_string_equal(l.items[i].restarted_at, ts);
        else
            assert_null(l.items[i].restarted_at);
    }
    /* a namespace without workloads */
    CALL(e, r, mb_cloud_k8s_workloads_list(e->cloud, &e->t, "default", &l, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(l.n, 0);
    mb_workload_list_clear(&l);
}

/* ---- faults, signing, cancel ---- */

static void test_faults(void **state)
{
    env *e = *state;
    mb_cluster cl = {0};
    mb_cloud_counters cc;
    res r;
    long t0;
    long long since;
    char err[256];

    /* one 503: the call retries it on its own and succeeds */
    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"error_status\":503,"
              "\"count\":1}");
    since = requests_total();
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(cl.security_group_id, SG);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 503), 1);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 200), 1);
    mb_cloud_stats(e->cloud, &cc);
    assert_int_equal(cc.retries, 1);
    assert_int_equal(cc.gave_up, 0);

    /* 429 with Retry-After: 2 is waited for */
    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"throttle\":true,"
              "\"retry_after\":2,\"count\":1}");
    since = requests_total();
    t0 = now_ms();
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_true(now_ms() - t0 >= 1990);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 429), 1);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 200), 1);

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"latency_ms\":200,"
              "\"count\":1}");
    t0 = now_ms();
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_true(now_ms() - t0 >= 190);

    /* a hang: the request times out; with no room left before the deadline
     * for another 400 ms attempt, the call gives up, transient */
    {
        mb_http_opts ho = {.ak = AK, .sk = SK, .timeout_ms = 400};
        mb_http *h = mb_http_new(e->base, &ho, err, sizeof(err));
        mb_cloud *c = make_cloud(h);
        mb_cloud_target t = e->t;
        add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"hang\":true,"
                  "\"count\":1}");
        t0 = now_ms();
        t.deadline_ms = t0 + 700;
        CALL(e, r, mb_cloud_cluster_get(c, &t, &cl, on_done, &r));
        assert_int_equal(r.err.status, MB_AGAIN);
        assert_string_equal(r.err.code, "Timeout");
        assert_non_null(strstr(r.err.msg, "(gave up after 1 attempt)"));
        assert_true(now_ms() - t0 >= 350);
        mb_cloud_stats(c, &cc);
        assert_int_equal(cc.retries, 0);
        assert_int_equal(cc.gave_up, 1);
        mb_cloud_free(c);
        mb_http_free(h);
    }
    mb_cluster_clear(&cl);
}

/* Replies a proxy cut or mangled (cloudsim's body fault, status 200): a transient
 * BadResponse, or what the reply does hold, decoded. */
static void test_mangled_replies(void **state)
{
    env *e = *state;
    mb_cluster cl = {0};
    mb_node_list nl = {0};
    mb_sg_rule_list l = {0};
    mb_k8s_meta m = {0};
    mb_coredns cd;
    char *ver = NULL;
    res r;

    add_fault("{\"match\":{\"path_contains\":\"/clusters/" CLUSTER "\"},"
              "\"body\":\"{\\\"metadata\\\":{\",\"count\":1}");
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "BadResponse");
    assert_non_null(strstr(r.err.msg, "GET cluster: HTTP 200: response is not a JSON object"));

    add_fault(
        "{\"match\":{\"path_contains\":\"/clusters/" CLUSTER "\"},\"body\":"
        "\"{\\\"metadata\\\":{\\\"uid\\\":\\\"u\\\\u002d1\\\",\\\"name\\\":\\\"sh\\\\u00f6p\\\"},"
        "\\\"spec\\\":{\\\"version\\\":\\\"v1.25\\\",\\\"hostNetwork\\\":[]},"
        "\\\"status\\\":{\\\"phase\\\":\\\"Available\\\"}}\",\"count\":1}");
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(cl.id, "u-1");
    assert_string_equal(cl.name, "sh\xc3\xb6p");
    assert_null(cl.security_group_id);

    add_fault(
        "{\"match\":{\"path_contains\":\"/clusters/" CLUSTER "/nodes\"},\"body\":"
        "\"{\\\"items\\\":[{\\\"metadata\\\":{\\\"uid\\\":\\\"u1\\\",\\\"name\\\":\\\"n1\\\"},"
        "\\\"status\\\":{\\\"phase\\\":\\\"Active\\\"}},7]}\",\"count\":1}");
    CALL(e, r, mb_cloud_nodes_list(e->cloud, &e->t, &nl, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_non_null(strstr(r.err.msg, "item 1 lacks uid, name or phase"));
    assert_int_equal(nl.n, 2);
    assert_string_equal(nl.items[0].uid, "u1");
    assert_null(nl.items[0].az);

    add_fault("{\"match\":{\"path_contains\":\"/security-group-rules\"},\"body\":"
              "\"{\\\"security_group_rules\\\":[{\\\"direction\\\":\\\"ingress\\\"}]}\","
              "\"count\":1}");
    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &e->t, SG, "ingress", "tcp", &l, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_non_null(strstr(r.err.msg, "a rule without id"));
    assert_int_equal(l.items[0].priority, 1); /* the API's default when absent */

    add_fault("{\"match\":{\"path_contains\":\"/api/v1/nodes/n9\"},\"body\":"
              "\"{\\\"metadata\\\":{\\\"name\\\":\\\"n9\\\",\\\"labels\\\":[1],"
              "\\\"annotations\\\":{\\\"a\\\":\\\"b\\\"}}}\",\"count\":1}");
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &e->t, MB_K8S_NODE, "n9", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 1);
    assert_int_equal(json_object_size(m.labels), 0);
    assert_string_equal(json_string_value(json_object_get(m.annotations, "a")), "b");
    assert_null(m.resource_version);

    add_fault("{\"match\":{\"path_contains\":\"deployments/coredns\"},\"body\":\"[\",\"count\":1}");
    CALL(e, r, mb_cloud_k8s_coredns_ready(e->cloud, &e->t, &cd, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_non_null(
        strstr(r.err.msg, "GET deployment coredns: HTTP 200: response is not a JSON object"));

    add_fault("{\"match\":{\"path_contains\":\"/version\"},\"body\":\"{\\\"gitVersion\\\":125}\","
              "\"count\":1}");
    CALL(e, r, mb_cloud_k8s_version(e->cloud, &e->t, &ver, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_non_null(strstr(r.err.msg, "no gitVersion"));
    assert_null(ver);
    mb_cluster_clear(&cl);
    mb_node_list_clear(&nl);
    mb_sg_rule_list_clear(&l);
    mb_k8s_meta_clear(&m);
}

static void test_wrong_sk(void **state)
{
    env *e = *state;
    char err[256];
    mb_http_opts ho = {.ak = AK, .sk = "wrong-secret-key"};
    mb_http *h = mb_http_new(e->base, &ho, err, sizeof(err));
    mb_cloud *c = make_cloud(h);
    mb_cluster cl = {0};
    res r;

    CALL(e, r, mb_cloud_cluster_get(c, &e->t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_int_equal(r.err.http_status, 401);
    assert_string_equal(r.err.code, "APIGW.0301");
    assert_null(strstr(r.err.msg, "wrong-secret-key"));
    mb_cluster_clear(&cl);
    mb_cloud_free(c);
    mb_http_free(h);
}

static void test_cancel_inflight(void **state)
{
    env *e = *state;
    mb_cluster cl = {0};
    mb_node_list nl = {0};
    res r = {0}, r2;
    int never = 0;

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"latency_ms\":200,"
              "\"count\":1}");
    mb_cloud_op *op = mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r);
    assert_non_null(op);
    run_until(e->base, &never, 1, 50);
    mb_cloud_cancel(op);
    assert_int_equal(mb_cloud_inflight(e->cloud), 0);
    run_until(e->base, &never, 1, 400);
    assert_int_equal(r.called, 0);
    /* the client still works */
    CALL(e, r2, mb_cloud_nodes_list(e->cloud, &e->t, &nl, on_done, &r2));
    ASSERT_OK(r2);
    mb_cluster_clear(&cl);
    mb_node_list_clear(&nl);
}

/* Many ops at once on one loop. */
static void test_parallel_ops(void **state)
{
    env *e = *state;
    enum { N = 200 };
    static mb_cluster cl[N];
    static res r[N];
    int done = 0;
    long end;

    memset(cl, 0, sizeof(cl));
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        assert_non_null(mb_cloud_cluster_get(e->cloud, &e->t, &cl[i], on_done, &r[i]));
    end = now_ms() + 15000;
    while (done < N && now_ms() < end) {
        event_base_loop(e->base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].called;
    }
    assert_int_equal(done, N);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(r[i]);
        assert_string_equal(cl[i].security_group_id, SG);
        mb_cluster_clear(&cl[i]);
    }
}

/* ---- per-request retries, deadline, guard, owner ---- */

/* A cloud client on h with the retry options of ro (URLs filled in here). */
static mb_cloud *make_cloud_opts(mb_http *h, const mb_cloud_opts *ro)
{
    char cce[128], k8s[160], err[256];
    mb_cloud_opts o = *ro;
    mb_cloud *c;
    snprintf(cce, sizeof(cce), "http://%s", E.addr);
    snprintf(k8s, sizeof(k8s), "http://%s/k8s/{cluster_id}", E.addr);
    o.cce_url = cce;
    o.vpc_url = cce;
    o.k8s_url = k8s;
    c = mb_cloud_new(h, &o, err, sizeof(err));
    if (c == NULL)
        fail_msg("mb_cloud_new: %s", err);
    return c;
}

/* Requests in cloudsim's log after since with this method whose path contains needle. */
static int requests_method(long long since, const char *method, const char *needle)
{
    json_t *j = NULL, *it;
    size_t i;
    int n = 0;
    char path[64];
    snprintf(path, sizeof(path), "/admin/requests?since=%lld", since);
    admin("GET", path, NULL, &j);
    json_array_foreach(json_object_get(j, "requests"), i, it)
    {
        const char *p = json_string_value(json_object_get(it, "path"));
        const char *m = json_string_value(json_object_get(it, "method"));
        if (p && m && strstr(p, needle) && strcmp(m, method) == 0)
            n++;
    }
    json_decref(j);
    return n;
}

/* A Retry-After longer than the client's cap is cut to the cap. */
static void test_retry_after_capped(void **state)
{
    env *e = *state;
    mb_cloud_opts ro = {.retry_after_max_ms = 300};
    mb_cloud *c = make_cloud_opts(e->http, &ro);
    mb_cluster cl = {0};
    long long since;
    long t0, took;
    res r;

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"throttle\":true,"
              "\"retry_after\":5,\"count\":1}");
    since = requests_total();
    t0 = now_ms();
    CALL(e, r, mb_cloud_cluster_get(c, &e->t, &cl, on_done, &r));
    took = now_ms() - t0;
    ASSERT_OK(r);
    if (took < 290 || took > 3000)
        fail_msg("a 5 s Retry-After capped at 300 ms took %ld ms", took);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 429), 1);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 200), 1);
    mb_cluster_clear(&cl);
    mb_cloud_free(c);
}

/* 404 and 409 are the caller's to read: sent once, never retried. */
static void test_no_retry_of_4xx(void **state)
{
    env *e = *state;
    mb_cluster cl = {0};
    mb_release_spec spec = {.chart_id = "asm-istio-1-18",
                            .name = "istio-once",
                            .namespace = "istio-system",
                            .version = "1.18.7-r1"};
    mb_cloud_counters cc;
    long long since;
    res r;

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"error_status\":404,"
              "\"count\":3}");
    since = requests_total();
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &e->t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_int_equal(r.err.http_status, 404);
    assert_int_equal(requests_matching(since, "/clusters/" CLUSTER, 0), 1);
    admin("DELETE", "/admin/faults", NULL, NULL);

    CALL(e, r, mb_cloud_release_create(e->cloud, &e->t, &spec, on_done, &r));
    ASSERT_OK(r);
    since = requests_total();
    CALL(e, r, mb_cloud_release_create(e->cloud, &e->t, &spec, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN); /* "exists": the step observes it */
    assert_int_equal(r.err.http_status, 409);
    assert_null(strstr(r.err.msg, "gave up"));
    assert_int_equal(requests_method(since, "POST", "/releases"), 1);
    assert_int_equal(mutations_matching("istio-once", "release_create"), 1);
    mb_cloud_stats(e->cloud, &cc);
    assert_int_equal(cc.retries, 0);
    assert_int_equal(cc.gave_up, 0);
    mb_cluster_clear(&cl);
}

/* A listing of three pages whose second page fails once: only that page
 * is fetched again, the first is not re-read. */
static void test_paged_retry_one_page(void **state)
{
    env *e = *state;
    long n = -1;
    long long since;
    mb_cloud_counters cc;
    res r;

    /* faults match the path without its query: skip page 1, fail page 2 once */
    add_fault("{\"match\":{\"method\":\"GET\",\"path_prefix\":\"/k8s/" CLUSTER "/api/v1/pods\"},"
              "\"error_status\":503,\"skip\":1,\"count\":1}");
    since = requests_total();
    CALL(e, r, mb_cloud_k8s_pods_count(e->cloud, &e->t, &n, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(n, NPODS);
    assert_int_equal(requests_matching(since, "/api/v1/pods", 0), 4);
    assert_int_equal(requests_matching(since, "/api/v1/pods", 503), 1);
    assert_int_equal(requests_matching(since, "continue=", 200), 2);
    assert_int_equal(requests_matching(since, "continue=", 0), 3); /* page 2 twice */
    mb_cloud_stats(e->cloud, &cc);
    assert_int_equal(cc.retries, 1);
}

/* No attempt starts that could not end by the deadline: the target's, or
 * the client's per-call budget. */
static void test_deadline_stops_retries(void **state)
{
    env *e = *state;
    char err[256];
    mb_http_opts ho = {.ak = AK, .sk = SK, .timeout_ms = 300};
    mb_http *h = mb_http_new(e->base, &ho, err, sizeof(err));
    mb_cloud_opts ro = {.retry_base_ms = 50, .retry_max_ms = 100, .call_budget_ms = 900};
    mb_cloud *c = make_cloud_opts(h, &ro);
    mb_cloud_target t = e->t;
    mb_cloud_counters cc;
    mb_cluster cl = {0};
    long long since;
    long t0, took;
    int n503;
    char want[64];
    res r;

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"error_status\":503}");
    since = requests_total();
    t0 = now_ms();
    t.deadline_ms = (long long)t0 + 1500;
    CALL(e, r, mb_cloud_cluster_get(c, &t, &cl, on_done, &r));
    took = now_ms() - t0;
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_int_equal(r.err.http_status, 503);
    n503 = requests_matching(since, "/clusters/" CLUSTER, 503);
    if (n503 < 3)
        fail_msg("only %d attempts in a 1.5 s deadline with 50-100 ms backoff", n503);
    snprintf(want, sizeof(want), "(gave up after %d attempts)", n503);
    if (strstr(r.err.msg, want) == NULL)
        fail_msg("\"%s\" does not say %s", r.err.msg, want);
    /* the last attempt started no later than deadline - timeout */
    if (took > 1500)
        fail_msg("gave up after %ld ms, past the 1500 ms deadline", took);
    mb_cloud_stats(c, &cc);
    assert_int_equal(cc.retries, (uint64_t)(n503 - 1));
    assert_int_equal(cc.gave_up, 1);

    /* no deadline on the target: the budget (900 ms) bounds it */
    since = requests_total();
    t0 = now_ms();
    CALL(e, r, mb_cloud_cluster_get(c, &e->t, &cl, on_done, &r));
    took = now_ms() - t0;
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_non_null(strstr(r.err.msg, "(gave up after "));
    assert_true(requests_matching(since, "/clusters/" CLUSTER, 503) >= 2);
    if (took > 900)
        fail_msg("gave up after %ld ms, past the 900 ms budget", took);
    mb_cluster_clear(&cl);
    mb_cloud_free(c);
    mb_http_free(h);
}

typedef struct guard_st {
    int calls;
    int refuse_from; /* refuse from this call on (1-based); 0 = never */
    long timeout_ms; /* as last seen */
    const int *watch;
    int watched; /* *watch at the last call */
} guard_st;

static int test_guard(void *arg, long timeout_ms, mb_error *err)
{
    guard_st *g = arg;
    g->calls++;
    g->timeout_ms = timeout_ms;
    if (g->watch)
        g->watched = *g->watch;
    if (g->refuse_from && g->calls >= g->refuse_from) {
        mb_error_set(err, MB_AGAIN, "LeaseShort", "lease too short for a %ld ms call", timeout_ms);
        return -1;
    }
    return 0;
}

static void test_guard_refuses_mutations(void **state)
{
    env *e = *state;
    guard_st g = {.refuse_from = 1};
    mb_cloud_target t = e->t;
    mb_release_spec spec = {.chart_id = "asm-istio-1-18",
                            .name = "istio-guarded",
                            .namespace = "istio-system",
                            .version = "1.18.7-r1"};
    mb_cluster cl = {0};
    mb_cloud_counters cc;
    long long since;
    res r;

    t.guard = test_guard;
    t.guard_arg = &g;
    since = requests_total();
    CALL(e, r, mb_cloud_release_create(e->cloud, &t, &spec, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "LeaseShort");
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.timeout_ms, 5000); /* the request's timeout (setup) */
    assert_int_equal(requests_matching(since, "/releases", 0), 0);
    assert_int_equal(mutations_matching("istio-guarded", NULL), 0);
    mb_cloud_stats(e->cloud, &cc);
    assert_int_equal(cc.refused, 1);
    assert_int_equal(cc.retries, 0);

    /* a GET does not ask the guard */
    g = (guard_st){.refuse_from = 1};
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(g.calls, 0);

    /* asked again before the retry of a 503, which then goes through */
    g = (guard_st){0};
    add_fault("{\"match\":{\"method\":\"POST\",\"path_contains\":\"/releases\"},"
              "\"error_status\":503,\"count\":1}");
    since = requests_total();
    CALL(e, r, mb_cloud_release_create(e->cloud, &t, &spec, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(g.calls, 2);
    assert_int_equal(requests_matching(since, "/releases", 503), 1);
    assert_int_equal(requests_matching(since, "/releases", 201), 1);
    assert_int_equal(mutations_matching("istio-guarded", "release_create"), 1);

    /* the guard says no at the retry: one POST went out, not the second */
    g = (guard_st){.refuse_from = 2};
    spec.name = "istio-guarded-2";
    add_fault("{\"match\":{\"method\":\"POST\",\"path_contains\":\"/releases\"},"
              "\"error_status\":503,\"count\":1}");
    since = requests_total();
    CALL(e, r, mb_cloud_release_create(e->cloud, &t, &spec, on_done, &r));
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "LeaseShort");
    assert_int_equal(g.calls, 2);
    assert_int_equal(requests_matching(since, "/releases", 0), 1);
    assert_int_equal(mutations_matching("istio-guarded-2", NULL), 0);
    mb_cluster_clear(&cl);
}

static int refuse_silently(void *arg, long timeout_ms, mb_error *err)
{
    (void)arg;
    (void)timeout_ms;
    (void)err;
    return -1;
}

/* The guard runs when the request really starts: after its wait in
 * mb_http's queue, not when the op is created. */
static void test_guard_after_queue_wait(void **state)
{
    env *e = *state;
    char err[256];
    mb_http_opts ho = {.ak = AK, .sk = SK, .timeout_ms = 4000, .max_active = 1};
    mb_http *h = mb_http_new(e->base, &ho, err, sizeof(err));
    mb_cloud_opts ro = {0};
    mb_cloud *c = make_cloud_opts(h, &ro);
    mb_cloud_target t = e->t;
    mb_cluster cl = {0};
    guard_st g = {0};
    res r1 = {0}, r2 = {0};
    int never = 0;
    mb_k8s_kind kind = MB_K8S_NAMESPACE;

    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"latency_ms\":400,"
              "\"count\":1}");
    g.watch = &r1.called;
    t.guard = test_guard;
    t.guard_arg = &g;
    assert_non_null(mb_cloud_cluster_get(c, &e->t, &cl, on_done, &r1));
    assert_non_null(mb_cloud_k8s_label_patch(c, &t, kind, "apps", "istio", "x", on_done, &r2));
    run_until(e->base, &never, 1, 150);
    assert_int_equal(g.calls, 0); /* still queued behind the slow GET */
    run_until(e->base, &r2.called, 1, 10000);
    assert_int_equal(r1.called, 1);
    assert_int_equal(r2.called, 1);
    ASSERT_OK(r1);
    ASSERT_OK(r2);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.watched, 1); /* the GET had finished when the guard ran */
    assert_int_equal(g.timeout_ms, 4000);

    /* a guard that refuses without saying why: MB_AGAIN "Refused" */
    t.guard = refuse_silently;
    CALL(e, r2, mb_cloud_k8s_label_patch(c, &t, kind, "apps", "istio", "y", on_done, &r2));
    assert_int_equal(r2.err.status, MB_AGAIN);
    assert_string_equal(r2.err.code, "Refused");
    mb_cluster_clear(&cl);
    mb_cloud_free(c);
    mb_http_free(h);
}

/* Every op of one owner goes, in flight or waiting for a retry; the others stay. */
static void test_cancel_owner(void **state)
{
    env *e = *state;
    int owner_a, owner_b;
    mb_cloud_target ta = e->t, tb = e->t;
    mb_cluster cl[3] = {{0}};
    mb_node_list nl = {0};
    res ra[3] = {{0}}, rb = {0}, rn = {0};
    int never = 0;
    long long since;

    ta.owner = &owner_a;
    tb.owner = &owner_b;
    /* one op of A waits for its retry (Retry-After 1 s) */
    add_fault("{\"match\":{\"path_contains\":\"/nodes\"},\"throttle\":true,\"retry_after\":1,"
              "\"count\":1}");
    since = requests_total();
    assert_non_null(mb_cloud_nodes_list(e->cloud, &ta, &nl, on_done, &rn));
    run_until(e->base, &never, 1, 300);
    assert_int_equal(requests_matching(since, "/nodes", 429), 1);
    /* two more of A and one of B, held by latency */
    add_fault("{\"match\":{\"path_prefix\":\"/api/v3/projects\"},\"latency_ms\":300}");
    assert_non_null(mb_cloud_cluster_get(e->cloud, &ta, &cl[0], on_done, &ra[0]));
    assert_non_null(mb_cloud_cluster_get(e->cloud, &ta, &cl[1], on_done, &ra[1]));
    assert_non_null(mb_cloud_cluster_get(e->cloud, &tb, &cl[2], on_done, &rb));
    run_until(e->base, &never, 1, 50);
    assert_int_equal(mb_cloud_inflight(e->cloud), 4);
    assert_int_equal(mb_cloud_cancel_owner(e->cloud, NULL), 0);
    assert_int_equal(mb_cloud_cancel_owner(e->cloud, &owner_a), 3);
    assert_int_equal(mb_cloud_inflight(e->cloud), 1);
    run_until(e->base, &rb.called, 1, 5000);
    ASSERT_OK(rb);
    run_until(e->base, &never, 1, 1300); /* past A's retry time */
    assert_int_equal(rn.called + ra[0].called + ra[1].called, 0);
    assert_int_equal(requests_matching(since, "/nodes", 0), 1); /* the retry never went */
    assert_int_equal(mb_cloud_cancel_owner(e->cloud, &owner_a), 0);

    /* a client freed while an op waits for its retry: the timer goes with it */
    {
        mb_cloud_opts ro = {0};
        mb_cloud *c = make_cloud_opts(e->http, &ro);
        admin("DELETE", "/admin/faults", NULL, NULL);
        add_fault("{\"match\":{\"path_contains\":\"/nodes\"},\"throttle\":true,"
                  "\"retry_after\":1,\"count\":1}");
        since = requests_total();
        memset(&rn, 0, sizeof(rn));
        assert_non_null(mb_cloud_nodes_list(c, &ta, &nl, on_done, &rn));
        run_until(e->base, &never, 1, 300);
        assert_int_equal(requests_matching(since, "/nodes", 429), 1);
        mb_cloud_free(c);
        run_until(e->base, &never, 1, 1300);
        assert_int_equal(rn.called, 0);
        assert_int_equal(requests_matching(since, "/nodes", 0), 1);
    }
    for (int i = 0; i < 3; i++)
        mb_cluster_clear(&cl[i]);
    mb_node_list_clear(&nl);
}

/* ---- the shipped basic.json scenario ---- */

static mb_cloud_target basic(const char *cluster)
{
    return (mb_cloud_target){"proj-a", "eu-de", cluster, TP};
}

static void test_basic_prechecks(void **state)
{
    env *e = *state;
    mb_cloud_target t;
    mb_cluster cl = {0};
    mb_node_list nl = {0};
    mb_coredns cd;
    mb_k8s_meta m = {0};
    mb_sg_rule_list l = {0};
    long pods = 0;
    int allows;
    res r;

    t = basic("c-good");
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &t, &cl, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(cl.phase, "Available");
    assert_string_equal(cl.security_group_id, "sg-good");
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &t, MB_K8S_NAMESPACE, "istio-system", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 0);
    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &t, "sg-good", "ingress", "tcp", &l, on_done, &r));
    ASSERT_OK(r);
    allows = 0;
    for (size_t i = 0; i < l.n; i++)
        allows |= mb_sg_rule_allows(&l.items[i], 7443);
    assert_int_equal(allows, 0);

    t = basic("c-open7443");
    CALL(e, r, mb_cloud_sg_rules_list(e->cloud, &t, "sg-open", "ingress", "tcp", &l, on_done, &r));
    ASSERT_OK(r);
    allows = 0;
    for (size_t i = 0; i < l.n; i++)
        allows |= mb_sg_rule_allows(&l.items[i], 7443);
    assert_int_equal(allows, 1);

    t = basic("c-otherproj"); /* another project's cluster */
    CALL(e, r, mb_cloud_cluster_get(e->cloud, &t, &cl, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_int_equal(r.err.http_status, 404);

    t = basic("c-nodns");
    CALL(e, r, mb_cloud_k8s_coredns_ready(e->cloud, &t, &cd, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(cd.ready, 0);
    assert_non_null(strstr(cd.reason, "available"));

    t = basic("c-bigpods");
    CALL(e, r, mb_cloud_k8s_pods_count(e->cloud, &t, &pods, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(pods, 250);

    t = basic("c-leftover");
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &t, MB_K8S_NAMESPACE, "istio-system", &m, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(m.exists, 1);

    t = basic("c-labeled");
    CALL(e, r, mb_cloud_k8s_get(e->cloud, &t, MB_K8S_NODE, "lab-node-1", &m, on_done, &r));
    ASSERT_OK(r);
    assert_string_equal(json_string_value(json_object_get(m.labels, "istio")), "master");

    t = basic("c-inactive");
    CALL(e, r, mb_cloud_nodes_list(e->cloud, &t, &nl, on_done, &r));
    ASSERT_OK(r);
    assert_int_equal(nl.n, 2);
    for (size_t i = 0; i < nl.n; i++)
        assert_string_equal(nl.items[i].phase,
                            strcmp(nl.items[i].name, "inact-node-1") == 0 ? "Active" : "Abnormal");
    mb_cluster_clear(&cl);
    mb_node_list_clear(&nl);
    mb_k8s_meta_clear(&m);
    mb_sg_rule_list_clear(&l);
}

static void test_basic_failures(void **state)
{
    env *e = *state;
    mb_cloud_target t = basic("c-sgfull");
    mb_sg_rule_spec spec = {.security_group_id = "sg-full", .multiport = "7443"};
    mb_sg_rule_created cr = {0};
    mb_release rel = {0};
    mb_release_spec rs = {.chart_id = "asm-istio-1-18",
                          .name = "istio-master",
                          .namespace = "istio-system",
                          .version = "1.18.7-r1"};
    long end;
    char err[256];
    res r;

    CALL(e, r, mb_cloud_sg_rule_create(e->cloud, &t, &spec, &cr, on_done, &r));
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "VPC.9905");

    t = basic("c-relfail");
    CALL(e, r, mb_cloud_release_create(e->cloud, &t, &rs, on_done, &r));
    ASSERT_OK(r);
    end = now_ms() + 5000;
    do {
        CALL(e, r,
             mb_cloud_release_get(e->cloud, &t, "istio-system", "istio-master", &rel, on_done, &r));
        ASSERT_OK(r);
        if (strcmp(rel.status, "PENDING_INSTALL") != 0)
            break;
        usleep(50000);
    } while (now_ms() < end);
    assert_string_equal(rel.status, "FAILED");

    /* the proj-a-only key on another project's cluster: 403, permanent */
    {
        mb_http_opts ho = {.ak = "MESHBUYPROJAONLYKEY0",
                           .sk = "meshbuy-proj-a-only-secret-000000000000"};
        mb_http *h = mb_http_new(e->base, &ho, err, sizeof(err));
        mb_cloud *c = make_cloud(h);
        mb_cluster cl = {0};
        mb_cloud_target ot = {"proj-b", "eu-de", "c-otherproj", NULL};
        CALL(e, r, mb_cloud_cluster_get(c, &ot, &cl, on_done, &r));
        assert_int_equal(r.err.status, MB_PERM);
        assert_int_equal(r.err.http_status, 403);
        mb_cluster_clear(&cl);
        mb_cloud_free(c);
        mb_http_free(h);
    }
    mb_sg_rule_created_clear(&cr);
    mb_release_clear(&rel);
}

/* The tree-less page reader: the count and the token of valid lists, and
 * every kind of invalid JSON refused as json_loadb would. */
static void test_list_count(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"items\":[1,2]",
        "{\"items\":[1,2]} x",
        "{\"items\":[1,]}",
        "{\"items\":[01]}",
        "{\"items\":[1.]}",
        "{\"items\":[-]}",
        "{\"items\":[1e]}",
        "{\"items\":[tru]}",
        "{\"items\":{}}",
        "{\"items\":\"x\"}",
        "{\"items\":[\"a\tb\"]}",
        "{\"items\":[\"\\x\"]}",
        "{\"items\":[\"\\u12\"]}",
        "{\"items\":[\"\\udc00\"]}",
        "{\"items\":[\"\\ud800x\"]}",
        "{\"items\":[\"\xc3\"]}",
        "{\"items\":[\"\xc0\xaf\"]}",
        "{\"items\":[\"\xed\xa0\x80\"]}",
        "{\"items\":[],}",
        "{\"items\" []}",
        "{items:[]}",
        "{\"metadata\":{\"continue\":\"a\\u0000b\"},\"items\":[]}",
    };
    char cont[16], deep[4200];
    long n = -1;

    (void)state;
    const char *ok = " {\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":\"meta.k8s.io/v1\","
                     "\"metadata\":{\"resourceVersion\":\"7\",\"continue\":\"c1.\\u0041\\/x\","
                     "\"remainingItemCount\":703},"
                     "\"items\":[{\"metadata\":{\"name\":\"a\",\"labels\":{\"k\":[1,-2.5e+3,true,"
                     "false,null]}}},{},\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\ud83d\\ude00\"]} ";
    assert_int_equal(mb_k8s_list_count(ok, strlen(ok), &n, cont, sizeof(cont)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(cont, "c1.A/x");
    const char *last = "{\"items\":[],\"metadata\":{},\"x\":{\"items\":[1]}}";
    assert_int_equal(mb_k8s_list_count(last, strlen(last), &n, cont, sizeof(cont)), 0);
    assert_int_equal(n, 0);
    assert_string_equal(cont, "");
    const char *nul = "{\"items\":null,\"metadata\":{\"continue\":7}}";
    assert_int_equal(mb_k8s_list_count(nul, strlen(nul), &n, cont, sizeof(cont)), 0);
    assert_int_equal(n, 0);
    assert_string_equal(cont, "");
    const char *full = "{\"kind\":\"PodList\",\"items\":[{\"spec\":{}},{\"spec\":{}}]}";
    assert_int_equal(mb_k8s_list_count(full, strlen(full), &n, cont, sizeof(cont)), 0);
    assert_int_equal(n, 2);
    /* a token that does not fit is refused, not cut */
    const char *lng = "{\"metadata\":{\"continue\":\"0123456789abcdef\"},\"items\":[]}";
    assert_int_equal(mb_k8s_list_count(lng, strlen(lng), &n, cont, sizeof(cont)), -1);
    assert_string_equal(cont, "");
    /* a NUL inside the body is not JSON */
    assert_int_equal(mb_k8s_list_count("{\"items\":[]}\0", 13, &n, cont, sizeof(cont)), -1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = -1;
        if (mb_k8s_list_count(bad[i], strlen(bad[i]), &n, cont, sizeof(cont)) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(n, 0);
    }
    /* nesting: as deep as jansson reads (2,048 values), and no deeper */
    for (int depth = 2046; depth <= 2047; depth++) {
        size_t k = 0;
        k += (size_t)snprintf(deep + k, sizeof(deep) - k, "{\"items\":[");
        for (int i = 0; i < depth; i++)
            deep[k++] = '[';
        for (int i = 0; i < depth; i++)
            deep[k++] = ']';
        k += (size_t)snprintf(deep + k, sizeof(deep) - k, "]}");
        assert_int_equal(mb_k8s_list_count(deep, k, &n, cont, sizeof(cont)),
                         depth == 2046 ? 0 : -1);
    }
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_multiport_table),
        cmocka_unit_test(test_rule_allows),
        cmocka_unit_test(test_deployment_ready_rule),
        cmocka_unit_test(test_list_count),
        cmocka_unit_test(test_new_checks_templates),
        cmocka_unit_test(test_immediate_failure_deferred),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test_setup_teardown(test_url_templates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_and_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sg_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_k8s_objects_and_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_k8s_get_metadata_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pods_count_and_410, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coredns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workloads_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mangled_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_sk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_retry_of_4xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paged_retry_one_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_stops_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_refuses_mutations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_after_queue_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_owner, setup, teardown),
    };
    const struct CMUnitTest shipped[] = {
        cmocka_unit_test_setup_teardown(test_basic_prechecks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic_failures, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("cloud_pure", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("cloud_cloudsim", live, start_cloudsim, stop_cloudsim);
    failed +=
        cmocka_run_group_tests_name("cloud_basic", shipped, start_cloudsim_basic, stop_cloudsim);
    return failed ? 1 : 0;
}
