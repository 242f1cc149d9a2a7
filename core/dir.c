// SPDX-License-Identifier: MIT
/*
 * dir.c - directory listings: what the store offers in a backing directory
 * (no internal names, no planted symlinks or expired objects), snapshot at
 * open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "stashfs/json.h"
#include "stashfs/store.h"
#include "lifecycle.h"
#include "meta.h"
#include "store_priv.h"

struct stash_dir {
	char *text;             /* the names, each ending in '\0', one after another */
	size_t text_len, text_cap;
	size_t *names;          /* offsets into text */
	unsigned char *types;
	ino_t *inos;
	size_t count;
};

/* ---- directories ------------------------------------------------------ */

static bool listed(const char *dirpath, const char *name, unsigned char type)
{
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	if (strncmp(name, STASH_INTERNAL_DIR, strlen(STASH_INTERNAL_DIR)) == 0)
		return false;
	/* Only what the store offers: no symlinks, fifos or sockets planted behind it. */
	if (type != DT_REG && type != DT_DIR && type != DT_UNKNOWN)
		return false;
	(void)dirpath;
	return true;
}

/* Expired and orphaned objects are not listed (no ghost entries). */
static bool live_entry(struct stash_store *st, int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	bool live;

	if (fd < 0)
		return false;
	live = fstat(fd, &sb) == 0 && life_check(st, fd, &sb, NULL) == 0;
	close(fd);
	return live;
}

/*
 * A listing holds every name of the directory until it is closed: packed
 * into one buffer, a million of them cost 26 MB, not the 49 MB of one
 * allocation each (and they go back to the system at close).
 */
static int dir_add(struct stash_dir *d, size_t *cap, const char *name, unsigned char type,
		   ino_t ino)
{
	size_t len = strlen(name) + 1;

	if (d->text_len + len > d->text_cap) {
		size_t ncap = d->text_cap ? d->text_cap * 2 : 1024;
		char *t;

		while (ncap < d->text_len + len)
			ncap *= 2;
		t = realloc(d->text, ncap);
		if (!t)
			return -ENOMEM;
		d->text = t;
		d->text_cap = ncap;
	}
	if (d->count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		size_t *n = realloc(d->names, ncap * sizeof(*n));
		unsigned char *t;
		ino_t *i;

		if (n)
			d->names = n;
		t = n ? realloc(d->types, ncap) : NULL;
		if (t)
			d->types = t;
		i = t ? realloc(d->inos, ncap * sizeof(*i)) : NULL;
		if (!i)
			return -ENOMEM;
		d->inos = i;
		*cap = ncap;
	}
	memcpy(d->text + d->text_len, name, len);
	d->names[d->count] = d->text_len;
	d->text_len += len;
	d->types[d->count] = type;
	d->inos[d->count] = ino;
	d->count++;
	return 0;
}

int stash_dir_open(struct stash_store *st, const char *path, struct stash_dir **out)
{
	struct stash_dir *d;
	struct dirent *e;
	size_t cap = 0;
	DIR *dir;
	int fd;

	char target[PATH_MAX];
	bool meta = backing_meta_path(path), dir_file;

	if (stash_store_classify(path) < 0)
		return -ENOENT;
	if (meta) {
		if (meta_target(path, target, sizeof(target), &dir_file) < 0 || dir_file)
			return -ENOTDIR;
		path = target;
	}
	fd = store_open_object(st, path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		closedir(dir);
		return -ENOMEM;
	}
	while ((e = readdir(dir))) {
		if (!listed(path, e->d_name, e->d_type))
			continue;
		if (e->d_type == DT_REG && life_any(st) && !live_entry(st, dirfd(dir), e->d_name))
			continue;
		if (dir_add(d, &cap, e->d_name, e->d_type, e->d_ino) < 0)
			goto nomem;
	}
	closedir(dir);
	if (meta && dir_add(d, &cap, ".stashfs-dir", DT_REG, 1) < 0) {
		stash_dir_close(d);
		return -ENOMEM;
	}
	*out = d;
	return 0;
nomem:
	closedir(dir);
	stash_dir_close(d);
	return -ENOMEM;
}

int stash_dir_next(struct stash_dir *d, off_t off, const char **name, unsigned char *type,
		   ino_t *ino, off_t *next)
{
	if (off < 0 || (size_t)off >= d->count)
		return 1;
	*name = d->text + d->names[off];
	*type = d->types[off];
	*ino = d->inos[off];
	*next = off + 1;
	return 0;
}

void stash_dir_close(struct stash_dir *d)
{
	if (!d)
		return;
	free(d->text);
	free(d->names);
	free(d->types);
	free(d->inos);
	free(d);
}
