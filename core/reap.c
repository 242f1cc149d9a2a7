// SPDX-License-Identifier: MIT
/*
 * reap.c - closing replaced files off the commit path.
 *
 * A commit renames the new content over the old file; the old file lives
 * on while descriptors hold it.  Closing the last of them frees its blocks,
 * which on a disk mounted with discard waits for the device and can cost
 * more than the rest of the commit.  Commit paths therefore hand those
 * descriptors to a few threads that close them after the reply has gone out.
 * Nothing is waiting for that close: the file has no name any more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdlib.h>
#include <unistd.h>

#include "reap.h"
#include "store_priv.h"

#define REAP_SLOTS 256                  /* replaced files waiting to be closed */
/*
 * Closes at once: each last close of a removed file waits for the disk's
 * discard and then for a CPU to wake up on, and several of those waits
 * overlap.
 */
#define REAP_THREADS 4

/* Descriptors of replaced files, closed by threads of their own. */
struct reap {
	pthread_t thread[REAP_THREADS];
	unsigned nthreads;
	pid_t pid;                      /* process that started them, 0 = none yet */
	bool running;
	bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t room;            /* the reaper took what was queued */
	unsigned n;
	int fds[REAP_SLOTS];
};

/* One descriptor at a time, so that a slow close holds up none of the others. */
static void *reaper_main(void *arg)
{
	struct stash_store *st = arg;

	pthread_mutex_lock(&st->reap->lock);
	for (;;) {
		int fd;

		if (st->reap->n == 0 && st->reap->stop)
			break;
		if (st->reap->n == 0) {
			pthread_cond_wait(&st->reap->cond, &st->reap->lock);
			continue;
		}
		fd = st->reap->fds[--st->reap->n];
		pthread_cond_broadcast(&st->reap->room);
		pthread_mutex_unlock(&st->reap->lock);
		close(fd);
		pthread_mutex_lock(&st->reap->lock);
	}
	pthread_mutex_unlock(&st->reap->lock);
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

	if (st->reap->pid != me) {
		st->reap->pid = me;
		st->reap->stop = false;
		st->reap->nthreads = 0;
		while (st->reap->nthreads < REAP_THREADS &&
		       pthread_create(&st->reap->thread[st->reap->nthreads], NULL, reaper_main, st) == 0)
			st->reap->nthreads++;
		st->reap->running = st->reap->nthreads > 0;
	}
	return st->reap->running;
}

int reap_init(struct stash_store *st)
{
	st->reap = calloc(1, sizeof(*st->reap));
	if (!st->reap)
		return -ENOMEM;
	pthread_mutex_init(&st->reap->lock, NULL);
	pthread_cond_init(&st->reap->cond, NULL);
	pthread_cond_init(&st->reap->room, NULL);
	return 0;
}

void reap_destroy(struct stash_store *st)
{
	bool join;

	if (!st->reap)
		return;
	pthread_mutex_lock(&st->reap->lock);
	join = st->reap->pid == getpid() && st->reap->running;
	st->reap->stop = true;
	pthread_cond_broadcast(&st->reap->cond);
	pthread_cond_broadcast(&st->reap->room);
	pthread_mutex_unlock(&st->reap->lock);
	for (unsigned i = 0; join && i < st->reap->nthreads; i++)
		pthread_join(st->reap->thread[i], NULL);
	/* Whatever no thread of this process took. */
	for (unsigned i = 0; i < st->reap->n; i++)
		close(st->reap->fds[i]);
	st->reap->n = 0;
	st->reap->running = false;
	pthread_mutex_destroy(&st->reap->lock);
	pthread_cond_destroy(&st->reap->cond);
	pthread_cond_destroy(&st->reap->room);
	free(st->reap);
	st->reap = NULL;
}

/* Queue @fd once fewer than @limit are waiting (waiting for room below REAP_SLOTS). */
static bool close_queued(struct stash_store *st, int fd, unsigned limit)
{
	bool queued = false;

	if (fd < 0)
		return true;
	pthread_mutex_lock(&st->reap->lock);
	while (limit < REAP_SLOTS && !st->reap->stop && reaper_ready(st) && st->reap->n >= limit)
		pthread_cond_wait(&st->reap->room, &st->reap->lock);
	if (!st->reap->stop && reaper_ready(st) && st->reap->n < REAP_SLOTS) {
		st->reap->fds[st->reap->n++] = fd;
		queued = true;
		pthread_cond_signal(&st->reap->cond);
	}
	pthread_mutex_unlock(&st->reap->lock);
	if (!queued)
		close(fd);      /* no thread, or it is behind: close here */
	return queued;
}

bool store_close_later(struct stash_store *st, int fd)
{
	return close_queued(st, fd, REAP_SLOTS);
}

/*
 * Background work (the sweeper) frees files faster than a disk mounted
 * with discard takes their blocks back: it waits while half the slots are
 * taken, so that it scans on while the reaper waits for the disk, and
 * commits always find room.
 */
void store_close_paced(struct stash_store *st, int fd)
{
	close_queued(st, fd, REAP_SLOTS / 2);
}
