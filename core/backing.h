/* SPDX-License-Identifier: MIT */
/*
 * backing.h - the on-disk format of a backing directory, defined once: how
 * paths are resolved beneath it, the lock file and which byte locks what,
 * the format marker, instances and their temp directories, the xattr
 * names and their numbers, the stream journal, the rules for names, and
 * how times are written.  The store and stashctl both use it; it holds no
 * store state (every function takes the descriptors it works on).
 *
 * Not a public header: core's files and tools/stashctl.c include it, and
 * fs/ops.c for the xattr names.
 */
#ifndef STASHFS_BACKING_H
#define STASHFS_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

/* ---- xattr names: every user.stash.* the store keeps or shows ---- */

#define XATTR_PREFIX "user.stash."
#define XATTR_VERSION "user.stash.version"
#define XATTR_ERROR "user.stash.error"
#define XATTR_PERSISTENT "user.stash.persistent"
#define XATTR_TTL "user.stash.ttl"
#define XATTR_EXPIRES "user.stash.expires"
#define XATTR_SHA256 "user.stash.sha256"
#define XATTR_SESSION "user.stash.session"    /* owner instance of an ephemeral object */
#define XATTR_SCHEMA "user.stash.schema"
#define XATTR_LINKED "user.stash.linked_stash"
#define XATTR_SEQ "user.stash.seq"
#define XATTR_VERSIONS "user.stash.versions"
#define XATTR_PROBE "user.stash.probe"        /* start-up check that user xattrs work */
#define STASH_XATTR_MAX 4096

/* ---- the layout under BACKING/.stashfs ---- */

#define BACKING_LOCK_FILE STASH_INTERNAL_DIR "/lock"
#define BACKING_FORMAT_FILE "format"            /* in .stashfs */
#define BACKING_FORMAT_TMP "format.tmp"         /* written, then renamed to format */
#define BACKING_TMP_DIR STASH_INTERNAL_DIR "/tmp"
#define VERSIONS_DIR STASH_INTERNAL_DIR "/versions"      /* <stash path>/@<version> */
#define BACKING_LOCK_SUFFIX ".lock"             /* tmp/<instance>.lock */
#define BACKING_JOURNAL_PREFIX 'j'              /* tmp/<instance>/j<n>: an audit journal */
#define BACKING_FORMAT_MARKER_MAX 64

/* The text of .stashfs/format this release writes and accepts. */
void backing_format_marker(char out[BACKING_FORMAT_MARKER_MAX]);

/*
 * Check .stashfs/format in @internal_fd, writing it (through format.tmp)
 * when it is missing.  -EINVAL with the reason for a marker another
 * release wrote; the errno of a failed write.
 */
int backing_check_format(int internal_fd, struct stash_error *err);

/*
 * Byte ranges of .stashfs/lock (OFD locks): name stripes, then stream
 * stripes, then a probe byte and the daemons' presence byte; creation
 * reservations far above, by a 64-bit hash of the path.
 */
#define LOCK_STRIPES 1024
#define BACKING_PROBE_BYTE (2 * LOCK_STRIPES)
#define BACKING_PRESENCE_BYTE (2 * LOCK_STRIPES + 1)
#define BACKING_RESERVE_BASE ((off_t)1 << 32)

/* The lock stripe of @path, in [0, LOCK_STRIPES). */
unsigned backing_stripe(const char *path);
/* The byte of .stashfs/lock that reserves the creation of @path. */
off_t backing_reserve_byte(const char *path);
/* Take (F_WRLCK, F_RDLCK) or drop (F_UNLCK) byte @byte of @fd, waiting: 0 or -errno. */
int backing_ofd_lock(int fd, short type, off_t byte);

/*
 * Is instance @lockname ("<instance>.lock" in the temp root @tmpfd) alive,
 * that is, does a process hold its write lock?
 */
bool backing_instance_alive(int tmpfd, const char *lockname);

/* ---- paths beneath the backing directory ---- */

/* openat2 beneath @dirfd, never through a symlink: the fd or -errno. */
int backing_openat2(int dirfd, const char *path, int flags, mode_t mode);
/*
 * Open @path beneath the backing root @root ("" is the root), also when it
 * is longer than one openat2 takes: the fd or -errno.
 */
int backing_open_beneath(int root, const char *path, int flags, mode_t mode);
/* The parent directory of @path (O_PATH), *@leaf its last component: fd or -errno. */
int backing_open_parent(int root, const char *path, const char **leaf);
/* unlinkat(@flags) of @path beneath @root: 1 on success or -errno. */
int backing_remove(int root, const char *path, int flags);

/* ---- numbers in xattrs ---- */

/* Is @s (@len bytes) a non-empty run of decimal digits that fits 64 bits? */
bool backing_parse_u64(const char *s, size_t len, uint64_t *out);
/* A decimal xattr of @fd, or @dflt when absent or not a number. */
long long backing_xattr_number(int fd, const char *name, long long dflt);
/* The commit counter of an open object (0 if none). */
uint64_t backing_read_version(int fd);
/* Set the commit counter of @fd: 0 or -errno. */
int backing_write_version(int fd, uint64_t v);

/*
 * Write all @len bytes of @data to @fd, however many write(2) calls it
 * takes: 0, or what write(2) said (-ENOSPC for a write that took nothing),
 * never a made-up EIO.
 */
int backing_write_all(int fd, const void *data, size_t len);

/* Read @size bytes of @fd (from offset 0) into a new NUL-terminated buffer; caller frees. */
int backing_slurp(int fd, off_t size, char **out, size_t *len);

/* ---- names ---- */

/*
 * The shape every stored path has: relative, at most 255 bytes, no
 * trailing slash, no control characters, no "." or ".." component.
 */
bool backing_relpath_ok(const char *name);
/* A path a stash may have (what a binding or a link names): shape + a stash kind. */
bool backing_name_ok(const char *name);
/* Is @path in .stashfs-meta? */
bool backing_meta_path(const char *path);
/*
 * Does @leaf end with a version suffix ("@" then digits, or "@next")?  If
 * so, *@stem receives the length before the "@" and *@version the number
 * (0 for "@next").
 */
bool backing_version_suffix(const char *leaf, size_t *stem, uint64_t *version);
/*
 * A name a new stash may take: its NAME.json view must fit in NAME_MAX
 * too.  0 or -ENAMETOOLONG with the reason.
 */
int backing_check_new_name(const char *path, struct stash_error *err);
bool backing_has_suffix(const char *s, const char *suffix);
/* Is @path under schemas/? */
bool backing_is_schema_path(const char *path);

/* ---- times ---- */

#define BACKING_TIME_MAX 64
/* "2026-01-31T12:00:00Z", or with milliseconds "2026-01-31T12:00:00.000Z". */
void backing_iso_time(const struct timespec *ts, bool millis, char out[BACKING_TIME_MAX]);

/*
 * The backing path (relative to the root) of version @version of stash
 * @path into @out: .stashfs/versions/<path>/@<version>.  -ENAMETOOLONG if
 * it does not fit.
 */
int backing_version_path(const char *path, uint64_t version, char *out, size_t size);

/* Resolve @path to the backing path it stands for (views -> their stash). */
int backing_path(const char *path, char **out, int *kind);

/*
 * Past versions are read-only: every change by their name is refused with
 * EROFS (also creating a name that ends like one).
 */
int backing_refuse_version(const char *path, struct stash_error *err);

#endif
