// SPDX-License-Identifier: MIT
/*
 * test_versions.c - past versions: each commit keeps the replaced file as
 * NAME@V, read-only, up to the retention; the current version reads
 * through NAME@V too.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "store_util.h"
#include "versions.h"

int main(void)
{
	char backing[] = "/tmp/stashfs-versions-XXXXXX", cmd[300];
	struct stash_store *st = NULL;
	struct stash_error err;
	struct stash_file *f;
	json_t *list;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	CHECK(put(st, "p", "one", O_TRUNC) == 0);
	CHECK(put(st, "p", "two", O_TRUNC) == 0);
	CHECK(put(st, "p", "three", O_TRUNC) == 0);
	CHECK(reads_as(st, "p@1", "one"));
	CHECK(reads_as(st, "p@2", "two"));
	CHECK(reads_as(st, "p@3", "three"));       /* the current one, by its number */
	CHECK(reads_as(st, "p@4", NULL));
	CHECK(versions_last(st, "p") == 2);
	list = versions_list(st, "p");
	CHECK(json_array_size(list) == 2);
	json_decref(list);
	/* Writing by an old version's name is a compare-and-swap that finds p moved on. */
	CHECK(stash_file_open(st, "p@1", O_WRONLY | O_TRUNC, 0644, &who, &f, &err) ==
	      -STASH_CAS_ERRNO);
	/* No stash may take a version's name. */
	CHECK(stash_file_open(st, "q@1", O_WRONLY | O_CREAT, 0644, &who, &f, &err) == -EROFS);
	/* Retention: one kept from now on; the older ones go at the next commit. */
	CHECK(stash_store_setxattr(st, "p", "user.stash.versions", "1", 1, 0, &who, &err) == 0);
	CHECK(put(st, "p", "four", O_TRUNC) == 0);
	CHECK(reads_as(st, "p@3", "three"));
	CHECK(reads_as(st, "p@1", NULL));
	CHECK(reads_as(st, "p@2", NULL));
	/* An rm keeps the last content as a version too. */
	CHECK(stash_store_unlink(st, "p", &who, &err) == 0);
	CHECK(reads_as(st, "p", NULL));
	CHECK(reads_as(st, "p@4", "four"));
	/* A rename takes the commit hooks: the history follows the stash. */
	CHECK(put(st, "q", "q1", O_TRUNC) == 0);
	CHECK(put(st, "q", "q2", O_TRUNC) == 0);
	CHECK(stash_store_rename(st, "q", "r", 0, &who, &err) == 0);
	CHECK(reads_as(st, "r@1", "q1"));
	CHECK(reads_as(st, "q@1", NULL));
	/* A directory moved over an empty one with a removed stash's history brings its own. */
	CHECK(stash_store_mkdir(st, "e", 0755, &who) == 0);
	CHECK(put(st, "e/s", "old", O_TRUNC) == 0);
	CHECK(stash_store_unlink(st, "e/s", &who, &err) == 0);
	CHECK(stash_store_mkdir(st, "d", 0755, &who) == 0);
	CHECK(put(st, "d/s", "d1", O_TRUNC) == 0);
	CHECK(put(st, "d/s", "d2", O_TRUNC) == 0);
	CHECK(stash_store_rename(st, "d", "e", 0, &who, &err) == 0);
	CHECK(reads_as(st, "e/s@1", "d1"));
	CHECK(reads_as(st, "e/s", "d2"));
	/* An exchange of two directories swaps their histories. */
	CHECK(stash_store_mkdir(st, "g", 0755, &who) == 0);
	CHECK(put(st, "g/s", "g1", O_TRUNC) == 0);
	CHECK(put(st, "g/s", "g2", O_TRUNC) == 0);
	CHECK(stash_store_rename(st, "e", "g", RENAME_EXCHANGE, &who, &err) == 0);
	CHECK(reads_as(st, "g/s@1", "d1"));
	CHECK(reads_as(st, "e/s@1", "g1"));
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
