/* test_order.c: the order parser: every fixture, reasons, salvage, round trips, builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_order.h"

static const char *root(void)
{
    const char *r = getenv("MB_ROOT");
    return r && *r ? r : ".";
}

/* Reads a whole file; new buffer (free), length in *len. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

#define BUY                                                                                    \
    "{\"specversion\":\"1.0\",\"id\":\"ce-1\",\"source\":\"billing\","                         \
    "\"type\":\"com.meshbuy.order.buy.v1\",\"time\":\"2024-05-01T12:00:00Z\","                 \
    "\"datacontenttype\":\"application/json\","                                                \
    "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","             \
    "\"data\":{\"order_id\":\"ord-1\",\"account_id\":\"acc1\",\"project_id\":\"proj1\","       \
    "\"region\":\"eu-de-01\",\"mesh\":{\"name\":\"%s\",\"edition\":\"basic\","                 \
    "\"istio_version\":\"%s\",\"cluster_id\":\"c-1\",\"control_plane_nodes\":[\"n1\",\"n2\"]," \
    "\"sidecar\":{\"namespaces\":[\"default\"],\"restart_existing\":true}}}}"

static int parse_buy(const char *name, const char *ver, mb_order **o, mb_order_err *err)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, BUY, name, ver);
    return mb_order_parse(buf, (size_t)n, o, err);
}

/* Every fixture: valid parses, invalid fails with a non-empty reason. */
static void walk(const char *kind, int want_ok)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/order/%s", root(), kind);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *buf = slurp(path, &len);
        mb_order *o = NULL;
        mb_order_err err;
        int kafka = strstr(e->d_name, ".kafka.json") != NULL;
        int rc = kafka ? mb_order_parse_kafka_json(buf, len, NULL, &o, &err)
                       : mb_order_parse(buf, len, &o, &err);
        if ((rc == 0) != want_ok)
            fail_msg("%s: expected %s, got %s (%s)", path, want_ok ? "valid" : "invalid",
                     rc == 0 ? "valid" : "invalid", err.reason);
        if (want_ok) {
            assert_non_null(o);
            assert_string_equal(err.reason, "");
        } else {
            assert_null(o);
            assert_true(strlen(err.reason) > 0);
        }
        mb_order_free(o);
        free(buf);
        count++;
    }
    closedir(d);
    assert_true(count >= (want_ok ? 8 : 20));
}

static void fixtures_valid(void **state)
{
    (void)state;
    walk("valid", 1);
}

static void fixtures_invalid(void **state)
{
    (void)state;
    walk("invalid", 0);
}

static void buy_fields(void **state)
{
    (void)state;
    mb_order *o;
    mb_order_err err;
    assert_int_equal(parse_buy("shop-mesh", "1.18", &o, &err), 0);
    assert_int_equal(o->kind, MB_ORDER_BUY);
    assert_string_equal(o->order_id, "ord-1");
    assert_string_equal(o->account_id, "acc1");
    assert_string_equal(o->project_id, "proj1");
    assert_string_equal(o->region, "eu-de-01");
    assert_string_equal(o->mesh_name, "shop-mesh");
    assert_string_equal(o->edition, "basic");
    assert_string_equal(o->istio_version, "1.18");
    assert_string_equal(o->cluster_id, "c-1");
    assert_int_equal(o->n_nodes, 2);
    assert_string_equal(o->nodes[1], "n2");
    assert_null(o->nodes[2]);
    assert_int_equal(o->n_namespaces, 1);
    assert_string_equal(o->namespaces[0], "default");
    assert_int_equal(o->restart_existing, 1);
    assert_string_equal(o->traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_null(o->subject);
    assert_null(o->reason);
    char key[160];
    assert_string_equal(mb_order_key(o, key, sizeof key), "acc1/shop-mesh");
    mb_order_free(o);
}

static void reasons_are_precise(void **state)
{
    (void)state;
    static const struct {
        const char *name, *ver, *reason;
    } cases[] = {
        {"shop-", "1.18", "data.mesh.name: must end with a letter or digit"},
        {"abc", "1.18", "data.mesh.name: must be at least 4 characters"},
        {"1abc", "1.18", "data.mesh.name: must start with a lowercase letter"},
        {"Shop", "1.18", "data.mesh.name: may contain only lowercase letters, digits and '-'"},
        {"shop", "1.19", "data.mesh.istio_version: must be one of 1.8, 1.13, 1.15, 1.18"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mb_order *o;
        mb_order_err err;
        assert_int_equal(parse_buy(cases[i].name, cases[i].ver, &o, &err), -1);
        assert_null(o);
        assert_string_equal(err.reason, cases[i].reason);
    }
}

/* A rejected order still yields what can be trusted of its identity. */
static void salvage_identity(void **state)
{
    (void)state;
    mb_order *o;
    mb_order_err err;
    assert_int_equal(parse_buy("shop", "9.9", &o, &err), -1);
    assert_int_equal(err.kind, MB_ORDER_BUY);
    assert_string_equal(err.order_id, "ord-1");
    assert_string_equal(err.account_id, "acc1");
    assert_string_equal(err.mesh_name, "shop");
    assert_string_equal(err.cluster_id, "c-1");
    assert_string_equal(err.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");

    /* an invalid name is not salvaged: it must never become a Kafka key */
    assert_int_equal(parse_buy("Bad/Name", "1.18", &o, &err), -1);
    assert_string_equal(err.mesh_name, "");
    assert_string_equal(err.order_id, "ord-1");

    /* not JSON: nothing to salvage, the reason says where */
    assert_int_equal(mb_order_parse("{\"a\":", 5, &o, &err), -1);
    assert_int_equal(err.kind, MB_ORDER_UNKNOWN);
    assert_non_null(strstr(err.reason, "not JSON"));
    assert_string_equal(err.order_id, "");
}

static void size_cap_and_edges(void **state)
{
    (void)state;
    mb_order *o;
    mb_order_err err;
    size_t big = MB_ORDER_MAX_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    assert_int_equal(mb_order_parse(buf, big, &o, &err), -1);
    assert_non_null(strstr(err.reason, "more than the 65536 allowed"));
    free(buf);
    assert_int_equal(mb_order_parse("", 0, &o, &err), -1);
    assert_string_equal(err.reason, "message: empty");
    /* duplicate keys are refused (the last-one-wins of other readers would hide a field) */
    const char *dup = "{\"specversion\":\"1.0\",\"specversion\":\"1.0\"}";
    assert_int_equal(mb_order_parse(dup, strlen(dup), &o, &err), -1);
    assert_non_null(strstr(err.reason, "duplicate"));
    /* err may be NULL */
    assert_int_equal(mb_order_parse("[]", 2, &o, NULL), -1);
    /* not NUL-terminated: parse only len bytes */
    char raw[2048];
    int n = snprintf(raw, sizeof raw, BUY, "shop-mesh", "1.8");
    raw[n] = 'x';
    assert_int_equal(mb_order_parse(raw, (size_t)n, &o, &err), 0);
    mb_order_free(o);
}

static void json_round_trip(void **state)
{
    (void)state;
    mb_order *o, *o2;
    mb_order_err err;
    assert_int_equal(parse_buy("shop-mesh", "1.15", &o, &err), 0);
    json_t *j = mb_order_to_json(o);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    assert_int_equal(mb_order_parse(s, strlen(s), &o2, &err), 0);
    json_t *j2 = mb_order_to_json(o2);
    char *s2 = json_dumps(j2, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, s2);
    json_t *d = mb_order_data_json(o2);
    assert_string_equal(json_string_value(json_object_get(d, "order_id")), "ord-1");
    assert_true(json_is_true(json_object_get(json_object_get(json_object_get(d, "mesh"), "sidecar"),
                                             "restart_existing")));
    json_decref(d);
    json_decref(j2);
    free(s);
    free(s2);
    mb_order_free(o);
    mb_order_free(o2);
}

static void cancel_round_trip(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "order_id", "ord-9", "account_id", "acc1",
                             "mesh_name", "shop-mesh", "reason", "changed mind");
    char tp[MB_TRACEPARENT_LEN + 1];
    assert_int_equal(mb_order_new_traceparent(tp, sizeof tp), 0);
    json_t *env = mb_order_envelope(MB_ORDER_CANCEL, data, NULL, tp);
    assert_non_null(env);
    mb_order *o;
    mb_order_err err;
    assert_int_equal(mb_order_from_json(env, &o, &err), 0);
    assert_int_equal(o->kind, MB_ORDER_CANCEL);
    assert_string_equal(o->source, "meshbuy-cli");
    assert_string_equal(o->subject, "acc1/shop-mesh");
    assert_string_equal(o->reason, "changed mind");
    assert_string_equal(o->traceparent, tp);
    assert_null(o->project_id);
    json_t *back = mb_order_to_json(o);
    assert_true(json_equal(back, env));
    json_decref(back);
    json_decref(env);
    mb_order_free(o);
}

static void delete_round_trip(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:b}}", "order_id", "del-1",
                             "account_id", "acc1", "project_id", "proj1", "region", "eu-de-01",
                             "mesh", "name", "shop-mesh", "sidecar", "restart_existing", 1);
    json_t *env = mb_order_envelope(MB_ORDER_DELETE, data, NULL, NULL);
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "type")), MB_TYPE_ORDER_DELETE);
    mb_order *o;
    mb_order_err err;
    assert_int_equal(mb_order_from_json(env, &o, &err), 0);
    assert_int_equal(o->kind, MB_ORDER_DELETE);
    assert_string_equal(mb_order_kind_name(o->kind), "delete");
    assert_string_equal(o->subject, "acc1/shop-mesh");
    assert_string_equal(o->mesh_name, "shop-mesh");
    assert_string_equal(o->project_id, "proj1");
    assert_string_equal(o->region, "eu-de-01");
    assert_int_equal(o->restart_existing, 1);
    assert_null(o->cluster_id); /* a delete names no cluster: the create it undoes does */
    assert_int_equal(o->n_nodes, 0);
    char key[160];
    assert_string_equal(mb_order_key(o, key, sizeof key), "acc1/shop-mesh");
    json_t *back = mb_order_to_json(o);
    assert_true(json_equal(back, env));
    json_decref(back);
    mb_order_free(o);
    /* a buy's mesh fields are refused in a delete, with the path that names them */
    json_object_set_new(json_object_get(json_object_get(env, "data"), "mesh"), "cluster_id",
                        json_string("c-1"));
    assert_int_equal(mb_order_from_json(env, &o, &err), -1);
    assert_non_null(strstr(err.reason, "data.mesh"));
    assert_int_equal(err.kind, MB_ORDER_DELETE);
    assert_string_equal(err.order_id, "del-1");
    assert_string_equal(err.mesh_name, "shop-mesh");
    json_decref(env);
}

static void builders(void **state)
{
    (void)state;
    char a[64], b[64], tp[MB_TRACEPARENT_LEN + 1];
    assert_int_equal(mb_order_new_id("ord-", a, sizeof a), 0);
    assert_int_equal(mb_order_new_id("ord-", b, sizeof b), 0);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_null(mb_order_check_order_id(a));
    assert_int_equal(mb_order_new_id("ord-", a, 10), -1);
    assert_int_equal(mb_order_new_traceparent(tp, sizeof tp), 0);
    assert_true(mb_order_traceparent_valid(tp));
    assert_false(
        mb_order_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(
        mb_order_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"));
    /* an envelope with bad data is built, and then refused by the parser */
    json_t *env = mb_order_envelope(MB_ORDER_BUY, json_pack("{s:s}", "order_id", "x"), "me", NULL);
    assert_non_null(env);
    mb_order *o;
    mb_order_err err;
    assert_int_equal(mb_order_from_json(env, &o, &err), -1);
    assert_string_equal(err.reason, "data.account_id: is required");
    json_decref(env);
    assert_null(mb_order_envelope(MB_ORDER_UNKNOWN, json_object(), NULL, NULL));
    /* the subject keeps 64 bytes of each, not half of a character (found by fuzz_dlq_edit:
     * the envelope was refused, and reported as out of memory) */
    char acc[80] = "a";
    for (int i = 0; i < 35; i++)
        memcpy(acc + 1 + 2 * i, "\xc3\xa9", 3); /* e-acute: byte 64 is the first half of one */
    env = mb_order_envelope(
        MB_ORDER_BUY, json_pack("{s:s, s:s}", "account_id", acc, "mesh_name", "m"), "me", NULL);
    assert_non_null(env);
    const char *subject = json_string_value(json_object_get(env, "subject"));
    assert_non_null(subject);
    assert_int_equal(strlen(subject), 63 + 2);
    assert_memory_equal(subject, acc, 63);
    json_decref(env);
    assert_null(mb_order_check_namespace("shop"));
    assert_non_null(mb_order_check_namespace("kube-system"));
    assert_string_equal(mb_order_kind_name(MB_ORDER_CANCEL), "cancel");
}

/* ------------------------------------------------- the Kafka protocol binding */

#define H(n, v)             \
    {                       \
        n, v, sizeof(v) - 1 \
    }
#define DATA                                                                         \
    "{\"order_id\":\"ord-1\",\"account_id\":\"acc1\",\"project_id\":\"proj1\","      \
    "\"region\":\"eu-de-01\",\"mesh\":{\"name\":\"mesh-one\",\"edition\":\"basic\"," \
    "\"istio_version\":\"1.18\",\"cluster_id\":\"c-1\",\"control_plane_nodes\":[\"n1\"]}}"

static void structured_mode_is_the_value(void **state)
{
    (void)state;
    char buf[2048], *canon = NULL;
    size_t clen;
    mb_order *o = NULL;
    mb_order_err err;
    int n = snprintf(buf, sizeof buf, BUY, "mesh-one", "1.18");
    mb_order_header h[] = {H("traceparent", "x"),
                           H("content-type", "application/cloudevents+json; charset=utf-8")};
    assert_int_equal(mb_order_parse_message(h, 2, buf, (size_t)n, &canon, &clen, &o, &err), 0);
    assert_int_equal(clen, (size_t)n);
    assert_memory_equal(canon, buf, clen); /* byte for byte: stored as received */
    assert_string_equal(o->mesh_name, "mesh-one");
    mb_order_free(o);
    free(canon);
    /* a batch is not an order */
    mb_order_header b[] = {H("content-type", "application/cloudevents-batch+json")};
    assert_int_equal(mb_order_parse_message(b, 1, buf, (size_t)n, &canon, &clen, &o, &err), -1);
    assert_null(canon);
    assert_null(o);
    assert_non_null(strstr(err.reason, "no batches"));
}

static void binary_mode_maps_headers(void **state)
{
    (void)state;
    char *canon = NULL;
    size_t clen;
    mb_order *o = NULL;
    mb_order_err err;
    /* what the JavaScript SDK's Kafka.binary() sends: no content-type header */
    mb_order_header h[] = {
        H("ce_specversion", "1.0"),
        H("ce_id", "e-1"),
        H("ce_source", "billing"),
        H("ce_type", "com.meshbuy.order.buy.v1"),
        H("ce_time", "2024-05-01T12:00:00.000Z"),
        H("ce_partitionkey", "acc1/mesh-one"),
        H("ce_traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        H("other", "ignored"),
    };
    assert_int_equal(mb_order_parse_message(h, 8, DATA, strlen(DATA), &canon, &clen, &o, &err), 0);
    assert_string_equal(o->event_id, "e-1");
    assert_string_equal(o->traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_string_equal(o->time, "2024-05-01T12:00:00.000Z");
    json_t *env = json_loads(canon, 0, NULL);
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "partitionkey")), "acc1/mesh-one");
    assert_null(json_object_get(env, "datacontenttype"));
    assert_null(json_object_get(env, "other"));
    assert_true(json_is_object(json_object_get(env, "data")));
    json_decref(env);
    mb_order_free(o);
    free(canon);

    /* a content-type with parameters becomes datacontenttype; time is optional */
    mb_order_header p[] = {H("ce_specversion", "1.0"), H("ce_id", "e-2"), H("ce_source", "b"),
                           H("ce_type", "com.meshbuy.order.buy.v1"),
                           H("content-type", "application/json; charset=utf-8")};
    assert_int_equal(mb_order_parse_message(p, 5, DATA, strlen(DATA), &canon, &clen, &o, &err), 0);
    assert_null(o->time);
    assert_non_null(strstr(canon, "\"datacontenttype\":\"application/json; charset=utf-8\""));
    mb_order_free(o);
    free(canon);
}

static void binary_mode_refusals(void **state)
{
    (void)state;
    char *canon = NULL;
    size_t clen;
    mb_order *o = NULL;
    mb_order_err err;
    mb_order_header none[] = {H("traceparent", "x")};
    assert_int_equal(mb_order_canonical(none, 1, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_non_null(strstr(err.reason, "not a CloudEvent"));
    assert_int_equal(mb_order_canonical(NULL, 0, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_null(canon);

    mb_order_header xml[] = {H("ce_specversion", "1.0"), H("content-type", "application/xml")};
    assert_int_equal(mb_order_canonical(xml, 2, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_non_null(strstr(err.reason, "must be application/json"));

    mb_order_header twice[] = {H("ce_specversion", "1.0"), H("ce_id", "a"), H("ce_id", "b")};
    assert_int_equal(mb_order_canonical(twice, 3, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_string_equal(err.reason, "header ce_id: given more than once");

    mb_order_header upper[] = {H("ce_specversion", "1.0"), H("ce_Id", "a")};
    assert_int_equal(mb_order_canonical(upper, 2, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_non_null(strstr(err.reason, "header ce_Id"));

    mb_order_header bad_utf8[] = {H("ce_specversion", "1.0"), H("ce_id", "\xff")};
    assert_int_equal(mb_order_canonical(bad_utf8, 2, DATA, strlen(DATA), &canon, &clen, &err), -1);
    assert_non_null(strstr(err.reason, "not UTF-8"));

    mb_order_header many[MB_ORDER_MAX_HEADERS + 1];
    for (size_t i = 0; i <= MB_ORDER_MAX_HEADERS; i++)
        many[i] = (mb_order_header)H("ce_specversion", "1.0");
    assert_int_equal(
        mb_order_canonical(many, MB_ORDER_MAX_HEADERS + 1, DATA, strlen(DATA), &canon, &clen, &err),
        -1);
    assert_non_null(strstr(err.reason, "headers, more than"));

    /* strict data: an unknown field is refused, and the identity is still salvaged */
    mb_order_header ok[] = {H("ce_specversion", "1.0"), H("ce_id", "e"), H("ce_source", "b"),
                            H("ce_type", "com.meshbuy.order.buy.v1")};
    const char *bad = "{\"order_id\":\"ord-9\",\"account_id\":\"acc1\",\"colour\":1}";
    assert_int_equal(mb_order_parse_message(ok, 4, bad, strlen(bad), &canon, &clen, &o, &err), -1);
    assert_null(canon);
    assert_null(o);
    assert_string_equal(err.reason, "data: unknown field 'colour'");
    assert_string_equal(err.order_id, "ord-9");
}

/* to_binary then canonical gives the envelope back, whatever its attributes. */
static void binary_round_trip(void **state)
{
    (void)state;
    char buf[2048], *canon = NULL;
    size_t clen;
    mb_order_binary b;
    mb_order_header h[MB_ORDER_MAX_HEADERS];
    int n = snprintf(buf, sizeof buf, BUY, "mesh-one", "1.18");
    json_t *env = json_loadb(buf, (size_t)n, 0, NULL);
    json_object_set_new(env, "partitionkey", json_string("acc1/mesh-one"));
    json_object_set_new(env, "dataschema", json_string("https://example/s.json"));
    assert_int_equal(mb_order_to_binary(env, &b), 0);
    assert_null(strstr(b.value, "specversion"));
    for (size_t i = 0; i < b.n; i++) {
        h[i] = (mb_order_header){b.names[i], b.values[i], strlen(b.values[i])};
        assert_string_not_equal(b.names[i], "ce_datacontenttype");
    }
    assert_int_equal(mb_order_canonical(h, b.n, b.value, b.value_len, &canon, &clen, NULL), 0);
    json_t *back = json_loads(canon, 0, NULL);
    assert_true(json_equal(env, back));
    json_decref(back);
    free(canon);
    mb_order_binary_free(&b);
    json_decref(env);
    json_t *empty = json_object();
    assert_int_equal(mb_order_to_binary(empty, &b), -1); /* no data */
    json_decref(empty);
}

static void mesh_id_is_stable(void **state)
{
    (void)state;
    char id[MB_MESH_ID_LEN + 1];
    /* sha256("acct1/mesh-one#ord-1") starts 3f74f33e4ba493f0 */
    assert_string_equal(mb_order_mesh_id("acct1/mesh-one", "ord-1", id, sizeof id),
                        "mesh-3f74f33e4ba493f0");
    assert_int_equal(strlen(id), MB_MESH_ID_LEN);
    assert_null(mb_order_check_id(id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixtures_valid),
        cmocka_unit_test(fixtures_invalid),
        cmocka_unit_test(buy_fields),
        cmocka_unit_test(reasons_are_precise),
        cmocka_unit_test(salvage_identity),
        cmocka_unit_test(size_cap_and_edges),
        cmocka_unit_test(json_round_trip),
        cmocka_unit_test(cancel_round_trip),
        cmocka_unit_test(delete_round_trip),
        cmocka_unit_test(builders),
        cmocka_unit_test(structured_mode_is_the_value),
        cmocka_unit_test(binary_mode_maps_headers),
        cmocka_unit_test(binary_mode_refusals),
        cmocka_unit_test(binary_round_trip),
        cmocka_unit_test(mesh_id_is_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
