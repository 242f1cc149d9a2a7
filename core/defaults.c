// SPDX-License-Identifier: MIT
/*
 * defaults.c - what a new object inherits.
 *
 * A directory's user.stash.schema, persistent, ttl and versions are
 * defaults for the objects made beneath it: the nearest ancestor that has
 * one wins, else the mount's option.  A new object gets copies at its
 * first commit, so that it keeps them when moved elsewhere.  A default
 * that cannot be read or copied refuses the creation: a stash must never
 * appear unbound, or with another lifetime, because its directory's
 * attribute could not be read.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "defaults.h"
#include "store_priv.h"

const char *const defaults_names[DEFAULTS_COUNT] = { XATTR_SCHEMA, XATTR_PERSISTENT, XATTR_TTL,
						     XATTR_VERSIONS };

ssize_t store_nearest_default(struct stash_store *st, const char *dir, const char *name,
			      char *buf, size_t size)
{
	char d[PATH_MAX];

	if ((size_t)snprintf(d, sizeof(d), "%s", dir) >= sizeof(d))
		return -ENAMETOOLONG;
	for (;;) {
		int dfd = store_open_beneath(st, d, O_RDONLY | O_DIRECTORY, 0);
		ssize_t n = dfd >= 0 ? fgetxattr(dfd, name, buf, size) : -1;
		char *slash;

		if (dfd >= 0)
			close(dfd);
		if (n > 0)
			return n;
		if (!d[0])
			return -ENODATA;
		slash = strrchr(d, '/');
		if (slash)
			*slash = '\0';
		else
			d[0] = '\0';
	}
}

/* The directory @path is in ("" for the root), in @out of PATH_MAX bytes. */
static void parent_of(const char *path, char *out)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	memcpy(out, path, n);
	out[n] = '\0';
}

bool store_default_persistent(struct stash_store *st, const char *path)
{
	char dir[PATH_MAX], v[4];

	if (strlen(path) >= sizeof(dir))
		return st->opts.default_persistent;
	parent_of(path, dir);
	if (store_nearest_default(st, dir, XATTR_PERSISTENT, v, sizeof(v)) == 1)
		return v[0] == '1';
	return st->opts.default_persistent;
}

int store_effective_xattr(struct stash_store *st, const char *path, const struct stat *sb,
			  const char *name, char *buf, size_t size)
{
	char dir[PATH_MAX];
	ssize_t n;
	bool ttl = strcmp(name, XATTR_TTL) == 0;

	if (!ttl && strcmp(name, XATTR_PERSISTENT) != 0)
		return -ENODATA;
	if (!S_ISDIR(sb->st_mode) || strlen(path) >= sizeof(dir))
		return snprintf(buf, size, "%s", ttl ? "0" : "1");
	parent_of(path, dir);
	if (*path && (n = store_nearest_default(st, dir, name, buf, size - 1)) > 0) {
		buf[n] = '\0';
		return (int)n;
	}
	if (ttl)
		return snprintf(buf, size, "%" PRIu64, st->opts.default_ttl);
	return snprintf(buf, size, "%d", st->opts.default_persistent ? 1 : 0);
}

int defaults_ancestors(struct stash_store *st, const char *path, int parent_fd,
		       char value[DEFAULTS_COUNT][STASH_XATTR_MAX], ssize_t len[DEFAULTS_COUNT])
{
	char *dir = strdup(path);
	size_t left = DEFAULTS_COUNT;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	for (size_t i = 0; i < DEFAULTS_COUNT; i++)
		len[i] = -1;
	/* One pass up the ancestors; each name stops at its nearest setting. */
	while (left && r == 0) {
		char *slash = strrchr(dir, '/');
		int dfd;

		if (slash)
			*slash = '\0';
		else
			dir[0] = '\0';
		dfd = parent_fd >= 0 ? parent_fd : store_open_beneath(st, dir, O_RDONLY | O_DIRECTORY, 0);
		for (size_t i = 0; dfd >= 0 && r == 0 && i < DEFAULTS_COUNT; i++) {
			ssize_t n = len[i] > 0 ? 0 : fgetxattr(dfd, defaults_names[i], value[i],
								sizeof(value[i]));

			if (n > 0) {
				len[i] = n;
				left--;
			} else if (n < 0 && errno != ENODATA) {
				r = -errno;     /* set, but unreadable (ERANGE: over STASH_XATTR_MAX) */
			}
		}
		if (dfd >= 0 && dfd != parent_fd)
			close(dfd);
		parent_fd = -1;         /* the caller's, for the first directory only */
		if (!dir[0])
			break;
	}
	free(dir);
	return r;
}

/* Set xattr @name to @value (@len bytes) on @fd; 0 or -errno. */
static int set_default(int fd, const char *name, const char *value, size_t len)
{
	return fsetxattr(fd, name, value, len, 0) < 0 ? -errno : 0;
}

int defaults_apply(struct stash_store *st, const char *path, const struct defaults *d, int fd,
		   struct stash_error *err)
{
	struct defaults *read = NULL;
	const char *persistent = "1";
	size_t plen = 1;
	char ttl[32];
	int r = 0;

	if (!d) {
		read = malloc(sizeof(*read));
		if (!read)
			return stash_error_set(err, ENOMEM, "out of memory");
		r = defaults_ancestors(st, path, -1, read->value, read->len);
		d = read;
	}
	for (size_t i = 0; r == 0 && i < DEFAULTS_COUNT; i++) {
		if (d->len[i] > 0)
			r = set_default(fd, defaults_names[i], d->value[i], (size_t)d->len[i]);
	}
	if (r < 0) {
		free(read);
		return stash_error_set(err, -r, "%s: cannot take its directory's defaults "
				       "(user.stash.schema, persistent, ttl, versions): %s",
				       path, strerror(-r));
	}
	/* The file had none of its own: what it holds now is @d's, else the mount's. */
	if (d->len[DEFAULT_PERSISTENT] > 0) {
		persistent = d->value[DEFAULT_PERSISTENT];
		plen = (size_t)d->len[DEFAULT_PERSISTENT];
	} else if (!st->opts.default_persistent) {
		persistent = "0";
		r = set_default(fd, XATTR_PERSISTENT, persistent, 1);
	}
	if (!r && st->opts.default_ttl && d->len[DEFAULT_TTL] <= 0)
		r = set_default(fd, XATTR_TTL, ttl,
				(size_t)snprintf(ttl, sizeof(ttl), "%" PRIu64, st->opts.default_ttl));
	if (!r && plen == 1 && persistent[0] == '0')
		r = set_default(fd, XATTR_SESSION, st->instance, strlen(st->instance));
	free(read);
	if (r < 0)
		return stash_error_set(err, -r, "%s: cannot set the mount's defaults on it: %s",
				       path, strerror(-r));
	return 0;
}
