// SPDX-License-Identifier: MIT
/*
 * test_xattr.c - metadata by path: plain user.* attributes are kept,
 * listed and removed; the store's own read-only ones (version, sha256,
 * expires, error, seq) take a set or a remove without complaint and keep
 * their values; other namespaces are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "store_util.h"

static struct stash_store *st;

/* The value of @name on @path as a string, "-errno" when it has none. */
static const char *value_of(const char *path, const char *name)
{
	static char buf[512];
	int n = stash_store_getxattr(st, path, name, buf, sizeof(buf) - 1);

	if (n < 0)
		snprintf(buf, sizeof(buf), "%d", n);
	else
		buf[n] = '\0';
	return buf;
}

/* Is @name in the list of @path's attributes? */
static int listed(const char *path, const char *name)
{
	char list[4096];
	int n = stash_store_listxattr(st, path, list, sizeof(list));

	for (char *p = list; n > 0 && p < list + n; p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return 1;
	return 0;
}

static void test_user(void)
{
	struct stash_error err;

	CHECK(put(st, "p", "{}", O_TRUNC) == 0);
	CHECK(stash_store_setxattr(st, "p", "user.note", "hi", 2, 0, &who, &err) == 0);
	CHECK(strcmp(value_of("p", "user.note"), "hi") == 0);
	CHECK(listed("p", "user.note"));
	/* XATTR_CREATE on a name that is there fails as on ext4. */
	CHECK(stash_store_setxattr(st, "p", "user.note", "x", 1, XATTR_CREATE, &who, &err) ==
	      -EEXIST);
	/* A commit keeps it. */
	CHECK(put(st, "p", "{\"a\":1}", O_TRUNC) == 0);
	CHECK(strcmp(value_of("p", "user.note"), "hi") == 0);
	CHECK(stash_store_removexattr(st, "p", "user.note") == 0);
	CHECK(atoi(value_of("p", "user.note")) == -ENODATA);
	CHECK(!listed("p", "user.note"));
	CHECK(stash_store_removexattr(st, "p", "user.note") == -ENODATA);
}

static void test_readonly(void)
{
	static const char *const names[] = {
		"user.stash.version", "user.stash.sha256", "user.stash.expires",
		"user.stash.error", "user.stash.seq",
	};
	struct stash_error err;
	char before[5][512];

	/* Give each a value where it can have one: a ttl, a refused merge. */
	CHECK(stash_store_setxattr(st, "p", "user.stash.ttl", "3600", 4, 0, &who, &err) == 0);
	CHECK(put_err(st, "p.json", "[1]", O_TRUNC, &err) == -EINVAL);
	CHECK(strtoll(value_of("p", "user.stash.version"), NULL, 10) == 2);
	CHECK(strlen(value_of("p", "user.stash.sha256")) == 64);
	CHECK(strtoll(value_of("p", "user.stash.expires"), NULL, 10) > 0);
	CHECK(strstr(value_of("p", "user.stash.error"), "one JSON object") != NULL);
	for (int i = 0; i < 5; i++)
		snprintf(before[i], sizeof(before[i]), "%s", value_of("p", names[i]));
	for (int i = 0; i < 5; i++) {
		stash_error_clear(&err);
		CHECK_MSG(stash_store_setxattr(st, "p", names[i], "7", 1, 0, &who, &err) == 0,
			  "set %s", names[i]);
		CHECK(err.code == 0);
		CHECK_MSG(stash_store_removexattr(st, "p", names[i]) == 0, "remove %s", names[i]);
		CHECK(stash_store_check_xattr(names[i], "7", 1, &err) == 1);
	}
	for (int i = 0; i < 5; i++)
		CHECK_MSG(strcmp(value_of("p", names[i]), before[i]) == 0, "%s changed to %s",
			  names[i], value_of("p", names[i]));
	CHECK(reads_as(st, "p", "{\"a\":1}"));
}

static void test_namespaces(void)
{
	static const char *const names[] = {
		"trusted.x", "security.capability", "system.posix_acl_access", "other.x",
	};
	struct stash_error err;

	for (int i = 0; i < 4; i++) {
		CHECK(stash_store_setxattr(st, "p", names[i], "v", 1, 0, &who, &err) == -EOPNOTSUPP);
		CHECK(stash_store_check_xattr(names[i], "v", 1, &err) == -EOPNOTSUPP);
		CHECK(stash_store_getxattr(st, "p", names[i], NULL, 0) == -ENODATA);
		CHECK(stash_store_removexattr(st, "p", names[i]) == -ENODATA);
		CHECK(!listed("p", names[i]));
	}
	/* The daemon's own mark of an ephemeral object is hidden and stays. */
	CHECK(stash_store_removexattr(st, "p", "user.stash.session") == -EPERM);
	CHECK(!listed("p", "user.stash.session"));
}

int main(void)
{
	char backing[] = "/tmp/stashfs-xattr-XXXXXX", cmd[300];
	struct stash_error err;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	test_user();
	test_readonly();
	test_namespaces();
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
