/* SPDX-License-Identifier: MIT */
/*
 * reap.h - closing replaced files off the commit path (reap.c).
 * Not a public header.
 */
#ifndef STASHFS_REAP_H
#define STASHFS_REAP_H

#include <stdbool.h>

#include "stashfs/store.h"

int reap_init(struct stash_store *st);
/* Closes whatever is still queued, then stops the thread. */
void reap_destroy(struct stash_store *st);
/*
 * Close @fd soon, on the reaper thread; at once if it can't take it
 * (returns false then).
 */
bool store_close_later(struct stash_store *st, int fd);
/* The same for background work: waits while the reaper is half full. */
void store_close_paced(struct stash_store *st, int fd);

#endif
