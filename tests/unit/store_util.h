/* SPDX-License-Identifier: MIT */
/*
 * store_util.h - what the unit tests of store-side modules do through the
 * store's public API: write a stash as one open-write-close, read it back.
 */
#ifndef STASHFS_STORE_UTIL_H
#define STASHFS_STORE_UTIL_H

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "stashfs/store.h"

static const struct stash_caller who = { .uid = 0, .gid = 0, .pid = 1, .umask = 022 };

/* open(O_WRONLY|O_CREAT|@flags), write @text, close: 0 or the -errno, reason in @err. */
static inline int put_err(struct stash_store *st, const char *path, const char *text, int flags,
			  struct stash_error *err)
{
	struct stash_file *f;
	int r = stash_file_open(st, path, O_WRONLY | O_CREAT | flags, 0644, &who, &f, err);

	if (r < 0)
		return r;
	if (stash_file_write(f, text, strlen(text), 0, err) < 0)
		r = -err->code;
	if (r == 0)
		r = stash_file_commit(f, STASH_COMMIT_LAST, &who, err);
	stash_file_close(f);
	return r;
}

static inline int put(struct stash_store *st, const char *path, const char *text, int flags)
{
	struct stash_error err;

	return put_err(st, path, text, flags, &err);
}

/* What a reader of @path gets (up to 4 KiB), or NULL when it cannot open it. */
static inline char *get(struct stash_store *st, const char *path)
{
	static char buf[4096];
	struct stash_file *f;
	struct stash_error err;
	ssize_t n;

	if (stash_file_open(st, path, O_RDONLY, 0, &who, &f, &err) < 0)
		return NULL;
	n = stash_file_read(f, buf, sizeof(buf) - 1, 0);
	stash_file_close(f);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

/* Does @path read as @want (NULL: as missing)? */
static inline int reads_as(struct stash_store *st, const char *path, const char *want)
{
	const char *got = get(st, path);

	return want ? got && strcmp(got, want) == 0 : got == NULL;
}

/* The user.stash.version of @path, or the -errno of reading it. */
static inline long long version_of(struct stash_store *st, const char *path)
{
	char buf[32];
	int n = stash_store_getxattr(st, path, "user.stash.version", buf, sizeof(buf) - 1);

	if (n < 0)
		return n;
	buf[n] = '\0';
	return atoll(buf);
}

#endif
