// SPDX-License-Identifier: MIT
/*
 * pending.c - what a handle will commit: written bytes in memory, spilled to
 * a temp file of this instance past a size, with disk space reserved for
 * the commit ahead.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "stashfs/json.h"
#include "stashfs/store.h"
#include "pending.h"
#include "store_priv.h"

/* Writes stay in memory up to this size, then spill to the temp file. */
#define SPILL_BYTES (1024 * 1024)

/* Copy @len bytes of @from (at 0) to the end of @to. */
int copy_content(int from, int to, off_t len)
{
	loff_t in = 0;
	int r;

	while (in < len) {
		ssize_t n = copy_file_range(from, &in, to, NULL, (size_t)(len - in), 0);

		if (n < 0) {
			char buf[65536];

			/* Filesystems without copy_file_range: plain copy. */
			if (errno != EXDEV && errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
				return -errno;
			n = pread(from, buf, sizeof(buf), in);
			if (n < 0)
				return -errno;
			if (n == 0)
				break;
			r = backing_write_all(to, buf, (size_t)n);
			if (r < 0)
				return r;
			in += n;
		} else if (n == 0) {
			break;
		}
	}
	return 0;
}

/* ---- pending buffers -------------------------------------------------- */

static int tmpfile_named(struct stash_store *st, char *name, size_t size)
{
	uint64_t seq = atomic_fetch_add(&st->tmp_seq, 1);
	int fd;

	snprintf(name, size, "t%" PRIu64, seq);
	fd = openat(st->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int pending_tmpfile(struct stash_store *st, struct pending *p)
{
	int fd = tmpfile_named(st, p->tmp_name, sizeof(p->tmp_name));

	if (fd < 0)
		return fd;
	p->fd = fd;
	return 0;
}

/* Give back the disk space held for the commit (it is about to be written). */
void pending_unreserve(struct stash_store *st, struct pending *p)
{
	if (!p->resv)
		return;
	close(p->resv_fd);
	unlinkat(st->tmp_fd, p->resv_name, 0);
	p->resv = false;
	p->resv_len = 0;
}

/* Is there room for @total more bytes on the backing filesystem?  0 or -ENOSPC. */
static int check_room(struct stash_store *st, uint64_t total)
{
	struct statvfs sv;

	if (fstatvfs(st->tmp_fd, &sv) < 0)
		return 0;       /* unknown: the commit will tell */
	return (uint64_t)sv.f_bavail * sv.f_frsize < total ? -ENOSPC : 0;
}

/*
 * Make sure a commit of @total bytes will find disk space, so that a full
 * disk fails the write() that fills it, where even shells see it, not the
 * close.  Content of RESERVE_MIN bytes or more gets the space allocated
 * (not written) in the temp file the commit will write; smaller content,
 * and a merge (@hold false: its commit writes a file of its own), is
 * checked against the free space, which costs no file.  Content already
 * spilled to its temp file is on the disk anyway.  A filesystem that can't
 * preallocate gets the check only.
 */
#define RESERVE_MIN (64 * 1024)

int pending_reserve(struct stash_store *st, struct pending *p, uint64_t total, bool hold)
{
	uint64_t want = total;

	if (p->fd >= 0)
		return 0;
	if (!hold || (total < RESERVE_MIN && !p->resv) || p->resv_len == SIZE_MAX)
		return check_room(st, total);
	if (total <= p->resv_len)
		return 0;
	if (!p->resv) {
		int fd = tmpfile_named(st, p->resv_name, sizeof(p->resv_name));

		if (fd < 0)
			return fd;
		p->resv_fd = fd;
		p->resv = true;
	}
	/* Grow in steps, so that a stream of small writes costs few calls. */
	if (want < 2 * (uint64_t)p->resv_len)
		want = 2 * (uint64_t)p->resv_len;
	if (want > total + SPILL_BYTES)
		want = total + SPILL_BYTES;
	while (fallocate(p->resv_fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)want) < 0) {
		if (errno == EOPNOTSUPP || errno == ENOSYS) {
			p->resv_len = SIZE_MAX;
			return check_room(st, total);
		}
		if (errno != ENOSPC || want == total)
			return -errno;
		want = total;   /* the step may not fit where the data does */
	}
	p->resv_len = (size_t)want;
	return 0;
}

/* Make sure the content sits in a temp file (p->fd) of exactly p->len bytes. */
int pending_to_file(struct stash_store *st, struct pending *p)
{
	bool reserved = p->resv;
	int r;

	if (p->fd >= 0)
		return 0;
	if (reserved) {
		/* The reserved file becomes the commit's: its blocks are waiting. */
		p->fd = p->resv_fd;
		memcpy(p->tmp_name, p->resv_name, sizeof(p->tmp_name));
		p->resv = false;
	} else {
		r = pending_tmpfile(st, p);
		if (r < 0)
			return r;
	}
	r = backing_write_all(p->fd, p->mem, p->len);
	/* Space held beyond the content goes back (a truncation shortened it). */
	if (r == 0 && reserved && p->resv_len > p->len && ftruncate(p->fd, (off_t)p->len) < 0)
		r = -errno;
	p->resv_len = 0;
	return r;
}

/* Move the in-memory content to a temp file for good: large writes go there. */
static int pending_spill(struct stash_store *st, struct pending *p)
{
	int r = pending_to_file(st, p);

	if (r < 0)
		return r;
	free(p->mem);
	p->mem = NULL;
	p->cap = 0;
	return 0;
}

int pending_pwrite(struct stash_store *st, struct pending *p, const void *buf,
		   size_t size, off_t off)
{
	size_t end = (size_t)off + size;

	if (p->fd < 0 && end > SPILL_BYTES) {
		int r = pending_spill(st, p);

		if (r < 0)
			return r;
	}
	if (p->fd >= 0) {
		for (size_t done = 0; done < size;) {
			ssize_t n = pwrite(p->fd, (const char *)buf + done, size - done,
					   off + (off_t)done);

			if (n < 0)
				return -errno;
			done += (size_t)n;
		}
	} else {
		if (end > p->cap) {
			size_t cap = p->cap ? p->cap : 4096;
			char *m;

			while (cap < end)
				cap *= 2;
			m = realloc(p->mem, cap);
			if (!m)
				return -ENOMEM;
			p->mem = m;
			p->cap = cap;
		}
		if ((size_t)off > p->len)
			memset(p->mem + p->len, 0, (size_t)off - p->len);
		if (size)       /* p->mem may still be NULL for an empty write */
			memcpy(p->mem + off, buf, size);
	}
	if (end > p->len)
		p->len = end;
	return 0;
}

int pending_truncate(struct stash_store *st, struct pending *p, size_t size)
{
	if (p->fd < 0 && size > SPILL_BYTES) {
		int r = pending_spill(st, p);

		if (r < 0)
			return r;
	}
	if (p->fd >= 0) {
		if (ftruncate(p->fd, (off_t)size) < 0)
			return -errno;
	} else if (size > p->len) {
		if (size > p->cap) {
			char *m = realloc(p->mem, size);

			if (!m)
				return -ENOMEM;
			p->mem = m;
			p->cap = size;
		}
		memset(p->mem + p->len, 0, size - p->len);
	}
	p->len = size;
	return 0;
}

ssize_t pending_pread(struct pending *p, void *buf, size_t size, off_t off)
{
	if ((size_t)off >= p->len)
		return 0;
	if (size > p->len - (size_t)off)
		size = p->len - (size_t)off;
	if (p->fd >= 0) {
		ssize_t n = pread(p->fd, buf, size, off);

		return n < 0 ? -errno : n;
	}
	memcpy(buf, p->mem + off, size);
	return (ssize_t)size;
}

/* Forget the pending content; a spilled temp file is unlinked. */
void pending_reset(struct stash_store *st, struct pending *p)
{
	pending_unreserve(st, p);
	if (p->fd >= 0) {
		close(p->fd);
		unlinkat(st->tmp_fd, p->tmp_name, 0);
	}
	free(p->mem);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}

/* Load @len bytes of @fd into the pending buffer (it must be empty). */
int pending_load(struct stash_store *st, struct pending *p, int fd, off_t len)
{
	if (len <= 0)
		return 0;
	if (len > SPILL_BYTES) {
		int r = pending_spill(st, p);

		if (r < 0)
			return r;
		r = copy_content(fd, p->fd, len);
		if (r < 0)
			return r;
		p->len = (size_t)len;
		return 0;
	}
	p->mem = malloc((size_t)len);
	if (!p->mem)
		return -ENOMEM;
	p->cap = (size_t)len;
	for (off_t done = 0; done < len;) {
		ssize_t n = pread(fd, p->mem + done, (size_t)(len - done), done);

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += n;
		p->len = (size_t)done;
	}
	return 0;
}
