/* SPDX-License-Identifier: MIT */
/*
 * guide.h - the agent's guide at the mount root (.stashfs-guide).
 * Not a public header.
 */
#ifndef STASHFS_GUIDE_H
#define STASHFS_GUIDE_H

#include <stdbool.h>
#include <stddef.h>

#include "store_priv.h"

#define GUIDE_NAME ".stashfs-guide"
/* The lines around the part of core/guide.md a mount fills with its settings. */
#define GUIDE_BEGIN "<!-- stashfs:settings -->\n"
#define GUIDE_END "<!-- /stashfs:settings -->\n"

/* Is @path the guide? */
bool guide_path(const char *path);

/*
 * The guide for this mount: core/guide.md as built in, with the part
 * between GUIDE_BEGIN and GUIDE_END replaced by the store's settings now.
 * Returns a new NUL-terminated text (caller frees) of *@len bytes, or NULL
 * with *@err set.
 */
char *guide_render(struct stash_store *st, size_t *len, int *err);

#endif
