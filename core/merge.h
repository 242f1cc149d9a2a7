/* SPDX-License-Identifier: MIT */
/*
 * merge.h - merges through NAME.json (merge.c).
 * Not a public header.
 */
#ifndef STASHFS_MERGE_H
#define STASHFS_MERGE_H

#include <jansson.h>

#include "stashfs/store.h"
#include "file.h"

/*
 * The patch collected by a view so far.  Refuse at write() what no further
 * data can mend, so that `echo` reports it even in shells that ignore
 * close(): a text that can't become JSON, a patch that is not an object, a
 * stash that is not one, a merged document its schema refuses.
 */
int check_view_patch(struct stash_file *f, struct stash_error *err);

/* Merge the handle's patch into the stash's document. */
int commit_merge(struct stash_file *f, const struct stash_caller *who,
		 struct stash_error *err);

/* Set up and tear down the document cache and merge queues of @st. */
int merge_init(struct stash_store *st);
void merge_destroy(struct stash_store *st);

#endif
