// SPDX-License-Identifier: MIT
/*
 * test_store.c - the store without FUSE: commits, snapshots, appends,
 * refusals and name rules, on a temporary backing directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "backing.h"
#include "store_util.h"

static char backing[256];

/* Read a backing file directly, as a user with the daemon down would. */
static char *backing_read(const char *name)
{
	static char buf[4096];
	char path[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", backing, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static void test_classify(void)
{
	char longname[300];

	CHECK(stash_store_classify("") == STASH_KIND_DIR);
	CHECK(stash_store_classify("p") == STASH_KIND_STASH);
	CHECK(stash_store_classify("team/p.json") == STASH_KIND_VIEW);
	CHECK(stash_store_classify(".json") == -EINVAL);    /* the view of "" */
	CHECK(stash_store_classify("d/..json") == -EINVAL);  /* the view of . */
	CHECK(stash_store_classify("...json") == -EINVAL);   /* the view of .. */
	CHECK(stash_store_classify(".json.json") == -EINVAL);
	CHECK(stash_store_classify(".a.json") == STASH_KIND_VIEW);
	CHECK(stash_store_classify("a.json") == STASH_KIND_VIEW);
	CHECK(stash_store_classify("streams/log") == STASH_KIND_STREAM);
	CHECK(stash_store_classify(".stashfs") == -EPERM);
	CHECK(stash_store_classify("a/.stashfs-x") == -EPERM);
	CHECK(stash_store_classify("a/..") == -EINVAL);
	CHECK(stash_store_classify("d/y.json.json") == -EINVAL);   /* the view of a view */
	/* Versions: "@" and digits, or "@next", at the end of the last component. */
	CHECK(stash_store_classify("p@12") == STASH_KIND_VERSION);
	CHECK(stash_store_classify("team/p@next") == STASH_KIND_VERSION);
	CHECK(stash_store_classify("streams/log@3") == STASH_KIND_VERSION);
	CHECK(stash_store_classify("@12") == -EINVAL);
	CHECK(stash_store_classify("p@") == STASH_KIND_STASH);
	CHECK(stash_store_classify("a@b") == STASH_KIND_STASH);
	CHECK(stash_store_classify("p@1x") == STASH_KIND_STASH);
	CHECK(stash_store_classify("p@12/q") == STASH_KIND_STASH);
	CHECK(stash_store_classify("p@12.json") == STASH_KIND_VIEW);
	memset(longname, 'n', 256);
	longname[256] = '\0';
	CHECK(stash_store_classify(longname) == -ENAMETOOLONG);
	longname[255] = '\0';
	CHECK(stash_store_classify(longname) == STASH_KIND_STASH);
}

static void test_commit_and_snapshot(struct stash_store *st)
{
	struct stash_file *reader, *w;
	struct stash_error err;
	char buf[64];
	ssize_t n;

	CHECK(put(st, "p", "first", O_TRUNC) == 0);
	CHECK(strcmp(backing_read("p"), "first") == 0);
	CHECK(stash_file_open(st, "p", O_RDONLY, 0, &who, &reader, &err) == 0);
	CHECK(put(st, "p", "second", O_TRUNC) == 0);
	n = stash_file_read(reader, buf, sizeof(buf), 0);
	CHECK(n == 5 && memcmp(buf, "first", 5) == 0);   /* snapshot kept */
	stash_file_close(reader);
	CHECK(strcmp(get(st, "p"), "second") == 0);

	/* Uncommitted writes are invisible; FLUSH without data commits nothing. */
	CHECK(stash_file_open(st, "p", O_WRONLY | O_TRUNC, 0, &who, &w, &err) == 0);
	CHECK(stash_file_commit(w, STASH_COMMIT_FLUSH, &who, &err) == 0);
	CHECK(strcmp(backing_read("p"), "second") == 0);
	CHECK(stash_file_write(w, "third", 5, 0, &err) == 5);
	CHECK(strcmp(backing_read("p"), "second") == 0);
	CHECK(stash_file_commit(w, STASH_COMMIT_FLUSH, &who, &err) == 0);
	CHECK(strcmp(backing_read("p"), "third") == 0);
	stash_file_close(w);
}

/* A name exists from its first commit; O_EXCL holds while it is written. */
static void test_first_commit_creates(struct stash_store *st)
{
	struct stash_file *w, *other;
	struct stash_error err;
	struct stat sb;
	char v[32];

	CHECK(stash_file_open(st, "fresh", O_WRONLY | O_CREAT | O_EXCL, 0600, &who, &w,
			      &err) == 0);
	CHECK(stash_file_fresh(w));
	CHECK(backing_read("fresh") == NULL);
	CHECK(stash_store_stat(st, "fresh", &sb, NULL) == -ENOENT);
	CHECK(stash_file_open(st, "fresh", O_WRONLY | O_CREAT | O_EXCL, 0600, &who, &other,
			      &err) == -EEXIST);
	CHECK(stash_file_write(w, "abc", 3, 0, &err) == 3);
	CHECK(stash_file_stat(w, &sb) == 0 && sb.st_size == 3 && (sb.st_mode & 07777) == 0600);
	CHECK(stash_file_commit(w, STASH_COMMIT_LAST, &who, &err) == 0);
	CHECK(!stash_file_fresh(w));
	stash_file_close(w);
	CHECK(strcmp(backing_read("fresh"), "abc") == 0);
	CHECK(stash_store_getxattr(st, "fresh", "user.stash.version", v, sizeof(v)) == 1 &&
	      v[0] == '1');

	/* A refused first write leaves no name; a removed one stays removed. */
	CHECK(stash_file_open(st, "gone", O_WRONLY | O_CREAT, 0644, &who, &w, &err) == 0);
	stash_file_removed(w);
	CHECK(stash_file_write(w, "x", 1, 0, &err) == 1);
	CHECK(stash_file_commit(w, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(w);
	CHECK(backing_read("gone") == NULL);
	CHECK(stash_file_open(st, "ghost", O_WRONLY | O_CREAT, 0644, &who, &w, &err) == 0);
	stash_file_discard(w);
	CHECK(stash_file_commit(w, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(w);
	CHECK(backing_read("ghost") == NULL);

	/*
	 * Dropped before its first commit (its writer's unlink): the exclusive
	 * reservation goes with it, the writes stay readable and commit
	 * nothing.  After a first commit there is nothing to drop.
	 */
	CHECK(stash_file_open(st, "tmp1", O_RDWR | O_CREAT | O_EXCL, 0600, &who, &w, &err) == 0);
	CHECK(stash_file_write(w, "scratch", 7, 0, &err) == 7);
	CHECK(stash_file_drop_new(w));
	CHECK(!stash_file_drop_new(w));
	CHECK(stash_file_open(st, "tmp1", O_WRONLY | O_CREAT | O_EXCL, 0600, &who, &other,
			      &err) == 0);
	CHECK(stash_file_read(w, v, sizeof(v), 0) == 7 && memcmp(v, "scratch", 7) == 0);
	CHECK(stash_file_commit(w, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(w);
	CHECK(backing_read("tmp1") == NULL);
	CHECK(stash_file_write(other, "kept", 4, 0, &err) == 4);
	CHECK(stash_file_commit(other, STASH_COMMIT_LAST, &who, &err) == 0);
	CHECK(!stash_file_drop_new(other));
	stash_file_close(other);
	CHECK(strcmp(backing_read("tmp1"), "kept") == 0);
}

static void test_append_and_truncate(struct stash_store *st)
{
	struct stash_file *a, *b;
	struct stash_error err;
	struct stat sb;

	CHECK(put(st, "log", "a", O_TRUNC) == 0);
	/* Two appenders: both appends survive (neither replays a stale base). */
	CHECK(stash_file_open(st, "log", O_WRONLY | O_APPEND, 0, &who, &a, &err) == 0);
	CHECK(stash_file_open(st, "log", O_WRONLY | O_APPEND, 0, &who, &b, &err) == 0);
	CHECK(stash_file_write(a, "b", 1, 0, &err) == 1);
	CHECK(stash_file_write(b, "c", 1, 0, &err) == 1);
	CHECK(stash_file_commit(a, STASH_COMMIT_LAST, &who, &err) == 0);
	CHECK(stash_file_commit(b, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(a);
	stash_file_close(b);
	CHECK(strcmp(get(st, "log"), "abc") == 0);

	CHECK(stash_store_truncate(st, "log", 1, &who, &err) == 0);
	CHECK(strcmp(get(st, "log"), "a") == 0);
	CHECK(stash_store_stat(st, "log", &sb, NULL) == 0 && sb.st_size == 1);
}

static void test_refusals(struct stash_store *st)
{
	struct stash_file *f;
	struct stash_error err;
	char big[2048];
	char reason[256];
	ssize_t n;

	memset(big, 'x', sizeof(big));
	CHECK(put(st, "small", "keep", O_TRUNC) == 0);
	CHECK(stash_file_open(st, "small", O_WRONLY | O_TRUNC, 0, &who, &f, &err) == 0);
	CHECK(stash_file_write(f, big, 1000, 0, &err) == 1000);
	CHECK(stash_file_write(f, big, 1000, 1000, &err) == -EFBIG);
	CHECK(strstr(err.text, "size limit") != NULL);
	/* Poisoned: the commit repeats the refusal and changes nothing. */
	CHECK(stash_file_commit(f, STASH_COMMIT_LAST, &who, &err) == -EFBIG);
	stash_file_close(f);
	CHECK(strcmp(get(st, "small"), "keep") == 0);
	n = stash_store_getxattr(st, "small", "user.stash.error", reason, sizeof(reason) - 1);
	CHECK(n > 0);
	reason[n > 0 ? n : 0] = '\0';
	CHECK(strstr(reason, "size limit") != NULL);
	/* The store's own attributes: set or removed, they stay as they are. */
	n = stash_store_getxattr(st, "small", "user.stash.version", reason, sizeof(reason) - 1);
	CHECK(n > 0 && (n != 1 || reason[0] != '9'));
	CHECK(stash_store_setxattr(st, "small", "user.stash.version", "9", 1, 0, NULL, &err) == 0);
	CHECK(stash_store_removexattr(st, "small", "user.stash.version") == 0);
	CHECK(stash_store_getxattr(st, "small", "user.stash.version", big, sizeof(big)) == n);
	CHECK(memcmp(big, reason, (size_t)n) == 0);
}

static void test_rename_and_dirs(struct stash_store *st)
{
	struct stash_error err;
	struct stat sb;

	CHECK(stash_store_mkdir(st, "ns", 0755, &who) == 0);
	CHECK(put(st, "ns/a", "A", O_TRUNC) == 0);
	CHECK(put(st, "ns/b", "B", O_TRUNC) == 0);
	CHECK(stash_store_rename(st, "ns/a", "ns/b", 0, &who, &err) == 0);
	CHECK(strcmp(get(st, "ns/b"), "A") == 0);
	CHECK(stash_store_stat(st, "ns/a", &sb, NULL) == -ENOENT);
	CHECK(stash_store_rename(st, "ns/b", "ns/b.json", 0, &who, &err) == -EPERM);
	CHECK(stash_store_rmdir(st, "ns") == -ENOTEMPTY);
	CHECK(stash_store_unlink(st, "ns/b", &who, &err) == 0);
	CHECK(stash_store_rmdir(st, "ns") == 0);
	CHECK(stash_store_rmdir(st, "streams") == -EBUSY);
}

static void test_symlink_not_followed(struct stash_store *st)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/escape", backing);
	CHECK(symlink("/etc", path) == 0);
	CHECK(stash_store_stat(st, "escape/hostname", &sb, NULL) < 0);
	CHECK(put(st, "escape/x", "no", O_TRUNC) < 0);
	unlink(path);
}

/*
 * Merges queue per lock stripe and may be committed several at a time.
 * Two stashes whose names share a stripe, merged into from several threads
 * at once: every merge lands in the right document, and each version counts
 * the merges of its own stash.  The names are chosen to collide under the
 * store's own stripe function.
 */
#define MERGE_THREADS 4
#define MERGES_EACH 20

struct merger {
	struct stash_store *st;
	const char *views[2];
	int id;
	int failures;
};

static void *merger_main(void *arg)
{
	struct merger *m = arg;

	for (int j = 0; j < MERGES_EACH; j++) {
		char patch[64];

		snprintf(patch, sizeof(patch), "{\"t%d_%d\":%d}", m->id, j, j);
		if (put(m->st, m->views[j % 2], patch, O_TRUNC) != 0)
			m->failures++;
	}
	return NULL;
}

static void test_concurrent_merges_sharing_a_stripe(struct stash_store *st)
{
	static char a[32] = "ma", b[32];
	static char va[40], vb[40];
	struct merger ms[MERGE_THREADS];
	pthread_t ts[MERGE_THREADS];
	char ver[32];

	for (int i = 0; !b[0] && i < 100000; i++) {
		char name[32];

		snprintf(name, sizeof(name), "mb%d", i);
		if (backing_stripe(name) == backing_stripe(a))
			snprintf(b, sizeof(b), "%s", name);
	}
	CHECK(b[0] != '\0');
	snprintf(va, sizeof(va), "%s.json", a);
	snprintf(vb, sizeof(vb), "%s.json", b);
	for (int i = 0; i < MERGE_THREADS; i++) {
		ms[i] = (struct merger){ .st = st, .views = { va, vb }, .id = i };
		CHECK(pthread_create(&ts[i], NULL, merger_main, &ms[i]) == 0);
	}
	for (int i = 0; i < MERGE_THREADS; i++) {
		pthread_join(ts[i], NULL);
		CHECK(ms[i].failures == 0);
	}
	for (int d = 0; d < 2; d++) {
		const char *name = d ? b : a;
		char *doc = get(st, name);
		char path[512];
		ssize_t n;

		for (int i = 0; doc && i < MERGE_THREADS; i++) {
			for (int j = d; j < MERGES_EACH; j += 2) {
				char key[32];

				snprintf(key, sizeof(key), "\"t%d_%d\": %d", i, j, j);
				CHECK(strstr(doc, key) != NULL);
			}
		}
		snprintf(path, sizeof(path), "%s/%s", backing, name);
		n = getxattr(path, "user.stash.version", ver, sizeof(ver) - 1);
		CHECK(n > 0);
		ver[n > 0 ? n : 0] = '\0';
		CHECK(atoi(ver) == MERGE_THREADS * MERGES_EACH / 2);
	}
}

int main(void)
{
	struct stash_store_options opts;
	struct stash_store *st;
	struct stash_error err;
	char cmd[300];

	snprintf(backing, sizeof(backing), "/tmp/stashfs-unit-XXXXXX");
	if (!mkdtemp(backing))
		return 2;
	stash_store_options_init(&opts);
	opts.max_size = 1500;
	opts.sync = STASH_SYNC_NEVER;
	if (stash_store_open(backing, &opts, &st, &err) < 0) {
		fprintf(stderr, "open: %s\n", err.text);
		return 2;
	}
	test_classify();
	test_commit_and_snapshot(st);
	test_first_commit_creates(st);
	test_append_and_truncate(st);
	test_refusals(st);
	test_rename_and_dirs(st);
	test_symlink_not_followed(st);
	test_concurrent_merges_sharing_a_stripe(st);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		return 2;
	return check_done();
}
