/* SPDX-License-Identifier: MIT */
/*
 * store_priv.h - the store struct the core files share, and the path
 * helpers on its backing root.  Each module's own API is in its header
 * (binding.h, lifecycle.h, ...).  Not a public header.
 */
#ifndef STASHFS_STORE_PRIV_H
#define STASHFS_STORE_PRIV_H

#include <fcntl.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <stdatomic.h>
#include <jansson.h>

#include "stashfs/schema.h"
#include "stashfs/store.h"
#include "backing.h"

#define COMMIT_HOOKS_MAX 8              /* features with commit hooks */

struct schema_cache;
struct lifecycle;
struct reap;
struct merge_state;
struct commit_hook;
struct stash_store {
	struct stash_store_options opts;
	int root_fd;            /* the backing directory */
	int tmp_fd;             /* .stashfs/tmp/<instance> */
	int lock_fd;            /* .stashfs/lock, OFD byte-range locks */
	int instance_lock_fd;   /* held while this instance's temp dir lives */
	int presence_fd;        /* .stashfs/lock again: the daemons' presence byte */
	char instance[64];
	atomic_uint_fast64_t tmp_seq;
	pthread_mutex_t stripes[LOCK_STRIPES];         /* commits of a name */
	pthread_mutex_t stream_stripes[LOCK_STRIPES];  /* appends to a stream */
	int links_fd;                   /* .stashfs/links: the stream index */
	struct schema_cache *schemas;   /* binding.c */
	struct lifecycle *life;         /* lifecycle.c */
	struct merge_state *merge;      /* merge.c: document cache, merge queues */
	struct reap *reap;              /* reap.c */
	/* commit.c: what features do at each commit, in order */
	const struct commit_hook *hooks[COMMIT_HOOKS_MAX];
	unsigned nhooks;
};

/* Open @path beneath the backing root, never through a symlink; "" is the root. */
static inline int store_open_beneath(struct stash_store *st, const char *path, int flags,
				     mode_t mode)
{
	return backing_open_beneath(st->root_fd, path, flags, mode);
}

/*
 * Open the object at @path: what the store never offers there (a symlink,
 * a socket planted in the backing directory) is no object, -ENOENT.
 */
static inline int store_open_object(struct stash_store *st, const char *path, int flags,
				    mode_t mode)
{
	int fd = store_open_beneath(st, path, flags, mode);

	return fd == -ELOOP || fd == -ENXIO ? -ENOENT : fd;
}

/* Remove the file @path (never through a symlink): 1 on success or -errno. */
static inline int store_unlink_path(struct stash_store *st, const char *path)
{
	return backing_remove(st->root_fd, path, 0);
}

/* Remove the empty directory @path: 1 if removed, negative errno if not. */
static inline int store_rmdir_path(struct stash_store *st, const char *path)
{
	return backing_remove(st->root_fd, path, AT_REMOVEDIR);
}

/* Leave the reason of a refusal in @path's user.stash.error, for getfattr and stashctl. */
static inline void note_error(struct stash_store *st, const char *path,
			      const struct stash_error *err)
{
	int fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);

	if (fd >= 0) {
		fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		close(fd);
	}
}

/* Close *@fd if open, and mark it closed. */
static inline void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

#endif
