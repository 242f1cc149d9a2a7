// SPDX-License-Identifier: MIT
/*
 * test_locks.c - the name locks: a held name excludes another locker of it
 * (in this process by the stripe's mutex, across daemons with -o shared by
 * the OFD lock on its byte of .stashfs/lock; a daemon alone leaves the
 * bytes alone), stream locks sit on their own bytes, two
 * renames in opposite directions never deadlock (stripes taken lowest
 * first), and a name being created is reserved: exclusively for O_EXCL,
 * shared otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "check.h"
#include "locks.h"
#include "stashfs/store.h"
#include "store_priv.h"
#include "store_util.h"

static struct stash_store *st;
static atomic_int got;

/* Is byte @byte of the lock file write-locked by some other open description? */
static int byte_locked(int fd, off_t byte)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

static void *lock_p(void *arg)
{
	unsigned s = store_lock_name(st, arg);

	atomic_store(&got, 1);
	store_unlock_name(st, s);
	return NULL;
}

/*
 * A held name makes another thread wait; with -o shared (@shared) another
 * daemon sees its byte locked, while a daemon alone leaves every byte be.
 */
static void test_name_lock(int probe, int shared)
{
	pthread_t t;
	unsigned s = store_lock_name(st, "p");
	struct timespec nap = { 0, 100 * 1000 * 1000 };

	CHECK(s == backing_stripe("p") && s < LOCK_STRIPES);
	CHECK(byte_locked(probe, s) == shared);
	CHECK(byte_locked(probe, LOCK_STRIPES + s) == 0);     /* not the stream's byte */
	atomic_store(&got, 0);
	CHECK(pthread_create(&t, NULL, lock_p, "p") == 0);
	nanosleep(&nap, NULL);
	CHECK(atomic_load(&got) == 0);
	store_unlock_name(st, s);
	pthread_join(t, NULL);
	CHECK(atomic_load(&got) == 1);
	CHECK(byte_locked(probe, s) == 0);
	/* A stream lock of the name is taken after the name lock, on a byte of its own. */
	s = store_lock_name(st, "p");
	CHECK(store_lock_stream(st, "p") == s);
	CHECK(byte_locked(probe, LOCK_STRIPES + s) == shared);
	store_unlock_stream(st, s);
	CHECK(byte_locked(probe, LOCK_STRIPES + s) == 0);
	CHECK(byte_locked(probe, s) == shared);
	store_unlock_name(st, s);
}

/* Renames one way and the other at once: both lock two stripes. */
static void *rename_loop(void *arg)
{
	const char *const *names = arg;
	struct stash_error err;

	for (int i = 0; i < 2000; i++)
		(void)stash_store_rename(st, names[0], names[1], 0, &who, &err);
	return NULL;
}

static void on_alarm(int sig)
{
	static const char msg[] = "test_locks: renames in opposite directions deadlocked\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

static void test_stripe_order(void)
{
	static const char *ab[2] = { "a", "b" }, *ba[2] = { "b", "a" };
	pthread_t t1, t2;

	CHECK(backing_stripe("a") != backing_stripe("b"));
	CHECK(put(st, "a", "{}", O_TRUNC) == 0);
	signal(SIGALRM, on_alarm);
	alarm(60);
	CHECK(pthread_create(&t1, NULL, rename_loop, ab) == 0);
	CHECK(pthread_create(&t2, NULL, rename_loop, ba) == 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	alarm(0);
	/* The one stash is still there, under one of its two names. */
	CHECK(reads_as(st, "a", "{}") != reads_as(st, "b", "{}"));
}

static void test_reserve(void)
{
	int x = reserve_name(st, "new", true), y, z;

	CHECK(x >= 0);
	/* Exclusive: any other creation of the name fails. */
	CHECK(reserve_name(st, "new", true) == -EEXIST);
	CHECK(reserve_name(st, "new", false) == -EEXIST);
	/* Another name is free. */
	y = reserve_name(st, "other", true);
	CHECK(y >= 0);
	close(y);
	close(x);
	/* Shared: plain creations go together, an exclusive one does not. */
	y = reserve_name(st, "new", false);
	z = reserve_name(st, "new", false);
	CHECK(y >= 0 && z >= 0);
	CHECK(reserve_name(st, "new", true) == -EEXIST);
	close(y);
	CHECK(reserve_name(st, "new", true) == -EEXIST);
	close(z);
	/* Closing the last holder frees the name. */
	x = reserve_name(st, "new", true);
	CHECK(x >= 0);
	close(x);
}

int main(void)
{
	char backing[] = "/tmp/stashfs-locks-XXXXXX", cmd[300], lock[300];
	struct stash_store_options opts;
	struct stash_error err;
	int probe;

	stash_store_options_init(&opts);
	opts.shared = 1;
	if (!mkdtemp(backing) || stash_store_open(backing, &opts, &st, &err) < 0)
		return 1;
	snprintf(lock, sizeof(lock), "%s/" STASH_INTERNAL_DIR "/lock", backing);
	probe = open(lock, O_RDWR | O_CLOEXEC);
	CHECK(probe >= 0);
	test_name_lock(probe, 1);
	test_stripe_order();
	test_reserve();
	stash_store_close(st);
	opts.shared = 0;
	CHECK(stash_store_open(backing, &opts, &st, &err) == 0);
	test_name_lock(probe, 0);
	test_reserve();
	close(probe);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
