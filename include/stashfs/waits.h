/* SPDX-License-Identifier: MIT */
/*
 * waits.h - what a waiting read waits for.  Reading NAME@V for a version
 * not committed yet, or NAME@next, waits until that version exists; the
 * daemon parks the request and asks these questions again after commits.
 * Nothing here blocks or knows of FUSE.
 */
#ifndef STASHFS_WAITS_H
#define STASHFS_WAITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "stashfs/store.h"

/*
 * Does @path (NAME@V or NAME@next) name a version NAME has not reached
 * yet?  1: yes, *@target receives V (for NAME@next, the current version +
 * 1) and @out, if not NULL, NAME's attributes with size 0; 0: no, @path
 * reads as usual (a past or the current version); -ENOENT: NAME does not
 * exist (or expired); other negative errno.
 */
int stash_waits_future(struct stash_store *st, const char *path, uint64_t *target,
		       struct stat *out);

/* The version stash @stash is at now into *@version; -ENOENT if it does not exist. */
int stash_waits_version(struct stash_store *st, const char *stash, uint64_t *version);

/*
 * The stash a path speaks of, into @out: "a/p" for "a/p", "a/p.json",
 * "a/p@12", "a/p@next" and "a/p@12.json".  -ENAMETOOLONG if it does not fit.
 */
int stash_waits_stash(const char *path, char *out, size_t size);

#endif
