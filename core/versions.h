/* SPDX-License-Identifier: MIT */
/*
 * versions.h - past versions of stashes, kept under .stashfs/versions.
 * Not a public header.
 */
#ifndef STASHFS_VERSIONS_H
#define STASHFS_VERSIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "store_priv.h"

struct commit_hook;

/*
 * Keep the file @dirfd/@leaf (stash @path at version @version, open as
 * @fd, about to be replaced or removed) as a past version: a hard link,
 * then drop the oldest beyond the retention (user.stash.versions of @fd,
 * else the mount's).  The caller holds the name lock.  Best effort: a
 * version that cannot be kept is skipped, the change goes on.
 */
void versions_keep(struct stash_store *st, const char *path, int dirfd, const char *leaf,
		   int fd, uint64_t version);

/* The highest version kept for @path (0 if none): a new stash counts on from it. */
uint64_t versions_last(struct stash_store *st, const char *path);

/*
 * The retention for stash @path (open as @fd): its user.stash.versions,
 * else the nearest ancestor directory's, else the mount's.
 */
long long versions_retention(struct stash_store *st, const char *path, int fd);

/*
 * The kept versions of @path, newest first, as a new JSON array of
 * {"version", "time", "size", "sha256"} (an empty one if none).
 */
json_t *versions_list(struct stash_store *st, const char *path);

/* Move the history of @from to @to, if @to has none (the caller holds both locks). */
void versions_move(struct stash_store *st, const char *from, const char *to);

/* Remove every version kept for @path (an expired or ephemeral stash). */
void versions_drop(struct stash_store *st, const char *path);

/*
 * Version V of a stash that is at V now is the stash itself (nothing is
 * kept for it yet): point *@bpath, the kept version's path, at the stash.
 * A commit in between keeps V, so a caller that finds the stash moved on
 * calls this again and finds the kept file.
 */
int current_version(struct stash_store *st, const char *path, char **bpath);

/* What versions do at every commit (registered by the store). */
extern const struct commit_hook versions_commit_hook;

#endif
