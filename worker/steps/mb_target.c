/* mb_target.c: the delete saga's view of the create it undoes (see mb_target.h). */
#include "mb_target.h"

#include <stdlib.h>
#include <string.h>

static const json_t *target_of(const json_t *state)
{
    const json_t *t = json_object_get(state, "target");

    return json_is_object(t) ? t : NULL;
}

const json_t *mb_target(const mb_sjob *j)
{
    return target_of(j->state);
}

const char *mb_target_order_id(const mb_sjob *j)
{
    return json_string_value(json_object_get(mb_target(j), "order_id"));
}

const json_t *mb_target_ck(const mb_sjob *j, const char *create_step)
{
    const json_t *steps = json_object_get(json_object_get(mb_target(j), "state"), "steps");

    return json_object_get(json_object_get(steps, create_step), "ck");
}

const char *mb_target_mesh_of(const json_t *state)
{
    return json_string_value(json_object_get(target_of(state), "order_id"));
}

/* As the order's namespaces (NULL-terminated, each new), those whose istio-injection the
 * create changed to enabled.  0, or -1 out of memory (what was set is freed with o). */
static int labeled_namespaces(const json_t *t, mb_order *o)
{
    const json_t *steps = json_object_get(json_object_get(t, "state"), "steps");
    const json_t *prior =
        json_object_get(json_object_get(json_object_get(steps, "inject"), "ck"), "prior");
    const char *name;
    json_t *val;

    o->namespaces = calloc(json_object_size(prior) + 1, sizeof(*o->namespaces));
    if (o->namespaces == NULL)
        return -1;
    json_object_foreach((json_t *)prior, name, val)
    {
        const char *s = json_string_value(val);
        char *copy;
        if (s && strcmp(s, "enabled") == 0)
            continue; /* enabled before the create: not the create's doing */
        if (o->n_namespaces >= MB_ORDER_MAX_NAMESPACES)
            break;
        copy = strdup(name);
        if (copy == NULL)
            return -1;
        o->namespaces[o->n_namespaces++] = copy;
    }
    return 0;
}

int mb_target_resolve(mb_order *o, const json_t *state)
{
    const json_t *t = target_of(state);
    const json_t *data = json_object_get(json_object_get(t, "order"), "data");
    const char *cluster =
        json_string_value(json_object_get(json_object_get(data, "mesh"), "cluster_id"));

    if (t == NULL || o->cluster_id != NULL)
        return 0; /* no mesh (precheck says so), or resolved already */
    if (cluster) {
        o->cluster_id = strdup(cluster);
        if (o->cluster_id == NULL)
            return -1;
    }
    return labeled_namespaces(t, o);
}
