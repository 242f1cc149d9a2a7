// SPDX-License-Identifier: MIT
/*
 * test_pending.c - what a handle will commit: bytes in memory while small,
 * in a temp file of the store once past the spill size; writes at any
 * offset (holes read as zeros), truncation that grows and shrinks, the
 * content read back the same either way, the temp file gone on reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "pending.h"
#include "stashfs/store.h"
#include "store_priv.h"

#define BIG (3 * 1024 * 1024)   /* past the spill size */

/* Does the pending content read back as @want (@len bytes), in odd-sized pieces? */
static int reads_back(struct pending *p, const char *want, size_t len)
{
	char buf[1000];
	size_t off = 0;

	for (;;) {
		ssize_t n = pending_pread(p, buf, sizeof(buf), (off_t)off);

		if (n < 0)
			return 0;
		if (n == 0)
			break;
		if (off + (size_t)n > len || memcmp(buf, want + off, (size_t)n) != 0)
			return 0;
		off += (size_t)n;
	}
	return off == len && p->len == len;
}

static void test_memory(struct stash_store *st)
{
	struct pending p = { .fd = -1 };
	char want[64] = { 0 };

	CHECK(pending_pwrite(st, &p, "hello", 5, 0) == 0);
	CHECK(p.fd < 0);                          /* small: still in memory */
	CHECK(reads_back(&p, "hello", 5));
	/* A write past the end leaves a hole of zeros. */
	CHECK(pending_pwrite(st, &p, "xy", 2, 10) == 0);
	memcpy(want, "hello", 5);
	memcpy(want + 10, "xy", 2);
	CHECK(reads_back(&p, want, 12));
	/* Overwrite in the middle. */
	CHECK(pending_pwrite(st, &p, "EL", 2, 1) == 0);
	memcpy(want + 1, "EL", 2);
	CHECK(reads_back(&p, want, 12));
	/* Shrink, then grow again: the regrown bytes are zeros, not the old ones. */
	CHECK(pending_truncate(st, &p, 3) == 0);
	CHECK(reads_back(&p, "hEL", 3));
	CHECK(pending_truncate(st, &p, 8) == 0);
	CHECK(reads_back(&p, "hEL\0\0\0\0\0", 8));
	CHECK(p.fd < 0);
	/* A read past the end reads nothing. */
	CHECK(pending_pread(&p, want, sizeof(want), 100) == 0);
	/* Into a file for the commit: the same bytes, exactly that long. */
	CHECK(pending_to_file(st, &p) == 0);
	CHECK(p.fd >= 0);
	{
		struct stat sb;

		CHECK(fstat(p.fd, &sb) == 0 && sb.st_size == 8);
	}
	CHECK(reads_back(&p, "hEL\0\0\0\0\0", 8));
	pending_reset(st, &p);
	CHECK(p.fd == -1 && p.len == 0 && p.mem == NULL);
}

static void test_spill(struct stash_store *st)
{
	struct pending p = { .fd = -1 };
	char *want = calloc(1, BIG + 16);
	char name[sizeof(p.tmp_name)];
	struct stat sb;

	if (!want) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < 5000; i++)
		want[i] = (char)('a' + i % 26);
	CHECK(pending_pwrite(st, &p, want, 5000, 0) == 0);
	CHECK(p.fd < 0);
	/* A write far out spills everything to a temp file. */
	memcpy(want + BIG - 4, "tail", 4);
	CHECK(pending_pwrite(st, &p, "tail", 4, BIG - 4) == 0);
	CHECK(p.fd >= 0 && p.mem == NULL);
	CHECK(reads_back(&p, want, BIG));
	snprintf(name, sizeof(name), "%s", p.tmp_name);
	CHECK(fstatat(st->tmp_fd, name, &sb, 0) == 0 && sb.st_size == BIG);
	/* Truncate down and up on the file: zeros where the tail was. */
	CHECK(pending_truncate(st, &p, 4000) == 0);
	CHECK(reads_back(&p, want, 4000));
	CHECK(pending_truncate(st, &p, BIG) == 0);
	memset(want + 4000, 0, BIG - 4000);
	CHECK(reads_back(&p, want, BIG));
	CHECK(pending_pwrite(st, &p, "mid", 3, 4000) == 0);
	memcpy(want + 4000, "mid", 3);
	CHECK(reads_back(&p, want, BIG));
	/* Reset drops the temp file. */
	pending_reset(st, &p);
	CHECK(fstatat(st->tmp_fd, name, &sb, 0) < 0 && errno == ENOENT);

	/* A truncate alone past the spill size spills too. */
	CHECK(pending_pwrite(st, &p, "ab", 2, 0) == 0);
	CHECK(pending_truncate(st, &p, BIG) == 0);
	CHECK(p.fd >= 0);
	memset(want, 0, BIG);
	memcpy(want, "ab", 2);
	CHECK(reads_back(&p, want, BIG));
	pending_reset(st, &p);
	free(want);
}

/* Loading a committed file: small ones into memory, large ones into a temp file. */
static void test_load(struct stash_store *st, const char *backing)
{
	char path[300];
	struct pending p = { .fd = -1 };
	char *big = malloc(BIG);
	int fd;

	snprintf(path, sizeof(path), "%s/loadme", backing);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || !big) {
		CHECK(!"cannot set up the file to load");
		free(big);
		return;
	}
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 7);
	CHECK(write(fd, "small", 5) == 5);
	CHECK(pending_load(st, &p, fd, 5) == 0);
	CHECK(p.fd < 0 && reads_back(&p, "small", 5));
	pending_reset(st, &p);
	CHECK(pwrite(fd, big, BIG, 0) == BIG);
	CHECK(pending_load(st, &p, fd, BIG) == 0);
	CHECK(p.fd >= 0 && reads_back(&p, big, BIG));
	pending_reset(st, &p);
	close(fd);
	unlink(path);
	free(big);
}

int main(void)
{
	char backing[] = "/tmp/stashfs-pending-XXXXXX", cmd[300];
	struct stash_store *st = NULL;
	struct stash_error err;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	test_memory(st);
	test_spill(st);
	test_load(st, backing);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
