/* SPDX-License-Identifier: MIT */
/*
 * defaults.h - what a new object inherits: the nearest directory's defaults, else the
 * mount's (defaults.c).
 * Not a public header.
 */
#ifndef STASHFS_DEFAULTS_H
#define STASHFS_DEFAULTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/store.h"
#include "backing.h"

/*
 * The persistence a new object at @path gets: the nearest ancestor's
 * user.stash.persistent, else the mount's default.
 */
bool store_default_persistent(struct stash_store *st, const char *path);
/*
 * The value of xattr @name set on directory @dir or its nearest ancestor
 * that has it: its length, or -ENODATA when none has.
 */
ssize_t store_nearest_default(struct stash_store *st, const char *dir, const char *name,
			      char *buf, size_t size);
/*
 * What user.stash.persistent or user.stash.ttl is for an object at @path
 * (stat @sb) that has none set: a stash or stream is persistent and never
 * expires; a directory passes on its nearest ancestor's default, else the
 * mount's.  Writes the text to @buf (at least 24 bytes) and returns its
 * length; -ENODATA for any other @name.
 */
int store_effective_xattr(struct stash_store *st, const char *path, const struct stat *sb,
			  const char *name, char *buf, size_t size);

/*
 * The directory defaults for a new object at @path (nearest ancestor
 * wins): @len[i] is the length of @value[i], the value of
 * defaults_names[i], or -1 when none is set; -errno if one cannot be read.
 * @parent_fd: @path's directory opened O_RDONLY by the caller (borrowed),
 * or -1 to open it here.
 */
#define DEFAULTS_COUNT 4
enum { DEFAULT_SCHEMA, DEFAULT_PERSISTENT, DEFAULT_TTL, DEFAULT_VERSIONS };
extern const char *const defaults_names[DEFAULTS_COUNT];
int defaults_ancestors(struct stash_store *st, const char *path, int parent_fd,
		       char value[DEFAULTS_COUNT][STASH_XATTR_MAX], ssize_t len[DEFAULTS_COUNT]);

/* The directory defaults read for a new object, as defaults_ancestors gives them. */
struct defaults {
	ssize_t len[DEFAULTS_COUNT];
	char value[DEFAULTS_COUNT][STASH_XATTR_MAX];
};

/*
 * A new object at @path (its open file @fd, with no user.stash.* set yet):
 * copy the directory defaults @d onto it (NULL: read them now), then the
 * mount's; mark an ephemeral one with this instance.  0, or -errno with
 * the reason when one could not be copied (the object must not be
 * published without its binding or lifetime).
 */
int defaults_apply(struct stash_store *st, const char *path, const struct defaults *d, int fd,
		   struct stash_error *err);

#endif
