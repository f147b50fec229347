/* mb_sagadef.c: the sagas this build knows, and the lookups over definitions. */
#include "mb_sagadef.h"

#include <string.h>

const mb_saga_def *const mb_saga_defs[] = {
    &mb_saga_create,
    &mb_saga_delete,
};
const size_t mb_saga_defs_count = sizeof(mb_saga_defs) / sizeof(mb_saga_defs[0]);

const mb_saga_def *mb_saga_def_find(const mb_saga_def *const *defs, size_t n, const char *name)
{
    if (name == NULL || name[0] == '\0')
        name = MB_SAGA_DEFAULT;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(defs[i]->name, name) == 0)
            return defs[i];
    }
    return NULL;
}

int mb_saga_def_step(const mb_saga_def *d, const char *name)
{
    for (int i = 0; name && i < d->nsteps; i++) {
        if (strcmp(d->steps[i]->name, name) == 0)
            return i;
    }
    return -1;
}
