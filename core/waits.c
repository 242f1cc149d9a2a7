// SPDX-License-Identifier: MIT
/*
 * waits.c - the store's side of waiting reads: whether NAME@V is still to
 * come, and which version a stash is at.  The daemon keeps the waiting
 * requests and asks again after each commit it sees (and now and then,
 * for commits by other daemons); nothing here waits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stashfs/waits.h"

#include "backing.h"
#include "lifecycle.h"
#include "versions.h"

int stash_waits_version(struct stash_store *st, const char *stash, uint64_t *version)
{
	struct stat sb;
	int fd = store_open_object(st, stash, O_RDONLY | O_NONBLOCK, 0), r;

	if (fd < 0)
		return fd;
	r = fstat(fd, &sb) < 0 ? -errno : S_ISREG(sb.st_mode) ? 0 : -ENOENT;
	/* Expired, or ephemeral of a dead daemon: gone, as for every reader. */
	if (r == 0)
		r = life_check(st, fd, &sb, NULL);
	if (r == 0)
		*version = backing_read_version(fd);
	close(fd);
	return r;
}

int stash_waits_future(struct stash_store *st, const char *path, uint64_t *target,
		       struct stat *out)
{
	const char *leaf = strrchr(path, '/');
	char stash[PATH_MAX];
	uint64_t v, cur;
	size_t stem;
	int r;

	leaf = leaf ? leaf + 1 : path;
	if (stash_store_classify(path) != STASH_KIND_VERSION || !backing_version_suffix(leaf, &stem, &v))
		return 0;
	r = stash_waits_stash(path, stash, sizeof(stash));
	if (r == 0)
		r = stash_waits_version(st, stash, &cur);
	if (r < 0)
		return r;
	/* @next is version 0 to versions_suffix; UINT64_MAX (too many digits) never comes. */
	if (strcmp(leaf + stem, "@next") == 0)
		v = cur + 1;
	else if (v <= cur || v == UINT64_MAX)
		return 0;
	*target = v;
	if (out) {
		r = stash_store_stat(st, stash, out, NULL);
		if (r < 0)
			return r;
		/* Nothing to read yet; the read-only name of what will be. */
		out->st_size = 0;
		out->st_blocks = 0;
		out->st_mode &= ~(mode_t)0222;
	}
	return 1;
}

int stash_waits_stash(const char *path, char *out, size_t size)
{
	const char *leaf = strrchr(path, '/');
	size_t n = strlen(path), stem;
	uint64_t v;

	leaf = leaf ? leaf + 1 : path;
	if (n > strlen(STASH_VIEW_SUFFIX) &&
	    strcmp(path + n - strlen(STASH_VIEW_SUFFIX), STASH_VIEW_SUFFIX) == 0)
		n -= strlen(STASH_VIEW_SUFFIX);
	if (n >= size)
		return -ENAMETOOLONG;
	memcpy(out, path, n);
	out[n] = '\0';
	if (backing_version_suffix(out + (leaf - path), &stem, &v))
		out[(leaf - path) + stem] = '\0';
	return 0;
}
