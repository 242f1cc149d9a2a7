/* SPDX-License-Identifier: MIT */
/*
 * locks.h - the name and stream locks of a store (locks.c).
 * Not a public header.
 */
#ifndef STASHFS_LOCKS_H
#define STASHFS_LOCKS_H

#include "stashfs/store.h"

/*
 * Name locks: a mutex stripe in this process plus an OFD lock on the same
 * byte of .stashfs/lock across daemons.  Stream appends use a second range,
 * always taken after a name lock, never before: no cycles.
 */
/* Set up and tear down the stripes (the lock file is the store's lock_fd). */
void locks_init(struct stash_store *st);
void locks_destroy(struct stash_store *st);
/* Lock stripe @s itself (callers taking two take the lower first). */
void store_lock_stripe(struct stash_store *st, unsigned s);
unsigned store_lock_name(struct stash_store *st, const char *path);
void store_unlock_name(struct stash_store *st, unsigned stripe);
unsigned store_lock_stream(struct stash_store *st, const char *path);
void store_unlock_stream(struct stash_store *st, unsigned stripe);

/* Reserve @path for a creation; returns the fd holding it, -EEXIST or an errno. */
int reserve_name(struct stash_store *st, const char *path, bool exclusive);

#endif
