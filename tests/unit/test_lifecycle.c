// SPDX-License-Identifier: MIT
/*
 * test_lifecycle.c - deadlines and the checks of lifecycle xattrs: when an
 * object with a ttl expires (counted from its last change), what values
 * user.stash.ttl / persistent / versions take, and what the store shows
 * of an expired stash.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "backing.h"
#include "lifecycle.h"
#include "locks.h"

static const struct stash_caller who = { .uid = 0, .gid = 0, .pid = 1, .umask = 022 };

static void test_deadline(void)
{
	char path[] = "/tmp/stashfs-life-XXXXXX";
	int fd = mkstemp(path);
	struct stat sb;
	int64_t change;

	CHECK(fd >= 0);
	CHECK(fstat(fd, &sb) == 0);
	change = (int64_t)sb.st_ctim.tv_sec * 1000 + sb.st_ctim.tv_nsec / 1000000;
	CHECK(life_deadline(fd, &sb) == 0);                     /* no ttl: never */
	CHECK(fsetxattr(fd, "user.stash.ttl", "0", 1, 0) == 0);
	CHECK(fstat(fd, &sb) == 0);
	CHECK(life_deadline(fd, &sb) == 0);                     /* 0: never */
	CHECK(fsetxattr(fd, "user.stash.ttl", "90", 2, 0) == 0);
	CHECK(fstat(fd, &sb) == 0);
	change = (int64_t)sb.st_ctim.tv_sec * 1000 + sb.st_ctim.tv_nsec / 1000000;
	CHECK(life_deadline(fd, &sb) == change + 90000);
	CHECK(fsetxattr(fd, "user.stash.ttl", "x", 1, 0) == 0);
	CHECK(fstat(fd, &sb) == 0);
	CHECK(life_deadline(fd, &sb) == 0);                     /* not a number: never */
	close(fd);
	unlink(path);
}

static void test_xattr_values(void)
{
	struct stash_error err;

	CHECK(life_check_xattr("user.stash.ttl", "3600", 4, &err) == 0);
	CHECK(life_check_xattr("user.stash.ttl", "-1", 2, &err) == -EINVAL);
	CHECK(life_check_xattr("user.stash.ttl", "3155760001", 10, &err) == -EINVAL);
	CHECK(life_check_xattr("user.stash.persistent", "1", 1, &err) == 0);
	CHECK(life_check_xattr("user.stash.persistent", "2", 1, &err) == -EINVAL);
	CHECK(life_check_xattr("user.stash.versions", "100001", 6, &err) == -EINVAL);
	CHECK(life_check_xattr("user.stash.version", "3", 1, &err) == -EPERM);
	CHECK(life_check_xattr("user.stash.nonsense", "3", 1, &err) == -EINVAL);
	CHECK(life_check_xattr("user.other", "anything", 8, &err) == 0);
}

/* An expired stash is gone to every reader, without waiting for the sweeper. */
static void test_expired_stash_reads_as_missing(void)
{
	char backing[] = "/tmp/stashfs-life-XXXXXX", cmd[300];
	struct stash_store *st = NULL;
	struct stash_error err;
	struct stash_file *f;
	struct stat sb;

	CHECK(mkdtemp(backing) != NULL);
	CHECK(stash_store_open(backing, NULL, &st, &err) == 0);
	if (!st)
		return;
	CHECK(stash_file_open(st, "p", O_WRONLY | O_CREAT | O_TRUNC, 0644, &who, &f, &err) == 0);
	CHECK(stash_file_write(f, "x", 1, 0, &err) == 1);
	CHECK(stash_file_commit(f, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(f);
	CHECK(stash_store_setxattr(st, "p", "user.stash.ttl", "1", 1, 0, &who, &err) == 0);
	CHECK(stash_store_stat(st, "p", &sb, NULL) == 0);
	sleep(2);
	CHECK(stash_store_stat(st, "p", &sb, NULL) == -ENOENT);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
}

static void commit_text(struct stash_store *st, const char *path, const char *text)
{
	struct stash_error err;
	struct stash_file *f;

	CHECK(stash_file_open(st, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &who, &f, &err) == 0);
	if (!f)
		return;
	CHECK(stash_file_write(f, text, strlen(text), 0, &err) == (ssize_t)strlen(text));
	CHECK(stash_file_commit(f, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(f);
}

/*
 * A stash committed again and again is queued once, and kept once as
 * ephemeral, yet expires on its last deadline, also one moved earlier.
 */
static void test_each_path_queued_once(void)
{
	char backing[] = "/tmp/stashfs-life-XXXXXX", cmd[300];
	struct stash_store *st = NULL;
	struct stash_error err;
	size_t deadlines, eph;
	struct stat sb;
	int64_t next;

	CHECK(mkdtemp(backing) != NULL);
	CHECK(stash_store_open(backing, NULL, &st, &err) == 0);
	if (!st)
		return;
	commit_text(st, "p", "0");
	CHECK(stash_store_setxattr(st, "p", "user.stash.ttl", "3600", 4, 0, &who, &err) == 0);
	commit_text(st, "e", "0");
	CHECK(stash_store_setxattr(st, "e", "user.stash.persistent", "0", 1, 0, &who, &err) == 0);
	for (int i = 0; i < 200; i++) {
		commit_text(st, "p", "x");
		commit_text(st, "e", "x");
	}
	life_counts(st, &deadlines, &eph);
	CHECK(deadlines == 1);          /* was 201 */
	CHECK(eph == 1);                /* was 201 */
	/* Moved earlier: queued again, and the sweep removes it on time. */
	CHECK(stash_store_setxattr(st, "p", "user.stash.ttl", "1", 1, 0, &who, &err) == 0);
	life_counts(st, &deadlines, &eph);
	CHECK(deadlines == 2);
	CHECK(stash_store_sweep(st, NULL, NULL, &next) == 0);
	CHECK(stash_store_stat(st, "p", &sb, NULL) == 0);
	sleep(2);
	CHECK(stash_store_sweep(st, NULL, NULL, &next) == 1);
	snprintf(cmd, sizeof(cmd), "%s/p", backing);
	CHECK(access(cmd, F_OK) < 0 && errno == ENOENT);
	life_counts(st, &deadlines, &eph);
	CHECK(deadlines == 1);          /* the hour's, which will find nothing */
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
}

struct sweep_run {
	struct stash_store *st;
	int expired;
};

static void *sweep_thread(void *arg)
{
	struct sweep_run *run = arg;
	int64_t next;

	run->expired = stash_store_sweep(run->st, NULL, NULL, &next);
	return NULL;
}

/*
 * The sweeper takes a/p off the queue, and `mv a b` runs before it opens
 * the stash: b/p still expires in that sweep (it used to wait for the next
 * start-up scan, gone for readers but kept on the disk).
 */
static void test_directory_moved_while_sweeping(void)
{
	char backing[] = "/tmp/stashfs-life-XXXXXX", cmd[300];
	struct sweep_run run = { 0 };
	struct stash_store *st = NULL;
	struct stash_error err;
	size_t deadlines, eph;
	pthread_t t;
	unsigned s;

	/* The test holds a/p's lock while it renames: other stripes for a and b. */
	CHECK(backing_stripe("a/p") != backing_stripe("a") &&
	      backing_stripe("a/p") != backing_stripe("b"));
	CHECK(mkdtemp(backing) != NULL);
	CHECK(stash_store_open(backing, NULL, &st, &err) == 0);
	if (!st)
		return;
	CHECK(stash_store_mkdir(st, "a", 0755, &who) == 0);
	commit_text(st, "a/p", "x");
	CHECK(stash_store_setxattr(st, "a/p", "user.stash.ttl", "1", 1, 0, &who, &err) == 0);
	sleep(2);
	s = store_lock_name(st, "a/p");
	run.st = st;
	CHECK(pthread_create(&t, NULL, sweep_thread, &run) == 0);
	do {                            /* until the sweeper has taken it */
		usleep(1000);
		life_counts(st, &deadlines, &eph);
	} while (deadlines > 0);
	CHECK(stash_store_rename(st, "a", "b", 0, &who, &err) == 0);
	store_unlock_name(st, s);
	pthread_join(t, NULL);
	CHECK(run.expired == 1);        /* was 0 */
	snprintf(cmd, sizeof(cmd), "%s/b/p", backing);
	CHECK(access(cmd, F_OK) < 0 && errno == ENOENT);
	life_counts(st, &deadlines, &eph);
	CHECK(deadlines == 0);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
}

int main(void)
{
	test_deadline();
	test_xattr_values();
	test_expired_stash_reads_as_missing();
	test_each_path_queued_once();
	test_directory_moved_while_sweeping();
	return check_done();
}
