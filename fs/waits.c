// SPDX-License-Identifier: MIT
/*
 * waits.c - waiting reads: an open of NAME@V for a version not committed
 * yet, or of NAME@next, is parked here and answered when the version
 * exists (the open gets a handle on exactly that version), when NAME goes
 * (ENOENT), or when the reader is interrupted (EINTR).
 *
 * The open parks, not the first read: the answer is a handle on one
 * version, so every read after it is an ordinary snapshot read, the size
 * fstat shows is that version's, and nothing can end half-way through the
 * content.  A parked request holds no thread: the handler returns without
 * replying, and one thread for all waiters answers them later.  It looks
 * again at the stashes waited for when this daemon commits or removes one,
 * and every POLL_MS when anyone waits (commits by other daemons on the
 * same backing directory, expiry).
 *
 * Interrupts: libfuse calls waits_interrupted from the thread reading the
 * kernel's INTERRUPT, under the request's lock.  Whoever takes a waiter
 * off the list (under waits.lock) answers it; the answering thread first
 * unregisters the callback, which waits for a callback already running.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stashfs/waits.h"

#include "fs.h"

/* How often parked requests look for commits this daemon did not see. */
#define POLL_MS 400
/* Stashes named as changed between two rounds; beyond, the round looks at all. */
#define MAX_CHANGED 32

enum wstate {
	W_NEW,                  /* being parked */
	W_INTERRUPTED,          /* interrupted while being parked: the parker answers */
	W_LISTED,               /* waiting */
	W_TAKEN,                /* off the list: its taker answers */
};

struct waiter {
	struct waiter *next;
	struct waits *ws;
	fuse_req_t req;
	struct fuse_file_info fi;       /* the open's, answered with the handle */
	struct node *node;      /* the kernel holds it while its open is pending */
	char *stash;
	uint64_t target;
	bool newest;            /* NAME@next: the newest if the next one is not kept */
	enum wstate state;
	int result;             /* set by the round: 1 ready, < 0 error */
	uint64_t cur;
};

struct waits {
	struct stashfs *fs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stop;
	struct waiter *head;    /* waiters of one stash stay next to each other */
	size_t count;
	char *changed[MAX_CHANGED];
	unsigned nchanged;
	bool all;
};

static void waiter_free(struct waiter *w)
{
	free(w->stash);
	free(w);
}

/* Answer @w, taken off the list (W_TAKEN or never listed), and free it. */
static void answer(struct waiter *w)
{
	char path[PATH_MAX + 24];
	int r = w->result;

	/* No interrupt callback may run on it once answered. */
	fuse_req_interrupt_func(w->req, NULL, NULL);
	if (r == 1) {
		snprintf(path, sizeof(path), "%s@%" PRIu64, w->stash, w->target);
		r = stashfs_open_parked(w->req, w->node, path, &w->fi);
		/* @next after a batch of merges that skipped it: the newest. */
		if (r == -ENOENT && w->newest && w->cur != w->target) {
			snprintf(path, sizeof(path), "%s@%" PRIu64, w->stash, w->cur);
			r = stashfs_open_parked(w->req, w->node, path, &w->fi);
		}
		if (r == 0)
			fuse_reply_open(w->req, &w->fi);
	}
	if (r < 0)
		fuse_reply_err(w->req, -r);
	waiter_free(w);
}

static void waits_interrupted(fuse_req_t req, void *data)
{
	struct waiter *w = data, **pp;
	struct waits *ws = w->ws;

	(void)req;
	pthread_mutex_lock(&ws->lock);
	if (w->state == W_NEW) {
		w->state = W_INTERRUPTED;
		pthread_mutex_unlock(&ws->lock);
		return;
	}
	if (w->state != W_LISTED) {
		pthread_mutex_unlock(&ws->lock);
		return;
	}
	for (pp = &ws->head; *pp && *pp != w; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = w->next;
	ws->count--;
	w->state = W_TAKEN;
	pthread_mutex_unlock(&ws->lock);
	/* Under the request's lock: reply directly, not through answer(). */
	fuse_reply_err(w->req, EINTR);
	waiter_free(w);
}

/* Note that @stash changed (or everything, @stash NULL); the caller holds the lock. */
static void note_changed(struct waits *ws, const char *stash)
{
	if (!stash || ws->nchanged == MAX_CHANGED) {
		ws->all = true;
	} else {
		for (unsigned i = 0; i < ws->nchanged; i++)
			if (strcmp(ws->changed[i], stash) == 0)
				return;
		ws->changed[ws->nchanged] = strdup(stash);
		if (ws->changed[ws->nchanged])
			ws->nchanged++;
		else
			ws->all = true;
	}
	pthread_cond_signal(&ws->cond);
}

static bool was_changed(char **changed, unsigned n, bool all, const char *stash)
{
	if (all)
		return true;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(changed[i], stash) == 0)
			return true;
	return false;
}

/*
 * One round: look at the stashes in @changed (all if @all), outside the
 * lock, then take off the list who can be answered and answer them.
 */
static void round_once(struct waits *ws, char **changed, unsigned nchanged, bool all)
{
	struct { char *stash; int r; uint64_t cur; } *seen = NULL;
	size_t nseen = 0, cap = 0;
	struct waiter *w, **pp, *ready = NULL;
	const char *last = NULL;

	pthread_mutex_lock(&ws->lock);
	for (w = ws->head; w; w = w->next) {
		if ((last && strcmp(last, w->stash) == 0) ||
		    !was_changed(changed, nchanged, all, w->stash))
			continue;
		last = w->stash;
		if (nseen == cap) {
			void *more = realloc(seen, (cap = cap ? 2 * cap : 16) * sizeof(*seen));

			if (!more)
				break;
			seen = more;
		}
		seen[nseen].stash = strdup(w->stash);
		if (!seen[nseen].stash)
			break;
		nseen++;
	}
	pthread_mutex_unlock(&ws->lock);
	for (size_t i = 0; i < nseen; i++)
		seen[i].r = stash_waits_version(ws->fs->store, seen[i].stash, &seen[i].cur);

	pthread_mutex_lock(&ws->lock);
	for (pp = &ws->head; (w = *pp);) {
		size_t i;

		for (i = 0; i < nseen && strcmp(seen[i].stash, w->stash) != 0; i++)
			;
		if (i < nseen && (seen[i].r < 0 || seen[i].cur >= w->target)) {
			*pp = w->next;
			ws->count--;
			w->state = W_TAKEN;
			w->result = seen[i].r < 0 ? seen[i].r : 1;
			w->cur = seen[i].cur;
			w->next = ready;
			ready = w;
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&ws->lock);
	for (size_t i = 0; i < nseen; i++)
		free(seen[i].stash);
	free(seen);
	while ((w = ready)) {
		ready = w->next;
		answer(w);
	}
}

static void *waits_main(void *arg)
{
	struct waits *ws = arg;
	struct timespec last = { 0 }, now;
	char *changed[MAX_CHANGED];
	unsigned n;
	bool all;

	pthread_mutex_lock(&ws->lock);
	while (!ws->stop) {
		clock_gettime(CLOCK_REALTIME, &now);
		/* Every POLL_MS a look at all, however busy this daemon is. */
		if (ws->count && (now.tv_sec - last.tv_sec) * 1000 +
		    (now.tv_nsec - last.tv_nsec) / 1000000 >= POLL_MS)
			ws->all = true;
		if (!ws->nchanged && !ws->all) {
			struct timespec until = last;

			if (!ws->count) {
				pthread_cond_wait(&ws->cond, &ws->lock);
				continue;
			}
			until.tv_nsec += POLL_MS * 1000000L;
			until.tv_sec += until.tv_nsec / 1000000000L;
			until.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&ws->cond, &ws->lock, &until);
			continue;
		}
		n = ws->nchanged;
		memcpy(changed, ws->changed, n * sizeof(*changed));
		all = ws->all;
		if (all)
			last = now;
		ws->nchanged = 0;
		ws->all = false;
		pthread_mutex_unlock(&ws->lock);
		round_once(ws, changed, n, all);
		for (unsigned i = 0; i < n; i++)
			free(changed[i]);
		pthread_mutex_lock(&ws->lock);
	}
	pthread_mutex_unlock(&ws->lock);
	return NULL;
}

int stashfs_waits_start(struct stashfs *fs)
{
	struct waits *ws = calloc(1, sizeof(*ws));
	int r;

	if (!ws)
		return -ENOMEM;
	ws->fs = fs;
	pthread_mutex_init(&ws->lock, NULL);
	pthread_cond_init(&ws->cond, NULL);
	r = pthread_create(&ws->thread, NULL, waits_main, ws);
	if (r) {
		pthread_cond_destroy(&ws->cond);
		pthread_mutex_destroy(&ws->lock);
		free(ws);
		return -r;
	}
	fs->waits = ws;
	return 0;
}

void stashfs_waits_stop(struct stashfs *fs)
{
	struct waits *ws = fs->waits;
	struct waiter *w;

	if (!ws)
		return;
	pthread_mutex_lock(&ws->lock);
	ws->stop = true;
	pthread_cond_signal(&ws->cond);
	pthread_mutex_unlock(&ws->lock);
	pthread_join(ws->thread, NULL);
	/* The daemon is going: its connection with them too. */
	for (;;) {
		pthread_mutex_lock(&ws->lock);
		w = ws->head;
		if (w) {
			ws->head = w->next;
			ws->count--;
			w->state = W_TAKEN;
			w->result = -ENOTCONN;
		}
		pthread_mutex_unlock(&ws->lock);
		if (!w)
			break;
		answer(w);
	}
	for (unsigned i = 0; i < ws->nchanged; i++)
		free(ws->changed[i]);
	pthread_cond_destroy(&ws->cond);
	pthread_mutex_destroy(&ws->lock);
	free(ws);
	fs->waits = NULL;
}

void stashfs_waits_park(struct stashfs *fs, fuse_req_t req, struct node *n, const char *path,
			uint64_t target, const struct fuse_file_info *fi)
{
	struct waits *ws = fs->waits;
	struct waiter *w = calloc(1, sizeof(*w)), **pp;
	char stash[PATH_MAX];
	const char *at = strrchr(path, '@');

	if (!w || stash_waits_stash(path, stash, sizeof(stash)) < 0 || !(w->stash = strdup(stash))) {
		free(w);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->ws = ws;
	w->req = req;
	w->fi = *fi;
	w->node = n;
	w->target = target;
	w->newest = at && strcmp(at, "@next") == 0;
	w->state = W_NEW;
	fuse_req_interrupt_func(req, waits_interrupted, w);
	pthread_mutex_lock(&ws->lock);
	if (w->state == W_INTERRUPTED) {
		pthread_mutex_unlock(&ws->lock);
		w->result = -EINTR;
		answer(w);
		return;
	}
	/* Next to the others waiting for the same stash: a round looks at it once. */
	for (pp = &ws->head; *pp && strcmp((*pp)->stash, w->stash) != 0; pp = &(*pp)->next)
		;
	w->next = *pp;
	*pp = w;
	w->state = W_LISTED;
	ws->count++;
	/* It may have come between the look at open and now. */
	note_changed(ws, w->stash);
	pthread_mutex_unlock(&ws->lock);
}

void stashfs_waits_changed(struct stashfs *fs, const char *path)
{
	struct waits *ws = fs->waits;
	char stash[PATH_MAX];

	if (!ws)
		return;
	pthread_mutex_lock(&ws->lock);
	if (ws->count)
		note_changed(ws, stash_waits_stash(path, stash, sizeof(stash)) == 0 ? stash : NULL);
	pthread_mutex_unlock(&ws->lock);
}
