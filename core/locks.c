// SPDX-License-Identifier: MIT
/*
 * locks.c - the name locks and stream locks of a store.
 *
 * Commits of one name are serialized by a striped mutex inside the process
 * and an OFD lock on byte <stripe> of BACKING/.stashfs/lock across
 * processes, so version counters and merges never race, also between
 * daemons sharing one backing directory.  Stream appends use a second range
 * of bytes, always taken after a name lock, never before: no cycles.  The
 * byte layout of the lock file is backing.h's.  A daemon without -o shared
 * is alone on its backing directory (it holds the presence byte for
 * writing: see announce_daemon), so its mutexes are the whole lock and the
 * bytes are left alone: two fcntl calls less per commit.
 */
#include <fcntl.h>
#include <pthread.h>

#include "locks.h"
#include "store_priv.h"

void locks_init(struct stash_store *st)
{
	for (int i = 0; i < LOCK_STRIPES; i++) {
		pthread_mutex_init(&st->stripes[i], NULL);
		pthread_mutex_init(&st->stream_stripes[i], NULL);
	}
}

void locks_destroy(struct stash_store *st)
{
	for (int i = 0; i < LOCK_STRIPES; i++) {
		pthread_mutex_destroy(&st->stripes[i]);
		pthread_mutex_destroy(&st->stream_stripes[i]);
	}
}

/* Lock or unlock byte @byte for the other daemons on the backing directory, if any. */
static void ofd_lock(struct stash_store *st, short type, off_t byte)
{
	/* Only fails on a broken lock file; the mutex still orders this process. */
	if (st->opts.shared)
		(void)backing_ofd_lock(st->lock_fd, type, byte);
}

void store_lock_stripe(struct stash_store *st, unsigned s)
{
	pthread_mutex_lock(&st->stripes[s]);
	ofd_lock(st, F_WRLCK, s);
}

unsigned store_lock_name(struct stash_store *st, const char *path)
{
	unsigned s = backing_stripe(path);

	store_lock_stripe(st, s);
	return s;
}

void store_unlock_name(struct stash_store *st, unsigned s)
{
	ofd_lock(st, F_UNLCK, s);
	pthread_mutex_unlock(&st->stripes[s]);
}

unsigned store_lock_stream(struct stash_store *st, const char *path)
{
	unsigned s = backing_stripe(path);

	pthread_mutex_lock(&st->stream_stripes[s]);
	ofd_lock(st, F_WRLCK, LOCK_STRIPES + s);
	return s;
}

void store_unlock_stream(struct stash_store *st, unsigned s)
{
	ofd_lock(st, F_UNLCK, LOCK_STRIPES + s);
	pthread_mutex_unlock(&st->stream_stripes[s]);
}

/*
 * Creation reservations.  A new stash has no name until its first commit,
 * yet O_EXCL must stay exclusive while it is being written, also between
 * daemons sharing the backing directory.  Each creating handle holds an OFD
 * lock on one byte of .stashfs/lock, far above the stripes, chosen by a
 * 64-bit hash of the path, through an open file description of its own (OFD
 * locks of one description never conflict with each other).  An exclusive
 * creation takes a write lock and fails with EEXIST on any holder; other
 * creations take a read lock, so that they exclude only exclusive ones.  A
 * crashed daemon's reservations vanish with its descriptors.
 */

/* Reserve @path for a creation; returns the fd holding it, -EEXIST or an errno. */
int reserve_name(struct stash_store *st, const char *path, bool exclusive)
{
	struct flock fl = {
		.l_type = exclusive ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = backing_reserve_byte(path),
		.l_len = 1,
	};
	int fd = openat(st->root_fd, STASH_INTERNAL_DIR "/lock", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno == EAGAIN || errno == EACCES ? -EEXIST : -errno;

		close(fd);
		return e;
	}
	return fd;
}
