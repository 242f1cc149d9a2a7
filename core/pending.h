/* SPDX-License-Identifier: MIT */
/*
 * pending.h - the content a handle will commit (pending.c).
 * Not a public header.
 */
#ifndef STASHFS_PENDING_H
#define STASHFS_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "store_priv.h"

/* What a handle will commit: a buffer in memory or spilled to a temp file. */
struct pending {
	char *mem;
	size_t len;
	size_t cap;
	int fd;                 /* >= 0 once spilled (or written for commit) */
	char tmp_name[48];
	bool resv;              /* resv_fd holds disk space for the commit */
	int resv_fd;
	size_t resv_len;
	char resv_name[48];
};

/* Copy @len bytes of @from (at 0) to the end of @to. */
int copy_content(int from, int to, off_t len);

/* Load @len bytes of @fd into the pending buffer (it must be empty). */
int pending_load(struct stash_store *st, struct pending *p, int fd, off_t len);

ssize_t pending_pread(struct pending *p, void *buf, size_t size, off_t off);

int pending_pwrite(struct stash_store *st, struct pending *p, const void *buf,
		   size_t size, off_t off);

int pending_reserve(struct stash_store *st, struct pending *p, uint64_t total, bool hold);

/* Forget the pending content; a spilled temp file is unlinked. */
void pending_reset(struct stash_store *st, struct pending *p);

int pending_tmpfile(struct stash_store *st, struct pending *p);

/* Make sure the content sits in a temp file (p->fd) of exactly p->len bytes. */
int pending_to_file(struct stash_store *st, struct pending *p);

int pending_truncate(struct stash_store *st, struct pending *p, size_t size);

/* Give back the disk space held for the commit (it is about to be written). */
void pending_unreserve(struct stash_store *st, struct pending *p);

#endif
