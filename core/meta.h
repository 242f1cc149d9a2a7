/* SPDX-License-Identifier: MIT */
/*
 * meta.h - the metadata view .stashfs-meta (meta.c).
 * Not a public header.
 */
#ifndef STASHFS_META_H
#define STASHFS_META_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

/* The object a view path describes; *@dir_file for a directory's own file. */
int meta_target(const char *path, char *out, size_t size, bool *dir_file);
int meta_stat(struct stash_store *st, const char *path, struct stat *out);
/* The metadata document of @target (caller frees); NULL with *@err. */
char *meta_render(struct stash_store *st, const char *target, size_t *len, int *err);
/* Apply a metadata merge patch to @target, as @who (whose permissions links and bindings need). */
int meta_apply(struct stash_store *st, const char *target, const char *text, size_t len,
	       const struct stash_caller *who,
	       struct stash_error *err);

#endif
