/* SPDX-License-Identifier: MIT */
/*
 * store_priv.h - what the store's own files share: the store struct and
 * the safe path helpers.  Not a public header.
 */
#ifndef STASHFS_STORE_PRIV_H
#define STASHFS_STORE_PRIV_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <stdatomic.h>
#include <jansson.h>

#include "stashfs/schema.h"
#include "stashfs/store.h"
#include "backing.h"

#define DOC_CACHE_SLOTS 64              /* parsed documents kept for merges */
#define DOC_CACHE_MAX (1024 * 1024)     /* largest document kept */
#define REAP_SLOTS 256                  /* replaced files waiting to be closed */

struct schema_cache;
struct lifecycle;
/* A parsed document kept for the next merge of the same file (store.c). */
struct doc_cache_entry {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	json_t *doc;            /* owned */
};

/* Merges of one lock stripe waiting for its name lock (store.c). */
struct merge_req;
struct merge_queue {
	struct merge_req *head;
	bool busy;              /* a thread is committing this stripe's merges */
};

struct stash_store {
	struct stash_store_options opts;
	int root_fd;            /* the backing directory */
	int tmp_fd;             /* .stashfs/tmp/<instance> */
	int lock_fd;            /* .stashfs/lock, OFD byte-range locks */
	int instance_lock_fd;   /* held while this instance's temp dir lives */
	int presence_fd;        /* .stashfs/lock again: the daemons' presence byte */
	char instance[64];
	atomic_uint_fast64_t tmp_seq;
	pthread_mutex_t stripes[LOCK_STRIPES];         /* commits of a name */
	pthread_mutex_t stream_stripes[LOCK_STRIPES];  /* appends to a stream */
	int links_fd;                   /* .stashfs/links: the stream index */
	struct schema_cache *schemas;   /* binding.c */
	struct lifecycle *life;         /* lifecycle.c */
	pthread_mutex_t docs_lock;
	struct doc_cache_entry docs[DOC_CACHE_SLOTS];
	pthread_mutex_t merge_lock;     /* the merge queues */
	pthread_cond_t merge_done;
	struct merge_queue merges[LOCK_STRIPES];
	/* reap.c: descriptors of replaced files, closed by a thread of their own */
	pthread_t reaper;
	pid_t reap_pid;                 /* process that started it, 0 = none yet */
	bool reap_running;
	bool reap_stop;
	pthread_mutex_t reap_lock;
	pthread_cond_t reap_cond;
	unsigned reap_n;
	int reap_fds[REAP_SLOTS];
};

/* ---- closing replaced files off the commit path (reap.c) ---- */

int reap_init(struct stash_store *st);
/* Closes whatever is still queued, then stops the thread. */
void reap_destroy(struct stash_store *st);
/* Close @fd soon, on the reaper thread (at once if it can't take it). */
void store_close_later(struct stash_store *st, int fd);

/*
 * Name locks: a mutex stripe in this process plus an OFD lock on the same
 * byte of .stashfs/lock across daemons.  Stream appends use a second range,
 * always taken after a name lock, never before: no cycles.
 */
unsigned store_lock_name(struct stash_store *st, const char *path);
void store_unlock_name(struct stash_store *st, unsigned stripe);
unsigned store_lock_stream(struct stash_store *st, const char *path);
void store_unlock_stream(struct stash_store *st, unsigned stripe);

/* Open @path beneath the backing root, never through a symlink; "" is the root. */
static inline int store_open_beneath(struct stash_store *st, const char *path, int flags,
				     mode_t mode)
{
	return backing_open_beneath(st->root_fd, path, flags, mode);
}

/* Remove the file @path (never through a symlink): 1 on success or -errno. */
static inline int store_unlink_path(struct stash_store *st, const char *path)
{
	return backing_remove(st->root_fd, path, 0);
}

/* Remove the empty directory @path: 1 if removed, negative errno if not. */
static inline int store_rmdir_path(struct stash_store *st, const char *path)
{
	return backing_remove(st->root_fd, path, AT_REMOVEDIR);
}

/*
 * The persistence a new object at @path gets: the nearest ancestor's
 * user.stash.persistent, else the mount's default.
 */
bool store_default_persistent(struct stash_store *st, const char *path);
/*
 * The value of xattr @name set on directory @dir or its nearest ancestor
 * that has it: its length, or -ENODATA when none has.
 */
ssize_t store_nearest_default(struct stash_store *st, const char *dir, const char *name,
			      char *buf, size_t size);
/*
 * What user.stash.persistent or user.stash.ttl is for an object at @path
 * (stat @sb) that has none set: a stash or stream is persistent and never
 * expires; a directory passes on its nearest ancestor's default, else the
 * mount's.  Writes the text to @buf (at least 24 bytes) and returns its
 * length; -ENODATA for any other @name.
 */
int store_effective_xattr(struct stash_store *st, const char *path, const struct stat *sb,
			  const char *name, char *buf, size_t size);

/* Read @size bytes of @fd into a new NUL-terminated buffer; caller frees. */
int store_slurp(int fd, off_t size, char **out, size_t *len);

/* ---- schema bindings (binding.c) ---- */

/* Set up / tear down the compiled-schema cache. */
int binding_init(struct stash_store *st);
void binding_destroy(struct stash_store *st);

/*
 * Compile the text written to schemas/@name; -EINVAL with the reason if it
 * is not a valid JSON Schema.
 */
int binding_compile(struct stash_store *st, const char *name, const char *text, size_t len,
		    struct stash_error *err);

/* Counts the changes under schemas/ made through this daemon. */
uint64_t binding_generation(struct stash_store *st);

/* Something under schemas/ changed through this daemon: recheck cached schemas. */
void binding_changed(struct stash_store *st);

/* Does schema @name exist and compile?  -EINVAL with the reason if not. */
int binding_check(struct stash_store *st, const char *name, struct stash_error *err);

/*
 * binding_check, then call @fn (if not NULL) with the name of every schema
 * that schema @name refers to, as it compiles now (not @name itself), and
 * with NULL for "and maybe others not listed" (31 or more); stop at and return
 * @fn's first nonzero answer.
 */
int binding_each_dep(struct stash_store *st, const char *name,
		     int (*fn)(const char *schema, void *ctx), void *ctx, struct stash_error *err);

/*
 * Validate @doc (or, if NULL, the @len bytes at @text) against schema
 * @name for stash @path.  A missing schema refuses (fail closed).
 */
int binding_validate(struct stash_store *st, const char *name, const char *path,
		     const json_t *doc, const char *text, size_t len, struct stash_error *err);

/* ---- persistence and expiry (lifecycle.c) ---- */

int life_init(struct stash_store *st);
void life_destroy(struct stash_store *st);
/* May any object have a ttl or be ephemeral?  (False only after a clean scan.) */
bool life_any(struct stash_store *st);
/* When the object at @fd expires (epoch milliseconds), 0 = never. */
int64_t life_deadline(int fd, const struct stat *sb);
/* 0 if the object at @fd is live, -ENOENT if expired or an orphaned ephemeral. */
int life_check(struct stash_store *st, int fd, const struct stat *sb, time_t *expires);
/* After a commit or metadata change: queue its deadline, remember ephemerals. */
void life_note(struct stash_store *st, const char *path, int fd);
/* Check a user.* xattr write: -EINVAL bad value or unknown name, -EPERM read-only. */
int life_check_xattr(const char *name, const char *value, size_t size, struct stash_error *err);
/* Computed xattrs (sha256, expires): length, -errno, or 1 if @name is not one. */
int life_virtual_xattr(int fd, const struct stat *sb, const char *name, char *buf, size_t size);
/* Internal xattrs never shown to users. */
bool life_hidden_xattr(const char *name);

/* ---- the metadata view (meta.c) ---- */

/* The object a view path describes; *@dir_file for a directory's own file. */
int meta_target(const char *path, char *out, size_t size, bool *dir_file);
int meta_stat(struct stash_store *st, const char *path, struct stat *out);
/* The metadata document of @target (caller frees); NULL with *@err. */
char *meta_render(struct stash_store *st, const char *target, size_t *len, int *err);
/* Apply a metadata merge patch to @target, as @who (whose permissions links and bindings need). */
int meta_apply(struct stash_store *st, const char *target, const char *text, size_t len,
	       const struct stash_caller *who,
	       struct stash_error *err);

/* ---- streams (stream.c) ---- */

struct stream_audit;

/* Can @stash be the target of a link (a stash path, no "..")? */
bool stream_path_ok(const char *stash);

/* Are streams linked to @stash?  (Stable while its name lock is held.) */
bool stream_linked(struct stash_store *st, const char *stash);

/* Add or remove "stash -> stream" in the link index (takes the stash's lock). */
int stream_index_update(struct stash_store *st, const char *stash, const char *stream, bool add);

/*
 * Before a change of @stash to @version commits (caller holds its name
 * lock): if streams are linked to it, journal their record and return it
 * in *@out (NULL when nothing is linked).  @data (borrowed) is the record's
 * data; NULL = derive it from @content_fd.  After the change is in place,
 * stream_audit_commit appends the records; if it failed, stream_audit_abort.
 */
int stream_audit_begin(struct stash_store *st, const char *stash, const char *op,
		       uint64_t version, json_t *data, int content_fd,
		       const struct stash_caller *who, struct stream_audit **out);
void stream_audit_commit(struct stash_store *st, struct stream_audit *a);
void stream_audit_abort(struct stash_store *st, struct stream_audit *a);

/* Replay journal @name in @dirfd of an instance that died (at start-up). */
void stream_recover_journal(struct stash_store *st, int dirfd, const char *name);

#endif
