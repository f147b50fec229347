/* mb_version.h: the version of the build, and the --version flag every binary shares. */
#ifndef MB_VERSION_H
#define MB_VERSION_H

/* `git describe --always --dirty` of the tree the binary was built from (the
 * Makefile passes it as -DMB_VERSION), "dev" when built without git.  Static. */
const char *mb_version(void);

/* When argv[1] is "--version": prints "<prog> <version>" on stdout and returns
 * 1 (the caller exits 0).  Else 0. */
int mb_version_flag(int argc, char **argv, const char *prog);

#endif
