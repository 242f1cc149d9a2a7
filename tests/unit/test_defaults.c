// SPDX-License-Identifier: MIT
/*
 * test_defaults.c - what a new object inherits: a directory's ttl,
 * versions, persistence and schema are defaults beneath it, the nearest
 * ancestor's winning; a new stash gets copies at its first commit and
 * keeps them when moved, as they were when it was created (opened); what
 * has none set answers the mount's default.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "defaults.h"
#include "stashfs/store.h"
#include "store_util.h"

static struct stash_store *st;
static char backing[] = "/tmp/stashfs-defaults-XXXXXX";

/* The attribute @name as stored on the backing file of @path ("" when it has none). */
static const char *raw(const char *path, const char *name)
{
	static char buf[256];
	char where[512];
	ssize_t n;

	snprintf(where, sizeof(where), "%s/%s", backing, path);
	n = getxattr(where, name, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static int set(const char *path, const char *name, const char *value)
{
	struct stash_error err;

	return stash_store_setxattr(st, path, name, value, strlen(value), 0, &who, &err);
}

/* What store_effective_xattr answers for @path. */
static const char *effective(const char *path, const char *name)
{
	static char buf[64];
	char where[512];
	struct stat sb;
	int n;

	snprintf(where, sizeof(where), "%s/%s", backing, path);
	if (stat(where, &sb) < 0)
		return "?";
	n = store_effective_xattr(st, path, &sb, name, buf, sizeof(buf));
	return n < 0 ? "-" : buf;
}

static void test_nearest(void)
{
	char buf[64], value[DEFAULTS_COUNT][STASH_XATTR_MAX];
	ssize_t len[DEFAULTS_COUNT], n;

	CHECK(stash_store_mkdir(st, "a", 0755, &who) == 0);
	CHECK(stash_store_mkdir(st, "a/b", 0755, &who) == 0);
	CHECK(stash_store_mkdir(st, "a/b/c", 0755, &who) == 0);
	CHECK(set("a", "user.stash.ttl", "3600") == 0);
	CHECK(set("a", "user.stash.versions", "2") == 0);
	CHECK(set("a/b", "user.stash.versions", "5") == 0);
	/* The nearest that has it: b for versions, a for ttl, none for the schema. */
	n = store_nearest_default(st, "a/b/c", "user.stash.versions", buf, sizeof(buf));
	CHECK(n == 1 && memcmp(buf, "5", 1) == 0);
	n = store_nearest_default(st, "a/b/c", "user.stash.ttl", buf, sizeof(buf));
	CHECK(n == 4 && memcmp(buf, "3600", 4) == 0);
	n = store_nearest_default(st, "a", "user.stash.versions", buf, sizeof(buf));
	CHECK(n == 1 && memcmp(buf, "2", 1) == 0);
	CHECK(store_nearest_default(st, "a/b/c", "user.stash.schema", buf, sizeof(buf)) ==
	      -ENODATA);
	CHECK(store_nearest_default(st, "", "user.stash.ttl", buf, sizeof(buf)) == -ENODATA);
	/* All four in one pass up from a new object's path. */
	CHECK(defaults_ancestors(st, "a/b/c/x", -1, value, len) == 0);
	for (int i = 0; i < DEFAULTS_COUNT; i++) {
		if (strcmp(defaults_names[i], "user.stash.versions") == 0)
			CHECK(len[i] == 1 && memcmp(value[i], "5", 1) == 0);
		else if (strcmp(defaults_names[i], "user.stash.ttl") == 0)
			CHECK(len[i] == 4 && memcmp(value[i], "3600", 4) == 0);
		else
			CHECK(len[i] == -1);
	}
	CHECK(defaults_ancestors(st, "top", -1, value, len) == 0);
	for (int i = 0; i < DEFAULTS_COUNT; i++)
		CHECK(len[i] == -1);
}

static void test_copied(void)
{
	struct stash_error err;

	/* A new stash gets copies of the nearest defaults at its first commit. */
	CHECK(put(st, "a/b/c/x", "{}", O_TRUNC) == 0);
	CHECK(strcmp(raw("a/b/c/x", "user.stash.versions"), "5") == 0);
	CHECK(strcmp(raw("a/b/c/x", "user.stash.ttl"), "3600") == 0);
	CHECK(strcmp(raw("a/b/c/x", "user.stash.schema"), "") == 0);
	/* Its own setting wins over a later change of the directory's. */
	CHECK(set("a/b", "user.stash.versions", "9") == 0);
	CHECK(put(st, "a/b/c/x", "{\"n\":2}", O_TRUNC) == 0);
	CHECK(strcmp(raw("a/b/c/x", "user.stash.versions"), "5") == 0);
	/* Moved out, it keeps what it got. */
	CHECK(stash_store_rename(st, "a/b/c/x", "moved", 0, &who, &err) == 0);
	CHECK(strcmp(raw("moved", "user.stash.ttl"), "3600") == 0);
	CHECK(strcmp(raw("moved", "user.stash.versions"), "5") == 0);
	/* Made at the top, it gets none. */
	CHECK(put(st, "top", "{}", O_TRUNC) == 0);
	CHECK(strcmp(raw("top", "user.stash.ttl"), "") == 0);
	CHECK(strcmp(raw("top", "user.stash.versions"), "") == 0);
}

/*
 * The defaults are read once, when the new stash is opened, and its first
 * commit takes those: as a file on ext4 takes its directory's default ACL
 * when it is created, not when it is closed.
 */
static void test_taken_at_open(void)
{
	struct stash_file *f;
	struct stash_error err;

	CHECK(stash_store_mkdir(st, "late", 0755, &who) == 0);
	CHECK(stash_file_open(st, "late/y", O_WRONLY | O_CREAT | O_EXCL, 0644, &who, &f, &err) == 0);
	CHECK(set("late", "user.stash.ttl", "60") == 0);
	CHECK(stash_file_write(f, "{}", 2, 0, &err) == 2);
	CHECK(stash_file_commit(f, STASH_COMMIT_LAST, &who, &err) == 0);
	stash_file_close(f);
	CHECK(strcmp(raw("late/y", "user.stash.ttl"), "") == 0);
	/* The next new stash there takes it. */
	CHECK(put(st, "late/z", "{}", O_TRUNC) == 0);
	CHECK(strcmp(raw("late/z", "user.stash.ttl"), "60") == 0);
}

static void test_effective(void)
{
	/* A stash with none set: persistent, never expires. */
	CHECK(strcmp(effective("top", "user.stash.persistent"), "1") == 0);
	CHECK(strcmp(effective("top", "user.stash.ttl"), "0") == 0);
	/* A directory passes on its nearest ancestor's default, else the mount's. */
	CHECK(strcmp(effective("a/b", "user.stash.ttl"), "3600") == 0);
	CHECK(strcmp(effective("a", "user.stash.ttl"), "0") == 0);
	CHECK(strcmp(effective("a/b", "user.stash.persistent"), "1") == 0);
	CHECK(strcmp(effective("a/b", "user.stash.versions"), "-") == 0);
	CHECK(store_default_persistent(st, "a/b/new"));
	CHECK(set("a", "user.stash.persistent", "0") == 0);
	CHECK(!store_default_persistent(st, "a/b/new"));
	CHECK(strcmp(effective("a/b/c", "user.stash.persistent"), "0") == 0);
	CHECK(store_default_persistent(st, "new"));
}

int main(void)
{
	char cmd[300];
	struct stash_error err;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	test_nearest();
	test_copied();
	test_taken_at_open();
	test_effective();
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
