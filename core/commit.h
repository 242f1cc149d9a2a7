/* SPDX-License-Identifier: MIT */
/*
 * commit.h - the one commit path (commit.c): every change of a name goes
 * through commit_publish or commit_remove, and features act on it through
 * the hooks they register.
 * Not a public header.
 */
#ifndef STASHFS_COMMIT_H
#define STASHFS_COMMIT_H

#include <stdbool.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/store.h"
#include "file.h"

struct defaults;

/* Commit appended bytes on top of whatever is committed now. */
int commit_append(struct stash_file *f, const struct stash_caller *who,
		  struct stash_error *err);

/* Commit a handle holding the full new content. */
int commit_full(struct stash_file *f, const struct stash_caller *who,
		struct stash_error *err);

/*
 * A refused write: remember why, so that nothing this handle wrote is ever
 * committed, and leave the reason in user.stash.error for `getfattr`.
 */
int poison(struct stash_file *f, int r, struct stash_error *err);

/* What a commit does to its name. */
enum commit_op {
	COMMIT_PUT,             /* new content (a write, an append, a truncate) */
	COMMIT_MERGE,           /* new content from a merge patch */
	COMMIT_DELETE,          /* rm */
	COMMIT_EXPIRE,          /* its ttl ran out */
	COMMIT_RENAME,          /* rename(2) of @from to @path */
};

/*
 * One change on its way to a name: what commit_publish() and
 * commit_remove() take.  The caller fills the first block (and zeroes the
 * rest); features see the second block filled in when their hooks run.
 */
struct commit {
	enum commit_op op;
	struct stash_store *st;
	const char *path;               /* the stash */
	int curfd;                      /* its current file, if the caller holds it; else -1 */
	int tmpfd;                      /* the new content, in the instance's temp directory
					 * (-1 for a removal) */
	const char *tmpname;
	mode_t create_mode;             /* for a new stash */
	const struct stash_caller *who; /* owner of a new stash, and whose change it is */
	const struct set_meta *set;     /* metadata set through an open file, or NULL */
	const struct defaults *defaults;        /* a new stash's directory defaults, read when
						 * it was opened; NULL: read them now */
	bool fresh;                     /* a new stash's first commit: its own owner and mode
					 * even over a file made meanwhile */
	const json_t *doc;              /* the parsed content, when the caller has it */
	json_t *patch;                  /* a merge: its patch (NULL for a put) */
	unsigned changes;               /* versions it counts for: merges committed as one (0 = 1) */
	bool validated;                 /* the content was validated against this very file */
	struct stash_error *err;        /* the reason of a refusal, or NULL */
	const char *from;               /* a rename: the name it moves to @path */
	int from_kind;                  /* a rename: stash_store_classify(@from) */
	unsigned flags;                 /* a rename: RENAME_EXCHANGE, RENAME_NOREPLACE */
	/* Filled in by commit_publish / commit_remove / commit_rename for the hooks. */
	int dirfd;                      /* the stash's directory */
	const char *leaf;               /* its name there */
	int oldfd;                      /* the file it replaces, or -1 */
	uint64_t old_version;           /* that file's version (or the name's last) */
	uint64_t version;               /* the version it commits */
	int from_dirfd;                 /* a rename: @from's directory */
	const char *from_leaf;          /* a rename: @from's name there */
	int srcfd;                      /* a rename: the file it moves, or -1 (a directory) */
};

/*
 * What a feature does around every commit, registered when the store
 * opens.  Each may be NULL.  gone: does the current file @fd count as no
 * file (expired, orphaned)?  check: may refuse the content (before the
 * version is written).  prepare: before the rename, once the content is
 * durable; may refuse, and whatever it keeps goes in *@state.  Then either
 * published (the rename happened) or aborted (it did not, or a later
 * prepare refused), each with the state of its own prepare.
 */
struct commit_hook {
	bool (*gone)(struct commit *c, int fd, const struct stat *sb);
	int (*check)(struct commit *c);
	int (*prepare)(struct commit *c, void **state);
	void (*published)(struct commit *c, void *state);
	void (*aborted)(struct commit *c, void *state);
	/* A rename only: after published, once the names' locks are released. */
	void (*unlocked)(struct commit *c);
};

/* Add @hook (borrowed for the store's life) after those registered before. */
int commit_register(struct stash_store *st, const struct commit_hook *hook);

/*
 * Publish the temp file @c->tmpfd/@c->tmpname as @c->path: metadata from
 * the current file (or ownership from @c->who and the directory defaults
 * for a new one), then what @c->set changed through an open file, the
 * check hooks, version + changes, fsync, the prepare hooks, rename, fsync
 * of the directory, the published hooks.  The caller holds the name lock.
 * On success the temp file has become the stash and @c->version holds its
 * version; a refusal fills @c->err.
 */
int commit_publish(struct commit *c);

/*
 * Remove @c->path (@c->op COMMIT_DELETE or COMMIT_EXPIRE): the prepare
 * hooks, unlink, the published hooks (aborted if the unlink failed).  The
 * caller holds the name lock; @c->curfd may hold the file.  0, or -errno
 * (-ENOENT when nothing is there, -EISDIR for a directory).
 */
int commit_remove(struct commit *c);

/*
 * Rename @c->from to @c->path (@c->op COMMIT_RENAME) with renameat2(2)
 * and @c->flags, taking both names' locks: the check hooks (with @c->srcfd
 * the file that moves, @c->oldfd the one it replaces), the source's version
 * carried past the target's, the prepare hooks, the rename, the published
 * hooks (aborted if it failed), the unlocked hooks.  @c->version is the
 * moved file's version.  0, or -errno; a refusal fills @c->err and the
 * target's user.stash.error.
 */
int commit_rename(struct commit *c);

/* Make the temp file holding @content the handle's new base. */
void rebase(struct stash_file *f, int fd, off_t size, uint64_t version);

/* Does a commit of the object at @fd get fsynced?  Ephemeral ones never. */
bool want_sync(struct stash_store *st, int fd);

/*
 * Compare-and-swap: is the stash of @f still at the version it was opened
 * as (NAME@V)?  Under the name lock this is the commit's condition.  A
 * refusal names the current version, on the handle and on the stash.
 */
int check_expected(struct stash_file *f, struct stash_error *err);

int check_size(struct stash_file *f, uint64_t size, struct stash_error *err);

/* Open the committed content of stash @path read-only (snapshot). */
int open_content(struct stash_store *st, const char *path, struct stat *stbuf);

#endif
