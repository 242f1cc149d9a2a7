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

int reap_init(struct stash_store *st)
{
	pthread_mutex_init(&st->reap_lock, NULL);
	pthread_cond_init(&st->reap_cond, NULL);
	st->reap_running = pthread_create(&st->reaper, NULL, reaper_main, st) == 0;
	return 0;
}

void reap_destroy(struct stash_store *st)
{
	if (st->reap_running) {
		pthread_mutex_lock(&st->reap_lock);
		st->reap_stop = true;
		pthread_cond_signal(&st->reap_cond);
		pthread_mutex_unlock(&st->reap_lock);
		pthread_join(st->reaper, NULL);
		st->reap_running = false;
	}
	pthread_mutex_destroy(&st->reap_lock);
	pthread_cond_destroy(&st->reap_cond);
}

void store_close_later(struct stash_store *st, int fd)
{
	bool queued = false;

	if (fd < 0)
		return;
	if (st->reap_running) {
		pthread_mutex_lock(&st->reap_lock);
		if (st->reap_n < REAP_SLOTS) {
			st->reap_fds[st->reap_n++] = fd;
			queued = true;
			pthread_cond_signal(&st->reap_cond);
		}
		pthread_mutex_unlock(&st->reap_lock);
	}
	if (!queued)
		close(fd);      /* no thread, or it is behind: close here */
}
