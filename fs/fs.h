/* SPDX-License-Identifier: MIT */
/*
 * fs.h - the daemon's private declarations: the inode table that maps the
 * kernel's inode numbers onto store paths, and the operations table.
 */
#ifndef STASHFS_FS_H
#define STASHFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "stashfs/store.h"

/* One macro for all logging; per-operation tracing only with -d. */
#define LOG(level, ...) fuse_log(level, "stashfs: " __VA_ARGS__)

struct stashfs_config {
	double cache_timeout;   /* entry/attr timeout for stashes and dirs */
	double sweep_interval;  /* seconds between sweeper rounds at most */
	int debug;
	/* Ownership shown to the kernel: -1 = as stored (see uid=, gid=, umask=). */
	long uid;
	long gid;
	long umask;
};

/*
 * A name the kernel knows.  Nodes live while the kernel holds lookups on
 * them, open handles use them, or children hang below them.  The kernel's
 * inode number is the node's address, stable for the node's life (commits
 * replace the backing file, so its inode number can't serve).  A million
 * of them are held at once: 48 bytes each with a short name (the fields
 * pack into 30, the name follows); open files are found in a table of
 * their own (struct stashfs.fh_hash).
 */
#define NODE_PINNED UINT32_MAX  /* nlookup that has stopped counting */

struct node {
	struct node *parent;
	struct node *name_next; /* in name_hash */
	uint32_t nlookup;
	uint32_t refs;          /* children + open handles */
	uint32_t generation;    /* with the address, unique over the mount's life */
	uint8_t kind;           /* enum stash_kind */
	bool is_dir : 1;
	bool named : 1;         /* false once unlinked */
	bool name_out : 1;      /* name[] holds a pointer to the name (node_move) */
	char name[];            /* at least a pointer's room */
};

struct dir_handle;
struct fh;

struct stashfs {
	struct stash_store *store;
	struct fuse_session *se;
	struct stashfs_config cfg;
	const char *mountpoint; /* absolute; NULL until mounted */
	char mount_dev[24];     /* "major:minor" of the mount, "" = unknown */
	struct dir_handle *dirs;        /* open directories, under lock */
	pthread_mutex_t lock;   /* the node table */
	struct node *root;
	struct node **name_hash;
	size_t nbuckets;        /* of name_hash; doubled as nodes outgrow it */
	size_t nnodes;          /* root included */
	size_t nodes_freed;     /* since the last malloc_trim */
	size_t nodes_freed_seen;        /* nodes_freed at the sweep before */
	uint32_t generation;    /* of the last node made */
	struct fh **fh_hash;    /* open files by node (fh->next), under lock */

	/* The sweeper thread (expiry). */
	pthread_t sweeper;
	pthread_mutex_t sweep_lock;
	pthread_cond_t sweep_cond;
	bool sweep_stop;

	struct waits *waits;    /* parked opens of future versions (waits.c) */
};

/* Note the device of the mount just made (for telling which descriptors are ours). */
void stashfs_mount_learned(struct stashfs *fs);

/* The low-level operations (ops.c). */
extern const struct fuse_lowlevel_ops stashfs_ops;

/*
 * requests.c: a copy of @ops whose operations count each request by
 * operation before calling @ops' own (read back as user.stash.requests on
 * the mount root); returns a table that lives as long as the process.
 */
const struct fuse_lowlevel_ops *stashfs_counted_ops(const struct fuse_lowlevel_ops *ops);

/* requests.c: lower @conn->max_write so a whole read reply fits a pipe libfuse can splice. */
void stashfs_fit_requests_to_pipe(struct fuse_conn_info *conn);

/* Start / stop the sweeper thread: scan at start, then expire on time. */
int stashfs_sweeper_start(struct stashfs *fs);
void stashfs_sweeper_stop(struct stashfs *fs);

/*
 * waits.c: waiting reads.  Start / stop the thread that answers parked
 * opens (stop answers those left with ENOTCONN).
 */
int stashfs_waits_start(struct stashfs *fs);
void stashfs_waits_stop(struct stashfs *fs);

/*
 * Park the open @req of @path (NAME@V or NAME@next, on node @n), a version
 * not committed yet (@target): it is answered when the version exists,
 * NAME is gone, or the reader is interrupted.  @fi is copied.
 */
void stashfs_waits_park(struct stashfs *fs, fuse_req_t req, struct node *n, const char *path,
			uint64_t target, const struct fuse_file_info *fi);

/* @path (a stash, its view or a version of it) changed or went: answer its waiters. */
void stashfs_waits_changed(struct stashfs *fs, const char *path);

/* ops.c: the work of an open of @path for @req on @n, into @fi, without the reply. */
int stashfs_open_parked(fuse_req_t req, struct node *n, const char *path,
			struct fuse_file_info *fi);

/* Set up the node table (root only). */
int stashfs_nodes_init(struct stashfs *fs);
void stashfs_nodes_destroy(struct stashfs *fs);

#endif
