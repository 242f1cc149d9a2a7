/* SPDX-License-Identifier: MIT */
/*
 * store.h - the store: stashes over a backing directory.
 *
 * Paths are relative to the store root, without a leading slash ("" is the
 * root, "team-a/nightly" a stash in a namespace).  Every function is
 * thread-safe.  Errors are negative errnos chosen for the user's shell;
 * where a struct stash_error is passed, it receives the reason.
 *
 * The store knows three kinds of names: directories, stashes (plain files,
 * replaced atomically at commit) and their JSON views (NAME.json, virtual:
 * read = the document, write = a top-level merge at commit).  Everything
 * under the top-level "streams" directory is an append-only stream.
 */
#ifndef STASHFS_STORE_H
#define STASHFS_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

#include "stashfs/error.h"

#define STASH_FORMAT_VERSION 1
#define STASH_INTERNAL_DIR ".stashfs"
#define STASH_VIEW_SUFFIX ".json"
#define STASH_STREAMS_DIR "streams"
#define STASH_SCHEMAS_DIR "schemas"
#define STASH_META_DIR ".stashfs-meta"     /* the metadata view, see meta.c */
#define STASH_VERSIONS_DEFAULT 16           /* past versions kept per stash */
#define STASH_VERSIONS_MAX 100000           /* the most user.stash.versions takes */
/* A write to NAME@V found NAME at another version (compare-and-swap refused). */
#define STASH_CAS_ERRNO ECANCELED

enum stash_sync {
	STASH_SYNC_ALWAYS,      /* fsync every persistent commit (default) */
	STASH_SYNC_NEVER,       /* leave it to the kernel */
};

/* The longest ttl, in seconds (100 years): deadlines stay far from overflow. */
#define STASH_TTL_MAX (100ull * 365 * 24 * 3600)

struct stash_store_options {
	int default_persistent;  /* 1 = survive restarts (default) */
	enum stash_sync sync;
	uint64_t max_size;       /* largest stash in bytes; 0 = no limit */
	int json_indent;         /* spaces per level in merged documents; 0 = compact */
	uint64_t default_ttl;    /* seconds, at most STASH_TTL_MAX; 0 = new objects never expire */
	int shared;              /* other daemons change the backing directory too */
	unsigned versions;       /* past versions kept per stash; 0 = none */
};

/* Fill @o with the defaults: persistent, sync=always, 64 MiB, indent 2, 16 versions. */
void stash_store_options_init(struct stash_store_options *o);

enum stash_kind {
	STASH_KIND_NONE = 0,
	STASH_KIND_DIR,
	STASH_KIND_STASH,
	STASH_KIND_VIEW,        /* NAME.json of stash NAME */
	STASH_KIND_STREAM,
	STASH_KIND_META,        /* .stashfs-meta/...: metadata documents */
	STASH_KIND_VERSION,     /* NAME@V: version V of stash NAME, read-only */
};

#define STASH_CALLER_GROUPS 64

/*
 * Who asks: the calling process, for ownership, audit records and the
 * permission checks of links and bindings.  The supplementary groups are
 * only filled in where a permission is judged (ngroups 0: none known).
 */
struct stash_caller {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	mode_t umask;
	int ngroups;
	gid_t groups[STASH_CALLER_GROUPS];
};

struct stash_store;
struct stash_file;
struct stash_dir;

/*
 * Open the store over @backing (created if missing).  Checks that the
 * backing filesystem takes user xattrs, writes or checks the format marker,
 * removes temp files left by commits that never finished.  On success
 * *@out owns the store (stash_store_close).
 */
int stash_store_open(const char *backing, const struct stash_store_options *opts,
		     struct stash_store **out, struct stash_error *err);

/* Close the store; every open file must have been closed. */
void stash_store_close(struct stash_store *st);

/*
 * What @path names, without touching the backing directory: views by
 * suffix, streams by place, reserved names (-EPERM) and invalid ones
 * (-EINVAL, -ENAMETOOLONG).  Returns a kind >= 0 or a negative errno.
 */
int stash_store_classify(const char *path);

/*
 * stat @path; views report their stash's metadata and size.  Expired
 * objects and ephemeral ones of a dead daemon are -ENOENT.  If @expires is
 * not NULL it receives the object's expiry (epoch seconds, 0 = never).
 */
int stash_store_stat(struct stash_store *st, const char *path, struct stat *out,
		     time_t *expires);

/* mkdir; -EEXIST also while a stash of that name is being created. */
int stash_store_mkdir(struct stash_store *st, const char *path, mode_t mode,
		      const struct stash_caller *who);
/*
 * Is a stash named @path being created (its first writer still open, here
 * or in another daemon on the backing directory)?  1 if so, 0 if not, or
 * a negative errno.
 */
int stash_store_reserved(struct stash_store *st, const char *path);
int stash_store_rmdir(struct stash_store *st, const char *path);
/* Delete a stash or a stream. */
int stash_store_unlink(struct stash_store *st, const char *path,
		       const struct stash_caller *who, struct stash_error *err);
/* Rename atomically; @flags are renameat2's (RENAME_NOREPLACE, RENAME_EXCHANGE). */
int stash_store_rename(struct stash_store *st, const char *from, const char *to,
		       unsigned flags, const struct stash_caller *who,
		       struct stash_error *err);
/* truncate(2) by name: an atomic commit of the shortened or extended content. */
int stash_store_truncate(struct stash_store *st, const char *path, off_t size,
			 const struct stash_caller *who, struct stash_error *err);
int stash_store_chmod(struct stash_store *st, const char *path, mode_t mode);
int stash_store_chown(struct stash_store *st, const char *path, uid_t uid, gid_t gid);
/* @ts as for utimensat (UTIME_NOW / UTIME_OMIT honoured). */
int stash_store_utimens(struct stash_store *st, const char *path, const struct timespec ts[2]);
int stash_store_statfs(struct stash_store *st, struct statvfs *out);

/*
 * xattrs: the user.stash.* interface plus plain user.* storage.  Linking a
 * stream to a stash or binding a schema needs @who to be able to read that
 * stash or schema (-EACCES, with the reason also in the object's
 * user.stash.error); @who NULL skips that check (the daemon's own work).
 */
int stash_store_getxattr(struct stash_store *st, const char *path, const char *name,
			 void *value, size_t size);
/*
 * Would setxattr take @name = @value on some stash (its value's form only)?
 * 0 if so; 1 for one of the store's own read-only attributes (version,
 * sha256, ...), which setxattr lets through and ignores; else a negative
 * errno.
 */
int stash_store_check_xattr(const char *name, const void *value, size_t size,
			    struct stash_error *err);
int stash_store_setxattr(struct stash_store *st, const char *path, const char *name,
			 const void *value, size_t size, int flags,
			 const struct stash_caller *who, struct stash_error *err);
int stash_store_listxattr(struct stash_store *st, const char *path, char *list, size_t size);
int stash_store_removexattr(struct stash_store *st, const char *path, const char *name);

/*
 * Directory listing.  Entries of the backing directory that are not part of
 * the store (the internal directory, stray temp files) are left out.
 * The callback returns nonzero to stop.
 */
int stash_dir_open(struct stash_store *st, const char *path, struct stash_dir **out);
/* Next entry at or after position @off; fills name/type/next offset. 0 = entry, 1 = end. */
int stash_dir_next(struct stash_dir *d, off_t off, const char **name, unsigned char *type,
		   ino_t *ino, off_t *next);
void stash_dir_close(struct stash_dir *d);

/*
 * Open files.  A handle reads the version committed when it was opened
 * (its snapshot) until it writes; writes are buffered in the handle and
 * committed atomically by stash_file_commit.  @flags are open(2)'s.
 */
int stash_file_open(struct stash_store *st, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_file **out,
		    struct stash_error *err);

/* Read up to @size bytes at @off.  Returns the count or a negative errno. */
ssize_t stash_file_read(struct stash_file *f, void *buf, size_t size, off_t off);

/*
 * For zero-copy reads: if the handle's content is a backing file as is,
 * store a new descriptor of it in *@fd (the caller closes it) and return 0;
 * otherwise -EAGAIN (use stash_file_read).
 */
int stash_file_read_fd(struct stash_file *f, int *fd);

/*
 * Write @size bytes at @off (at the end for O_APPEND handles and streams).
 * Returns @size or a negative errno; a refused write poisons the handle so
 * that nothing it wrote is ever committed.
 */
ssize_t stash_file_write(struct stash_file *f, const void *buf, size_t size, off_t off,
			 struct stash_error *err);

/* ftruncate(2) on the handle's buffer. */
int stash_file_truncate(struct stash_file *f, off_t size, struct stash_error *err);

enum stash_commit {
	STASH_COMMIT_FLUSH,     /* close(2) of one fd: maybe a dup of the handle */
	STASH_COMMIT_SYNC,      /* fsync(2): everything pending */
	STASH_COMMIT_LAST,      /* the last close of the open file */
};

/*
 * Commit what the handle wrote.  LAST and SYNC commit any pending change.
 * FLUSH commits data written since the last commit, and a truncation
 * without data only from the second flush on: a shell's `> f` closes a
 * duplicate fd before its data arrives, and publishing the empty stash then
 * would show readers a torn replace.  Returns 0, or the refusal (also for a
 * poisoned handle).
 */
int stash_file_commit(struct stash_file *f, enum stash_commit when,
		      const struct stash_caller *who, struct stash_error *err);

/*
 * Does the handle hold a change (a truncation, a new empty stash) but no
 * data written since its last commit?  A flush of it may be a dup's close
 * (a shell's redirection) with the writes still to come.
 */
bool stash_file_waiting(struct stash_file *f);

/* Drop everything written through the handle since its last commit. */
void stash_file_discard(struct stash_file *f);

/* fsync the committed content (after a commit). */
int stash_file_sync(struct stash_file *f, int datasync);

/*
 * stat through the handle: its own size, times and metadata for a pending
 * write (a new stash: what it will be at its first commit); st_nlink 0 once
 * its name was removed.
 */
int stash_file_stat(struct stash_file *f, struct stat *out);

/* Has the handle's stash no committed version yet (its name exists for nobody)? */
bool stash_file_fresh(struct stash_file *f);

/*
 * chmod / chown / utimens through an open writer: recorded on the handle and
 * applied to the version its next commit publishes (the only place for a
 * stash not committed yet).  NULL @mode / @ts and -1 ids leave that part.
 * @ts as for utimensat; a later write moves the mtime again, as on ext4.
 */
int stash_file_setattr(struct stash_file *f, const mode_t *mode, uid_t uid, gid_t gid,
		       const struct timespec *ts);

/*
 * Remove a new stash before its first commit: true if it had none yet (its
 * commits then publish nothing, and its reserved name is free again),
 * false if its first commit came first.
 */
bool stash_file_drop_new(struct stash_file *f);

/*
 * The handle's name was removed (or replaced by a rename): its commits
 * publish nothing, and a new stash's reserved name is free again.
 */
void stash_file_removed(struct stash_file *f);

/* The handle's stash was renamed to @path: its commits go there. */
int stash_file_moved(struct stash_file *f, const char *path);

/*
 * Version of the content a writable handle started from, then of its last
 * commit; 0 for a read-only handle (it never commits).
 */
uint64_t stash_file_version(const struct stash_file *f);

/* Close: frees the handle; never commits (call stash_file_commit first). */
void stash_file_close(struct stash_file *f);

/* Called with the path of each object the sweeper expired. */
typedef void (*stash_expire_cb)(void *ctx, const char *path);

/*
 * Expire what is due: `expire` records, removal from the backing
 * directory, @cb per object.  *@next receives the next deadline known
 * (epoch milliseconds, 0 = none).  Returns how many expired.
 */
int stash_store_sweep(struct stash_store *st, stash_expire_cb cb, void *ctx, int64_t *next);

/*
 * Walk the whole store once (at start, in the background): remove what
 * expired or was left ephemeral by a dead daemon, queue the deadlines of
 * the rest.
 */
int stash_store_scan(struct stash_store *st, stash_expire_cb cb, void *ctx);

/* At a clean stop: remove this daemon's ephemeral objects. */
void stash_store_shutdown(struct stash_store *st);

/* Path of the stash behind a view ("a/b.json" -> "a/b"), caller frees. */
char *stash_view_target(const char *path);

#endif
