// SPDX-License-Identifier: MIT
/*
 * test_access.c - who may link a stream to a stash and bind a schema: the
 * mode bits, owners, groups and directory search bits judged by the store
 * (no FUSE), on a temporary backing directory prepared as root would.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"

static char backing[256];

/* A backing object owned by @uid:@gid with @mode (a directory if @dir). */
static void make(const char *name, bool dir, uid_t uid, gid_t gid, mode_t mode)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", backing, name);
	if (dir) {
		CHECK(mkdir(path, 0700) == 0 || errno == EEXIST);
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
		if (fd >= 0) {
			CHECK(write(fd, "{}\n", 3) == 3);
			close(fd);
		}
	}
	CHECK(chown(path, uid, gid) == 0);
	CHECK(chmod(path, mode) == 0);
}

static int link_as(struct stash_store *st, const struct stash_caller *who, const char *target,
		   struct stash_error *err)
{
	stash_error_clear(err);
	return stash_store_setxattr(st, "streams/s", "user.stash.linked_stash", target,
				    strlen(target), 0, who, err);
}

static void test_links(struct stash_store *st)
{
	struct stash_caller nobody = { .uid = 65534, .gid = 65534, .pid = 1 };
	struct stash_caller member = { .uid = 1000, .gid = 1000, .pid = 1, .ngroups = 2,
				       .groups = { 1000, 4242 } };
	struct stash_caller root = { .uid = 0, .gid = 0, .pid = 1 };
	struct stash_error err;

	make("streams/s", false, 65534, 65534, 0644);
	make("open", false, 0, 0, 0644);
	make("private", false, 0, 0, 0600);
	make("mine", false, 65534, 0, 0400);
	make("team", false, 0, 4242, 0640);
	make("odd", false, 65534, 0, 0044);     /* others may, its owner may not */
	make("d", true, 0, 0, 0711);            /* searchable, not listable */
	make("d/in", false, 0, 0, 0644);
	make("closed", true, 0, 4242, 0750);
	make("closed/in", false, 0, 0, 0644);

	CHECK(link_as(st, &nobody, "open", &err) == 0);
	CHECK(link_as(st, &nobody, "private", &err) == -EACCES);
	CHECK_MSG(strstr(err.text, "uid 65534 may not read private: no read permission"),
		  "%s", err.text);
	CHECK(link_as(st, &nobody, "mine", &err) == 0);
	CHECK(link_as(st, &nobody, "odd", &err) == -EACCES);
	CHECK(link_as(st, &nobody, "team", &err) == -EACCES);
	CHECK(link_as(st, &member, "team", &err) == 0);         /* a supplementary group */
	CHECK(link_as(st, &nobody, "d/in", &err) == 0);         /* x is enough on the way */
	CHECK(link_as(st, &nobody, "closed/in", &err) == -EACCES);
	CHECK_MSG(strstr(err.text, "no search permission on directory closed"), "%s", err.text);
	CHECK(link_as(st, &member, "closed/in", &err) == 0);
	CHECK(link_as(st, &nobody, "closed/not-yet", &err) == -EACCES);
	CHECK(link_as(st, &nobody, "not-yet/either", &err) == 0);   /* nothing to judge yet */
	CHECK(link_as(st, &root, "private", &err) == 0);
	CHECK(link_as(st, NULL, "private", &err) == 0);              /* the daemon's own */
}

static void test_bindings(struct stash_store *st)
{
	struct stash_caller nobody = { .uid = 65534, .gid = 65534, .pid = 1 };
	struct stash_caller root = { .uid = 0, .gid = 0, .pid = 1 };
	struct stash_error err;
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/schemas/secret", backing);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "{\"type\":\"object\"}", 17) == 17);
	if (fd >= 0)
		close(fd);
	make("free", false, 65534, 65534, 0644);
	stash_error_clear(&err);
	CHECK(stash_store_setxattr(st, "free", "user.stash.schema", "secret", 6, 0, &nobody,
				   &err) == -EACCES);
	CHECK_MSG(strstr(err.text, "may not read schemas/secret"), "%s", err.text);
	CHECK(chmod(path, 0644) == 0);
	stash_error_clear(&err);
	CHECK(stash_store_setxattr(st, "free", "user.stash.schema", "secret", 6, 0, &nobody,
				   &err) == 0);

	/* More references than can be listed: only root may bind it. */
	{
		char text[4096] = "{\"allOf\":[";
		size_t len = strlen(text);

		for (int i = 0; i < 40; i++) {
			snprintf(path, sizeof(path), "%s/schemas/part%d", backing, i);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			CHECK(fd >= 0 && write(fd, "{}", 2) == 2);
			if (fd >= 0)
				close(fd);
			len += (size_t)snprintf(text + len, sizeof(text) - len, "%s{\"$ref\":\"part%d\"}",
						i ? "," : "", i);
		}
		snprintf(text + len, sizeof(text) - len, "]}");
		snprintf(path, sizeof(path), "%s/schemas/many", backing);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
		if (fd >= 0)
			close(fd);
	}
	stash_error_clear(&err);
	CHECK(stash_store_setxattr(st, "free", "user.stash.schema", "many", 4, 0, &nobody,
				   &err) == -EACCES);
	CHECK_MSG(strstr(err.text, "more schemas than can be checked"), "%s", err.text);
	stash_error_clear(&err);
	CHECK(stash_store_setxattr(st, "free", "user.stash.schema", "many", 4, 0, &root,
				   &err) == 0);
}

int main(void)
{
	struct stash_store_options opts;
	struct stash_store *st;
	struct stash_error err;
	char cmd[300];

	if (geteuid() != 0) {
		printf("skipped: needs root (chown)\n");
		return 77;
	}
	snprintf(backing, sizeof(backing), "/tmp/stashfs-access-XXXXXX");
	if (!mkdtemp(backing))
		return 2;
	stash_store_options_init(&opts);
	opts.sync = STASH_SYNC_NEVER;
	if (stash_store_open(backing, &opts, &st, &err) < 0) {
		fprintf(stderr, "open: %s\n", err.text);
		return 2;
	}
	CHECK(chmod(backing, 0755) == 0);
	test_links(st);
	test_bindings(st);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		return 2;
	return check_done();
}
