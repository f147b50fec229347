/* mb_version.c: the build's version (see mb_version.h).  Only this file gets the
 * -DMB_VERSION define, so a new commit recompiles one file, not the tree. */
#include "mb_version.h"

#include <stdio.h>
#include <string.h>

#ifndef MB_VERSION
#define MB_VERSION "dev"
#endif

const char *mb_version(void)
{
    return MB_VERSION[0] ? MB_VERSION : "dev";
}

int mb_version_flag(int argc, char **argv, const char *prog)
{
    if (argc < 2 || strcmp(argv[1], "--version") != 0)
        return 0;
    printf("%s %s\n", prog, mb_version());
    return 1;
}
