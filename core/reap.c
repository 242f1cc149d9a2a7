// SPDX-License-Identifier: MIT
/*
 * reap.c - closing replaced files off the commit path.
 *
 * A commit renames the new content over the old file; the old file lives
 * on while descriptors hold it.  Closing the last of them frees its blocks,
 * which on a disk mounted with discard waits for the device and can cost
 * more than the rest of the commit.  Commit paths therefore hand those
 * descriptors to one thread that closes them after the reply has gone out.
 * Nothing is waiting for that close: the file has no name any more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdlib.h>
#include <unistd.h>

#include "store_priv.h"

static void *reaper_main(void *arg)
{
	struct stash_store *st = arg;
	int batch[REAP_SLOTS];

	pthread_mutex_lock(&st->reap_lock);
	for (;;) {
		unsigned n = st->reap_n;

		if (n == 0 && st->reap_stop)
			break;
		if (n == 0) {
			pthread_cond_wait(&st->reap_cond, &st->reap_lock);
			continue;
		}
		for (unsigned i = 0; i < n; i++)
			batch[i] = st->reap_fds[i];
		st->reap_n = 0;
		pthread_mutex_unlock(&st->reap_lock);
		for (unsigned i = 0; i < n; i++)
			close(batch[i]);
		pthread_mutex_lock(&st->reap_lock);
	}
	pthread_mutex_unlock(&st->reap_lock);
	return NULL;
}

/*
 * The thread is started by the first descriptor queued in this process:
 * the daemon forks into the background after opening the store, and a
 * thread started before the fork would not exist in the child.  Caller
 * holds reap_lock.
 */
static bool reaper_ready(struct stash_store *st)
{
	pid_t me = getpid();

	if (st->reap_pid != me) {
		st->reap_pid = me;
		st->reap_stop = false;
		st->reap_running = pthread_create(&st->reaper, NULL, reaper_main, st) == 0;
	}
	return st->reap_running;
}

int reap_init(struct stash_store *st)
{
	pthread_mutex_init(&st->reap_lock, NULL);
	pthread_cond_init(&st->reap_cond, NULL);
	return 0;
}

void reap_destroy(struct stash_store *st)
{
	bool join;

	pthread_mutex_lock(&st->reap_lock);
	join = st->reap_pid == getpid() && st->reap_running;
	st->reap_stop = true;
	pthread_cond_signal(&st->reap_cond);
	pthread_mutex_unlock(&st->reap_lock);
	if (join)
		pthread_join(st->reaper, NULL);
	/* Whatever no thread of this process took. */
	for (unsigned i = 0; i < st->reap_n; i++)
		close(st->reap_fds[i]);
	st->reap_n = 0;
	st->reap_running = false;
	pthread_mutex_destroy(&st->reap_lock);
	pthread_cond_destroy(&st->reap_cond);
}

void store_close_later(struct stash_store *st, int fd)
{
	bool queued = false;

	if (fd < 0)
		return;
	pthread_mutex_lock(&st->reap_lock);
	if (!st->reap_stop && reaper_ready(st) && st->reap_n < REAP_SLOTS) {
		st->reap_fds[st->reap_n++] = fd;
		queued = true;
		pthread_cond_signal(&st->reap_cond);
	}
	pthread_mutex_unlock(&st->reap_lock);
	if (!queued)
		close(fd);      /* no thread, or it is behind: close here */
}
