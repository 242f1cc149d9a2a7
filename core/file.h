/* SPDX-License-Identifier: MIT */
/*
 * file.h - struct stash_file, shared by the files that act on open files
 * (file.c, commit.c, merge.c).
 * Not a public header.
 */
#ifndef STASHFS_FILE_H
#define STASHFS_FILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "stashfs/store.h"
#include "pending.h"

enum pending_mode {
	PENDING_NONE,           /* nothing written: the handle reads its base */
	PENDING_FULL,           /* the pending buffer is the whole new content */
	PENDING_APPEND,         /* bytes to append to the content current at commit */
};

/* Metadata changed on an open file before its commit. */
struct set_meta {
	bool mode, owner, times;
	mode_t mode_bits;
	uid_t uid;
	gid_t gid;
	struct timespec ts[2];
};

struct file_kind;

struct stash_file {
	const struct file_kind *ops;    /* how this kind of file opens and takes writes */
	struct stash_store *st;
	pthread_mutex_t lock;
	char *path;             /* the stash (for a view: its target) */
	char *schema;           /* bound schema at open, or NULL */
	struct {                /* what the write()-time check of a merge validated */
		bool valid;
		dev_t dev;
		ino_t ino;
		off_t size;
		struct timespec mtime;
		uint64_t gen;
		size_t patch_len;
	} checked;
	char *meta;             /* metadata view: the document at open */
	size_t meta_len;
	struct stash_caller meta_who;   /* whose metadata patches these are */
	enum stash_kind kind;
	int flags;
	mode_t create_mode;
	int base_fd;            /* the snapshot; -1 = no content yet */
	uint64_t base_version;
	off_t base_size;
	enum pending_mode mode;
	bool dirty;             /* something to commit at the last close */
	bool wrote;             /* data written since the last commit */
	unsigned flushes;       /* flushes that found only a truncation */
	int poison;             /* errno of a refused write: nothing commits */
	struct stash_error poison_err;
	struct pending p;
	bool fresh;             /* no committed version yet: the first commit creates the name */
	bool removed;           /* its name was removed meanwhile: commits publish nothing */
	int reserve_fd;         /* holds the name's creation reservation, or -1 */
	struct defaults *defaults;      /* a fresh stash's directory defaults, read at open for
					 * its first commit (NULL: that commit reads them) */
	struct stash_caller creator;
	struct timespec changed;        /* last change through the handle (fresh stat) */
	struct set_meta set;    /* metadata set through the handle: applied by its commit */
	uint64_t expect;        /* opened as NAME@V: commit only while NAME is at V (0 = any) */
};

/* For futimens: a change that commits nothing still moves mtime (and ctime). */
static const struct timespec mtime_now[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_NOW } };

/*
 * One kind of file (stash and view and past version, stream, metadata
 * view): how a handle of that kind opens and takes writes.  open fills the
 * new handle @f (store, backing path, kind and flags set; file.c frees it
 * on failure); write NULL means a stash's pending content.
 */
struct file_kind {
	int (*open)(struct stash_file *f, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_error *err);
	ssize_t (*write)(struct stash_file *f, const void *buf, size_t size, off_t off,
			 struct stash_error *err);
};

extern const struct file_kind meta_file_kind;     /* meta.c */
extern const struct file_kind stream_file_kind;   /* stream.c */

#endif
