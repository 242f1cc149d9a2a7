// SPDX-License-Identifier: MIT
/*
 * test_backing.c - the on-disk format module: name rules (the one set core
 * and stashctl share), the lock stripe, numbers, times, the format marker
 * and writes that report what write(2) said.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "backing.h"

static void test_name_rules(void)
{
	char longname[300];

	/* What a binding or a link may name: a stash path. */
	CHECK(backing_name_ok("p"));
	CHECK(backing_name_ok("team/p"));
	CHECK(backing_name_ok("team//p"));      /* core takes it: openat2 reads team/p */
	CHECK(backing_name_ok("p@"));
	CHECK(!backing_name_ok(""));
	CHECK(!backing_name_ok("/p"));
	CHECK(!backing_name_ok("p/"));
	CHECK(!backing_name_ok("../p"));
	CHECK(!backing_name_ok("a/../p"));
	CHECK(!backing_name_ok("a/./p"));
	CHECK(!backing_name_ok("."));
	CHECK(!backing_name_ok("a\nb"));
	CHECK(!backing_name_ok(".stashfs/lock"));
	CHECK(!backing_name_ok("a/.stashfs-x"));
	CHECK(!backing_name_ok(".stashfs-meta/p"));
	CHECK(!backing_name_ok("p.json"));      /* a view, not a stash */
	CHECK(!backing_name_ok("p@3"));         /* a past version */
	CHECK(!backing_name_ok("p@next"));
	memset(longname, 'n', 256);
	longname[256] = '\0';
	CHECK(!backing_name_ok(longname));
	longname[255] = '\0';
	CHECK(backing_name_ok(longname));
	/* The shape alone (schema files outside a store): views are fine there. */
	CHECK(backing_relpath_ok("p.json"));
	CHECK(!backing_relpath_ok("a/../p.json"));
	CHECK(backing_meta_path(".stashfs-meta"));
	CHECK(backing_meta_path(".stashfs-meta/p"));
	CHECK(!backing_meta_path(".stashfs-metax"));
}

static void test_version_names(void)
{
	size_t stem;
	uint64_t v;
	char vp[64];
	struct stash_error err;

	CHECK(backing_version_suffix("p@12", &stem, &v) && stem == 1 && v == 12);
	CHECK(backing_version_suffix("p@next", &stem, &v) && stem == 1 && v == 0);
	CHECK(!backing_version_suffix("p@1x", &stem, &v));
	CHECK(backing_version_suffix("p@99999999999999999999999", &stem, &v) && v == UINT64_MAX);
	CHECK(backing_version_path("a/p", 7, vp, sizeof(vp)) == 0 &&
	      strcmp(vp, ".stashfs/versions/a/p/@7") == 0);
	CHECK(backing_version_path("a/p", 7, vp, 10) == -ENAMETOOLONG);
	CHECK(backing_refuse_version("p@3", &err) == -EROFS);
	CHECK(backing_refuse_version("p@3.json", &err) == -EROFS);
	CHECK(backing_refuse_version("p", &err) == 0);
}

static void test_new_names(void)
{
	char name[260];
	struct stash_error err;

	memset(name, 'n', 250);
	name[250] = '\0';
	CHECK(backing_check_new_name(name, &err) == 0);     /* 250 + ".json" fits */
	name[250] = 'n';
	name[251] = '\0';
	CHECK(backing_check_new_name(name, &err) == -ENAMETOOLONG);
	CHECK(strstr(err.text, "at most 250 bytes") != NULL);
}

/* The stripe is FNV-1a of the path modulo the stripe count (both daemons agree). */
static void test_stripe(void)
{
	CHECK(backing_stripe("") == 2166136261u % LOCK_STRIPES);
	CHECK(backing_stripe("a") == ((2166136261u ^ 'a') * 16777619u) % LOCK_STRIPES);
	for (int i = 0; i < 1000; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		CHECK(backing_stripe(name) < LOCK_STRIPES);
	}
	CHECK(backing_reserve_byte("p") >= BACKING_RESERVE_BASE);
	CHECK(backing_reserve_byte("p") != backing_reserve_byte("q"));
}

static void test_numbers_and_times(void)
{
	uint64_t v;
	char t[BACKING_TIME_MAX];
	struct timespec ts = { .tv_sec = 1769860800, .tv_nsec = 123456789 };   /* 2026-01-31 12:00 */

	CHECK(backing_parse_u64("0", 1, &v) && v == 0);
	CHECK(backing_parse_u64("18446744073709551615", 20, &v) && v == UINT64_MAX);
	CHECK(!backing_parse_u64("18446744073709551616", 20, &v));
	CHECK(!backing_parse_u64("", 0, &v));
	CHECK(!backing_parse_u64("12a", 3, &v));
	CHECK(!backing_parse_u64("-1", 2, &v));
	backing_iso_time(&ts, false, t);
	CHECK_MSG(strcmp(t, "2026-01-31T12:00:00Z") == 0, "%s", t);
	backing_iso_time(&ts, true, t);
	CHECK_MSG(strcmp(t, "2026-01-31T12:00:00.123Z") == 0, "%s", t);
}

static void test_format_marker(void)
{
	char dir[] = "/tmp/stashfs-backing-XXXXXX", path[64], buf[64] = "";
	struct stash_error err;
	int dfd, fd;
	ssize_t n;

	CHECK(mkdtemp(dir) != NULL);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(backing_check_format(dfd, &err) == 0);        /* missing: written */
	snprintf(path, sizeof(path), "%s/format", dir);
	fd = open(path, O_RDONLY);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	CHECK(n > 0 && strcmp(buf, "stashfs-format 1\n") == 0);
	if (fd >= 0)
		close(fd);
	CHECK(backing_check_format(dfd, &err) == 0);        /* present and ours */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "stashfs-format 9\n", 17) == 17);
	close(fd);
	CHECK(backing_check_format(dfd, &err) == -EINVAL);
	CHECK(strstr(err.text, "unknown format marker") != NULL);
	unlink(path);
	close(dfd);
	rmdir(dir);
}

/* A write the device refuses reports its errno (ENOSPC), never EIO. */
static void test_write_all_errno(void)
{
	int fd = open("/dev/full", O_WRONLY);

	if (fd < 0) {
		fprintf(stderr, "no /dev/full: write errno not checked\n");
		return;
	}
	CHECK(backing_write_all(fd, "x", 1) == -ENOSPC);
	close(fd);
	fd = open("/dev/null", O_WRONLY);
	CHECK(backing_write_all(fd, "hello", 5) == 0);
	close(fd);
}

int main(void)
{
	test_name_rules();
	test_version_names();
	test_new_names();
	test_stripe();
	test_numbers_and_times();
	test_format_marker();
	test_write_all_errno();
	return check_done();
}
