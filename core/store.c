// SPDX-License-Identifier: MIT
/*
 * store.c - stashes over a backing directory, committed atomically.
 *
 * A commit writes the new content to a temp file under
 * BACKING/.stashfs/tmp/<instance>/, copies the metadata xattrs over, fsyncs
 * it (persistent objects, sync=always), renames it over the stash and
 * fsyncs the directory.  Readers hold an fd on the file they opened, so a
 * commit never changes what an open reader sees: the snapshot per open
 * comes from rename, not from copying.
 *
 * Commits of one name are serialized by a striped mutex inside the process
 * and an OFD lock on byte <stripe> of BACKING/.stashfs/lock across
 * processes, so version counters and merges never race, also between
 * daemons sharing one backing directory.
 *
 * Every path is resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
 * from the backing directory's fd: a symlink planted in the backing tree
 * is never followed.  This file knows nothing of FUSE.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "stashfs/json.h"
#include "stashfs/store.h"
#include "access.h"
#include "binding.h"
#include "defaults.h"
#include "lifecycle.h"
#include "locks.h"
#include "meta.h"
#include "reap.h"
#include "store_priv.h"
#include "stream.h"
#include "versions.h"

/* Writes stay in memory up to this size, then spill to the temp file. */
#define SPILL_BYTES (1024 * 1024)


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

struct stash_file {
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
	struct stash_caller creator;
	struct timespec changed;        /* last change through the handle (fresh stat) */
	struct set_meta set;    /* metadata set through the handle: applied by its commit */
	uint64_t expect;        /* opened as NAME@V: commit only while NAME is at V (0 = any) */
};

struct stash_dir {
	char **names;
	unsigned char *types;
	ino_t *inos;
	size_t count;
};

/* ---- small helpers ---------------------------------------------------- */

/* For futimens: a change that commits nothing still moves mtime (and ctime). */
static const struct timespec mtime_now[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_NOW } };

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Creation reservations.  A new stash has no name until its first commit,
 * yet O_EXCL must stay exclusive while it is being written, also between
 * daemons sharing the backing directory.  Each creating handle holds an OFD
 * lock on one byte of .stashfs/lock, far above the stripes, chosen by a
 * 64-bit hash of the path, through an open file description of its own (OFD
 * locks of one description never conflict with each other).  An exclusive
 * creation takes a write lock and fails with EEXIST on any holder; other
 * creations take a read lock, so that they exclude only exclusive ones.  A
 * crashed daemon's reservations vanish with its descriptors.
 */
/* Reserve @path for a creation; returns the fd holding it, -EEXIST or an errno. */
static int reserve_name(struct stash_store *st, const char *path, bool exclusive)
{
	struct flock fl = {
		.l_type = exclusive ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = backing_reserve_byte(path),
		.l_len = 1,
	};
	int fd = openat(st->root_fd, STASH_INTERNAL_DIR "/lock", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno == EAGAIN || errno == EACCES ? -EEXIST : -errno;

		close(fd);
		return e;
	}
	return fd;
}

static bool is_schema_path(const char *path)
{
	return strncmp(path, STASH_SCHEMAS_DIR "/", strlen(STASH_SCHEMAS_DIR) + 1) == 0;
}

/* Copy every user.* xattr but the version from @from to @to. */
static int copy_xattrs(int from, int to)
{
	char list[4096], value[4096];
	ssize_t n = flistxattr(from, list, sizeof(list));

	if (n < 0)
		return errno == ENOTSUP ? 0 : -errno;
	for (char *name = list; name < list + n; name += strlen(name) + 1) {
		ssize_t v;

		if (strncmp(name, "user.", 5) != 0 || strcmp(name, XATTR_VERSION) == 0)
			continue;
		v = fgetxattr(from, name, value, sizeof(value));
		if (v < 0)
			continue;
		if (fsetxattr(to, name, value, (size_t)v, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Does a commit of the object at @fd get fsynced?  Ephemeral ones never. */
static bool want_sync(struct stash_store *st, int fd)
{
	return st->opts.sync == STASH_SYNC_ALWAYS &&
	       backing_xattr_number(fd, XATTR_PERSISTENT, 1) != 0;
}

/*
 * Write all of @buf to @fd.  A short write without an error means the
 * disk filled up: ENOSPC, never a made-up EIO.
 */
static int write_all(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0)
			return -ENOSPC;
		if (n > 0)
			done += (size_t)n;
	}
	return 0;
}

/* Copy @len bytes of @from (at 0) to the end of @to. */
static int copy_content(int from, int to, off_t len)
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
			r = write_all(to, buf, (size_t)n);
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

static int pending_tmpfile(struct stash_store *st, struct pending *p)
{
	int fd = tmpfile_named(st, p->tmp_name, sizeof(p->tmp_name));

	if (fd < 0)
		return fd;
	p->fd = fd;
	return 0;
}

/* Give back the disk space held for the commit (it is about to be written). */
static void pending_unreserve(struct stash_store *st, struct pending *p)
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

static int pending_reserve(struct stash_store *st, struct pending *p, uint64_t total, bool hold)
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
static int pending_to_file(struct stash_store *st, struct pending *p)
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
	r = write_all(p->fd, p->mem, p->len);
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

static int pending_pwrite(struct stash_store *st, struct pending *p, const void *buf,
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

static int pending_truncate(struct stash_store *st, struct pending *p, size_t size)
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

static ssize_t pending_pread(struct pending *p, void *buf, size_t size, off_t off)
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
static void pending_reset(struct stash_store *st, struct pending *p)
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
static int pending_load(struct stash_store *st, struct pending *p, int fd, off_t len)
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

/* ---- names ------------------------------------------------------------ */

/* Resolve @path to the backing path it stands for (views -> their stash). */
static int backing_path(const char *path, char **out, int *kind)
{
	int k = stash_store_classify(path);

	if (k < 0)
		return k;
	if (k == STASH_KIND_META)
		return -EPERM;  /* the metadata view takes documents, nothing else */
	*kind = k;
	if (k == STASH_KIND_VERSION) {
		/* p@V is the file kept under .stashfs/versions/p/@V; p@next none yet. */
		char stash[PATH_MAX], vp[PATH_MAX];
		const char *at = strrchr(path, '@');
		uint64_t v = strcmp(at, "@next") == 0 ? 0 : strtoull(at + 1, NULL, 10);

		snprintf(stash, sizeof(stash), "%.*s", (int)(at - path), path);
		/* @next and out-of-range numbers name no kept file (@0 is never kept). */
		if (versions_path(stash, v == UINT64_MAX ? 0 : v, vp, sizeof(vp)) < 0)
			return -ENAMETOOLONG;
		*out = strdup(vp);
		return *out ? 0 : -ENOMEM;
	}
	*out = k == STASH_KIND_VIEW ? stash_view_target(path) : strdup(path);
	return *out ? 0 : -ENOMEM;
}

/*
 * Version V of a stash that is at V now is the stash itself (nothing is
 * kept for it yet): point *@bpath, the kept version's path, at the stash.
 * A commit in between keeps V, so a caller that finds the stash moved on
 * calls this again and finds the kept file.
 */
static int current_version(struct stash_store *st, const char *path, char **bpath)
{
	const char *at = strrchr(path, '@');
	uint64_t v;
	char *stash;
	int fd;

	if (stash_store_classify(path) != STASH_KIND_VERSION || strcmp(at, "@next") == 0 ||
	    faccessat(st->root_fd, *bpath, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	v = strtoull(at + 1, NULL, 10);
	stash = strndup(path, (size_t)(at - path));
	if (!stash)
		return -ENOMEM;
	fd = store_open_beneath(st, stash, O_RDONLY | O_NONBLOCK, 0);
	if (fd >= 0 && backing_read_version(fd) == v) {
		free(*bpath);
		*bpath = stash;
		stash = NULL;
	}
	if (fd >= 0)
		close(fd);
	free(stash);
	return 0;
}

/*
 * Past versions are read-only: every change by their name is refused with
 * EROFS (also creating a name that ends like one).
 */
static int refuse_version(const char *path, struct stash_error *err)
{
	int k = stash_store_classify(path);

	if (k == STASH_KIND_VIEW) {
		/* p@V.json: a merge on a version, never a stash named p@V. */
		char *target = stash_view_target(path);

		k = target ? stash_store_classify(target) : -ENOMEM;
		free(target);
	}
	if (k != STASH_KIND_VERSION)
		return 0;
	return stash_error_set(err, EROFS,
		"%s: NAME@V names a past version, which is read-only, and a name ending in "
		"@digits or @next is reserved for them", path);
}

/*
 * The parsed documents of the stashes merged last, so that a merge parses
 * only its patch.  An entry is valid only for the very file it was written
 * to (device, inode, size and mtime): any other commit, also another
 * daemon's, replaces the file and misses.  Direct-mapped by the path's
 * hash; the caller holds the path's name lock, the cache lock guards slots.
 */
static struct doc_cache_entry *doc_slot(struct stash_store *st, const char *path)
{
	return &st->docs[backing_stripe(path) % DOC_CACHE_SLOTS];
}

static void doc_entry_clear(struct doc_cache_entry *e)
{
	free(e->path);
	json_decref(e->doc);
	memset(e, 0, sizeof(*e));
}

static bool doc_entry_is(const struct doc_cache_entry *e, const char *path, const struct stat *sb)
{
	return e->path && strcmp(e->path, path) == 0 && e->dev == sb->st_dev &&
	       e->ino == sb->st_ino && e->size == sb->st_size &&
	       e->mtime.tv_sec == sb->st_mtim.tv_sec && e->mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

/*
 * A copy of the cached document of @path for the file @sb (new reference),
 * or NULL.  Only the top-level object is copied: merges replace top-level
 * members and never change a value in place, and jansson's reference
 * counts are atomic, so the values can be shared between threads.
 */
static json_t *doc_cache_copy(struct stash_store *st, const char *path, const struct stat *sb)
{
	struct doc_cache_entry *e = doc_slot(st, path);
	json_t *doc = NULL;

	pthread_mutex_lock(&st->docs_lock);
	if (doc_entry_is(e, path, sb))
		doc = json_copy(e->doc);
	pthread_mutex_unlock(&st->docs_lock);
	return doc;
}

/* Take the cached document of @path if it is that of the file @sb (new reference). */
static json_t *doc_cache_take(struct stash_store *st, const char *path, const struct stat *sb)
{
	struct doc_cache_entry *e = doc_slot(st, path);
	json_t *doc = NULL;

	pthread_mutex_lock(&st->docs_lock);
	if (e->path && strcmp(e->path, path) == 0) {
		if (doc_entry_is(e, path, sb)) {
			doc = e->doc;
			e->doc = NULL;
		}
		doc_entry_clear(e);
	}
	pthread_mutex_unlock(&st->docs_lock);
	return doc;
}

/* Keep @doc (reference stolen) as the document of the file @fd now at @path. */
static void doc_cache_put(struct stash_store *st, const char *path, int fd, json_t *doc)
{
	struct doc_cache_entry *e = doc_slot(st, path);
	struct stat sb;
	char *copy = strdup(path);

	if (!copy || fstat(fd, &sb) < 0 || sb.st_size > DOC_CACHE_MAX) {
		free(copy);
		json_decref(doc);
		return;
	}
	pthread_mutex_lock(&st->docs_lock);
	doc_entry_clear(e);
	e->path = copy;
	e->dev = sb.st_dev;
	e->ino = sb.st_ino;
	e->size = sb.st_size;
	e->mtime = sb.st_mtim;
	e->doc = doc;
	pthread_mutex_unlock(&st->docs_lock);
}

/* ---- store ------------------------------------------------------------ */

void stash_store_options_init(struct stash_store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->default_persistent = 1;
	o->sync = STASH_SYNC_ALWAYS;
	o->max_size = 64ull << 20;
	o->json_indent = 2;
	o->versions = STASH_VERSIONS_DEFAULT;
}

static int check_xattrs(int internal_fd, struct stash_error *err)
{
	int fd = openat(internal_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int r = 0;

	if (fd < 0)
		return stash_error_set(err, errno, "cannot create .stashfs/lock: %s", strerror(errno));
	if (fsetxattr(fd, XATTR_PROBE, "1", 1, 0) < 0) {
		r = stash_error_set(err, errno == ENOTSUP ? ENOTSUP : errno,
			"the backing filesystem does not take user xattrs (%s); stashfs keeps its metadata "
			"there: use ext4, xfs, btrfs, tmpfs >= 6.6 or another filesystem with user_xattr",
			strerror(errno));
	} else {
		fremovexattr(fd, XATTR_PROBE);
	}
	close(fd);
	return r;
}

/*
 * Commits rely on OFD locks (serializing daemons that share the directory)
 * and on rename replacing a file atomically.  A backing filesystem without
 * them would corrupt data later, so refuse it now, saying which is missing.
 */
static int check_locks_and_rename(int internal_fd, struct stash_error *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = BACKING_PROBE_BYTE,
			    .l_len = 1 };
	int fd = openat(internal_fd, "lock", O_RDWR | O_CLOEXEC);
	int a = -1, b = -1, r = 0;
	char buf[2] = "";

	if (fd < 0)
		return stash_error_set(err, errno, "cannot open .stashfs/lock: %s", strerror(errno));
	/* A byte no name uses; another daemon may hold it for its own check. */
	if (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
		r = stash_error_set(err, errno,
			"the backing filesystem does not support OFD locks (%s); stashfs needs "
			"them to serialize commits", strerror(errno));
		goto out;
	}
	fl.l_type = F_UNLCK;
	fcntl(fd, F_OFD_SETLK, &fl);
	a = openat(internal_fd, "probe.a", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	b = openat(internal_fd, "probe.b", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (a < 0 || b < 0 || write(a, "a", 1) != 1 || write(b, "b", 1) != 1) {
		r = stash_error_set(err, errno ? errno : EIO, "cannot write in .stashfs: %s",
				    strerror(errno));
		goto out;
	}
	close(a);
	a = -1;
	errno = 0;
	if (renameat(internal_fd, "probe.a", internal_fd, "probe.b") < 0 ||
	    faccessat(internal_fd, "probe.a", F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
	    (a = openat(internal_fd, "probe.b", O_RDONLY | O_CLOEXEC)) < 0 ||
	    read(a, buf, 1) != 1 || buf[0] != 'a') {
		r = stash_error_set(err, errno ? errno : EIO,
			"rename does not replace files atomically on the backing filesystem; "
			"stashfs commits by rename");
	}
out:
	unlinkat(internal_fd, "probe.a", 0);
	unlinkat(internal_fd, "probe.b", 0);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	close(fd);
	return r;
}

/* Remove temp dirs of instances that are gone (their lock is free). */
static void clean_stale_tmp(struct stash_store *st, int tmproot)
{
	DIR *d;
	struct dirent *e;
	int dfd = openat(tmproot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  /* its own offset */

	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		char name[NAME_MAX + 1];
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int lfd, sub;

		if (!backing_has_suffix(e->d_name, ".lock"))
			continue;
		lfd = openat(tmproot, e->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (lfd < 0)
			continue;
		if (fcntl(lfd, F_OFD_SETLK, &fl) < 0) {
			close(lfd);     /* a live instance holds it */
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(e->d_name) - 5), e->d_name);
		sub = openat(tmproot, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			DIR *sd = fdopendir(sub);
			struct dirent *se;

			while (sd && (se = readdir(sd))) {
				if (strcmp(se->d_name, ".") == 0 || strcmp(se->d_name, "..") == 0)
					continue;
				/* A journal: the dead instance's audit records to finish. */
				if (se->d_name[0] == 'j')
					stream_recover_journal(st, sub, se->d_name);
				unlinkat(sub, se->d_name, 0);
			}
			if (sd)
				closedir(sd);
			else
				close(sub);
			unlinkat(tmproot, name, AT_REMOVEDIR);
		}
		unlinkat(tmproot, e->d_name, 0);
		close(lfd);
	}
	closedir(d);
}

/*
 * A temp directory without its lock file belongs to no live instance (an
 * instance takes its lock before it makes its directory): give it a lock
 * file, so that clean_stale_tmp replays and removes it.
 */
static void adopt_lockless_tmp(int tmproot)
{
	int dfd = openat(tmproot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  /* its own offset */
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		char lock[NAME_MAX + 8];
		struct stat sb;
		int fd;

		if (e->d_name[0] == '.' || e->d_type != DT_DIR)
			continue;
		snprintf(lock, sizeof(lock), "%s.lock", e->d_name);
		if (fstatat(tmproot, lock, &sb, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		fd = openat(tmproot, lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
}

/*
 * Daemons on one backing directory announce themselves on one byte of
 * .stashfs/lock, beyond the stripes and the probe: a daemon with -o shared
 * holds a read lock, one without a write lock.  So a daemon alone by
 * choice meets any other, shared ones meet only one that is alone by
 * choice, and a dead daemon's lock went with it (OFD locks die with the
 * last descriptor, kill -9 included).
 */
static int announce_daemon(struct stash_store *st, int internal_fd, const char *backing,
			   struct stash_error *err)
{
	struct flock fl = { .l_type = st->opts.shared ? F_RDLCK : F_WRLCK,
			    .l_whence = SEEK_SET, .l_start = BACKING_PRESENCE_BYTE, .l_len = 1 };

	st->presence_fd = openat(internal_fd, "lock", O_RDWR | O_CLOEXEC);
	if (st->presence_fd < 0)
		return stash_error_set(err, errno, "cannot open .stashfs/lock: %s", strerror(errno));
	if (fcntl(st->presence_fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES)
		return stash_error_set(err, errno, "cannot lock .stashfs/lock: %s", strerror(errno));
	return stash_error_set(err, EBUSY,
		"another stashfs daemon serves %s%s; daemons may share a backing directory "
		"only when every one of them runs with -o shared", backing,
		st->opts.shared ? " without -o shared" : "");
}

static int make_instance(struct stash_store *st, int internal_fd, struct stash_error *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char lockname[80];
	struct timespec ts;
	int tmproot, r = 0;

	if (mkdirat(internal_fd, "tmp", 0700) < 0 && errno != EEXIST)
		return stash_error_set(err, errno, "cannot create .stashfs/tmp: %s", strerror(errno));
	tmproot = openat(internal_fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tmproot < 0)
		return stash_error_set(err, errno, "cannot open .stashfs/tmp: %s", strerror(errno));
	adopt_lockless_tmp(tmproot);
	clean_stale_tmp(st, tmproot);

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(st->instance, sizeof(st->instance), "%d-%lx%lx", (int)getpid(),
		 (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec);
	snprintf(lockname, sizeof(lockname), "%s.lock", st->instance);
	st->instance_lock_fd = openat(tmproot, lockname, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->instance_lock_fd < 0 || fcntl(st->instance_lock_fd, F_OFD_SETLK, &fl) < 0) {
		r = stash_error_set(err, errno, "cannot lock .stashfs/tmp/%s: %s", lockname,
				    strerror(errno));
		goto out;
	}
	if (mkdirat(tmproot, st->instance, 0700) < 0) {
		r = stash_error_set(err, errno, "cannot create .stashfs/tmp/%s: %s", st->instance,
				    strerror(errno));
		goto out;
	}
	st->tmp_fd = openat(tmproot, st->instance, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmp_fd < 0)
		r = stash_error_set(err, errno, "cannot open the temp directory: %s", strerror(errno));
out:
	close(tmproot);
	return r;
}

int stash_store_open(const char *backing, const struct stash_store_options *opts,
		     struct stash_store **out, struct stash_error *err)
{
	struct stash_store *st;
	int internal_fd = -1, r;

	stash_error_clear(err);
	st = calloc(1, sizeof(*st));
	if (!st)
		return stash_error_set(err, ENOMEM, "out of memory");
	st->root_fd = st->tmp_fd = st->lock_fd = st->instance_lock_fd = st->presence_fd = -1;
	if (opts)
		st->opts = *opts;
	else
		stash_store_options_init(&st->opts);
	locks_init(st);
	st->links_fd = -1;
	pthread_mutex_init(&st->docs_lock, NULL);
	pthread_mutex_init(&st->merge_lock, NULL);
	pthread_cond_init(&st->merge_done, NULL);
	if (binding_init(st) < 0 || life_init(st) < 0 || reap_init(st) < 0) {
		binding_destroy(st);
		life_destroy(st);
		free(st);
		return stash_error_set(err, ENOMEM, "out of memory");
	}

	if (mkdir(backing, 0755) < 0 && errno != EEXIST) {
		r = stash_error_set(err, errno, "cannot create backing directory %s: %s", backing,
				    strerror(errno));
		goto fail;
	}
	st->root_fd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->root_fd < 0) {
		r = stash_error_set(err, errno, "cannot open backing directory %s: %s", backing,
				    strerror(errno));
		goto fail;
	}
	if (mkdirat(st->root_fd, STASH_INTERNAL_DIR, 0700) < 0 && errno != EEXIST) {
		r = stash_error_set(err, errno, "cannot create %s/%s: %s", backing,
				    STASH_INTERNAL_DIR, strerror(errno));
		goto fail;
	}
	internal_fd = backing_openat2(st->root_fd, STASH_INTERNAL_DIR, O_RDONLY | O_DIRECTORY, 0);
	if (internal_fd < 0) {
		r = stash_error_set(err, -internal_fd, "cannot open %s/%s: %s", backing,
				    STASH_INTERNAL_DIR, strerror(-internal_fd));
		goto fail;
	}
	r = check_xattrs(internal_fd, err);
	if (r == 0)
		r = check_locks_and_rename(internal_fd, err);
	if (r < 0)
		goto fail;
	r = backing_check_format(internal_fd, err);
	if (r < 0)
		goto fail;
	st->lock_fd = openat(internal_fd, "lock", O_RDWR | O_CLOEXEC);
	if (st->lock_fd < 0) {
		r = stash_error_set(err, errno, "cannot open .stashfs/lock: %s", strerror(errno));
		goto fail;
	}
	if (mkdirat(internal_fd, "links", 0700) < 0 && errno != EEXIST) {
		r = stash_error_set(err, errno, "cannot create .stashfs/links: %s", strerror(errno));
		goto fail;
	}
	st->links_fd = openat(internal_fd, "links", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (st->links_fd < 0) {
		r = stash_error_set(err, errno, "cannot open .stashfs/links: %s", strerror(errno));
		goto fail;
	}
	/* Before make_instance: a refused daemon must not clean others' temp files. */
	r = announce_daemon(st, internal_fd, backing, err);
	if (r < 0)
		goto fail;
	r = make_instance(st, internal_fd, err);
	if (r < 0)
		goto fail;
	/* The two special directories always exist. */
	mkdirat(st->root_fd, STASH_STREAMS_DIR, 0755);
	mkdirat(st->root_fd, STASH_SCHEMAS_DIR, 0755);
	close(internal_fd);
	*out = st;
	return 0;
fail:
	if (internal_fd >= 0)
		close(internal_fd);
	stash_store_close(st);
	return r;
}

void stash_store_close(struct stash_store *st)
{
	if (!st)
		return;
	if (st->tmp_fd >= 0) {
		/* Our temp dir is empty when every handle was closed. */
		int internal = backing_openat2(st->root_fd, STASH_INTERNAL_DIR "/tmp", O_PATH | O_DIRECTORY, 0);
		char lockname[80];

		if (internal >= 0) {
			snprintf(lockname, sizeof(lockname), "%s.lock", st->instance);
			unlinkat(internal, st->instance, AT_REMOVEDIR);
			unlinkat(internal, lockname, 0);
			close(internal);
		}
	}
	reap_destroy(st);
	close_fd(&st->tmp_fd);
	close_fd(&st->lock_fd);
	close_fd(&st->instance_lock_fd);
	close_fd(&st->presence_fd);
	close_fd(&st->root_fd);
	binding_destroy(st);
	life_destroy(st);
	close_fd(&st->links_fd);
	for (int i = 0; i < DOC_CACHE_SLOTS; i++)
		doc_entry_clear(&st->docs[i]);
	pthread_mutex_destroy(&st->docs_lock);
	pthread_mutex_destroy(&st->merge_lock);
	pthread_cond_destroy(&st->merge_done);
	locks_destroy(st);
	free(st);
}

/* ---- commit ----------------------------------------------------------- */

#define PUBLISH_VALIDATED 2  /* the document was validated against this very file */
#define PUBLISH_CHANGES(n) ((unsigned)(n) << 8)     /* one file for n merges */


/*
 * The content about to be published as @path must be acceptable: a schema
 * under schemas/ must compile, a bound stash must validate.  @doc is the
 * parsed content when the caller has it.
 */
static int check_content(struct stash_store *st, const char *path, int fd, const json_t *doc,
			 struct stash_error *err)
{
	char schema[STASH_XATTR_MAX];
	bool is_schema = is_schema_path(path);
	ssize_t n = fgetxattr(fd, XATTR_SCHEMA, schema, sizeof(schema) - 1);
	char *text = NULL;
	size_t len = 0;
	struct stat sb;
	int r = 0;

	/* A binding that cannot be read refuses: never publish as if unbound. */
	if (n < 0 && errno != ENODATA)
		return stash_error_set(err, errno, "%s: cannot read its user.stash.schema: %s",
				       path, strerror(errno));
	if (n <= 0 && !is_schema)
		return 0;
	if (!doc || is_schema) {
		if (fstat(fd, &sb) < 0)
			return -errno;
		r = backing_slurp(fd, sb.st_size, &text, &len);
		if (r < 0)
			return r;
	}
	if (is_schema)
		r = binding_compile(st, path + strlen(STASH_SCHEMAS_DIR) + 1, text, len, err);
	if (r == 0 && n > 0) {
		schema[n] = '\0';
		r = binding_validate(st, schema, path, doc, text, len, err);
	}
	free(text);
	return r;
}

/* Validate the content of @fd against schema @schema, for stash @path. */
static int check_content_as(struct stash_store *st, const char *path, int fd, const char *schema,
			    struct stash_error *err)
{
	char *text = NULL;
	size_t len = 0;
	struct stat sb;
	int r;

	if (fstat(fd, &sb) < 0)
		return -errno;
	r = backing_slurp(fd, sb.st_size, &text, &len);
	if (r == 0)
		r = binding_validate(st, schema, path, NULL, text, len, err);
	free(text);
	return r;
}

/* Apply what was set through an open file (NULL: nothing) to the file it commits. */
static int apply_set(int fd, const struct set_meta *set)
{
	if (!set)
		return 0;
	if (set->mode && fchmod(fd, set->mode_bits & 07777) < 0)
		return -errno;
	if (set->owner && fchown(fd, set->uid, set->gid) < 0 && errno != EPERM)
		return -errno;
	/* Last: the content is all written, so nothing moves the mtime after. */
	if (set->times && futimens(fd, set->ts) < 0)
		return -errno;
	return 0;
}

/*
 * Publish the temp file @tmpfd/@tmpname as @path: metadata from the current
 * file (or ownership from @who and the directory defaults for a new one),
 * then what @set (optional) changed through an open file, the checks of
 * check_content, version + 1 (+ n for PUBLISH_CHANGES(n)),
 * fsync, rename, fsync the directory.  The caller holds the name lock.  On
 * success the temp file has become the stash and *@version holds its
 * version; a refusal fills @err.
 */
static int publish(struct stash_store *st, const char *path, int curfd, int tmpfd,
		   const char *tmpname, mode_t create_mode, const struct stash_caller *who,
		   const struct set_meta *set, const json_t *doc, json_t *patch, unsigned flags,
		   uint64_t *version, struct stash_error *err)
{
	struct stream_audit *audit = NULL;
	unsigned changes = (flags >> 8) ? (flags >> 8) : 1;
	bool durable;
	const char *leaf;
	int dirfd = backing_open_parent(st->root_fd, path, &leaf);
	int oldfd = -1, r = 0;
	uint64_t v = 0;
	struct stat old;

	if (dirfd < 0)
		return dirfd;
	/* The caller may already hold the current file open (under the lock). */
	oldfd = curfd >= 0 ? curfd : openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
					    O_CLOEXEC);
	if (oldfd >= 0 && fstat(oldfd, &old) < 0) {
		r = -errno;
		goto out;
	}
	if (oldfd >= 0 && S_ISREG(old.st_mode) && life_check(st, oldfd, &old, NULL) < 0) {
		/* Expired or orphaned: the name starts afresh. */
		if (oldfd != curfd)
			close(oldfd);
		oldfd = -1;
		errno = ENOENT;
	}
	if (oldfd >= 0) {
		if (!S_ISREG(old.st_mode)) {
			r = S_ISDIR(old.st_mode) ? -EISDIR : -EPERM;
			goto out;
		}
		v = backing_read_version(oldfd);
		r = copy_xattrs(oldfd, tmpfd);
		if (r < 0)
			goto out;
		/* New content drops setuid/setgid, as a write does on a local filesystem. */
		if (fchmod(tmpfd, old.st_mode & 01777) < 0 ||
		    (fchown(tmpfd, old.st_uid, old.st_gid) < 0 && errno != EPERM)) {
			r = -errno;
			goto out;
		}
	} else if (errno == ENOENT) {
		if (fchmod(tmpfd, create_mode & 07777) < 0) {
			r = -errno;
			goto out;
		}
		/* Only root can give files away; an unprivileged daemon keeps them. */
		if (who && fchown(tmpfd, who->uid, who->gid) < 0 && errno != EPERM) {
			r = -errno;
			goto out;
		}
	} else {
		r = errno == ELOOP ? -EPERM : -errno;
		goto out;
	}
	if (oldfd < 0) {
		r = defaults_apply(st, path, tmpfd, err);
		if (r < 0)
			goto out;
		/* A stash made again at a name with history counts on from it. */
		v = versions_last(st, path);
	}
	r = apply_set(tmpfd, set);
	if (r < 0)
		goto out;
	r = (flags & PUBLISH_VALIDATED) ? 0 :
		check_content(st, path, tmpfd, doc, err);
	if (r < 0)
		goto out;
	r = backing_write_version(tmpfd, v + changes);
	if (r < 0)
		goto out;
	durable = want_sync(st, tmpfd);
	if (durable && fdatasync(tmpfd) < 0) {
		r = -errno;
		goto out;
	}
	r = stream_audit_begin(st, path, patch ? "merge" : "put", v + changes, patch, tmpfd, who,
			       &audit);
	if (r < 0)
		goto out;
	if (oldfd >= 0)
		versions_keep(st, path, dirfd, leaf, oldfd, v);
	if (renameat(st->tmp_fd, tmpname, dirfd, leaf) < 0) {
		r = -errno;
		stream_audit_abort(st, audit);
		goto out;
	}
	if (durable) {
		/* The rename is durable only once the directory is. */
		int d = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (d >= 0) {
			fsync(d);
			close(d);
		}
	}
	stream_audit_commit(st, audit);
	life_note(st, path, tmpfd);
	if (is_schema_path(path))
		binding_changed(st);
	*version = v + changes;
out:
	if (oldfd >= 0 && oldfd != curfd)
		store_close_later(st, oldfd);
	close(dirfd);
	return r;
}

/* Open the committed content of stash @path read-only (snapshot). */
static int open_content(struct stash_store *st, const char *path, struct stat *stbuf)
{
	int fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);

	if (fd < 0)
		return fd == -ELOOP ? -ENOENT : fd;
	if (fstat(fd, stbuf) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	if (S_ISDIR(stbuf->st_mode)) {
		close(fd);
		return -EISDIR;
	}
	if (!S_ISREG(stbuf->st_mode) || life_check(st, fd, stbuf, NULL) < 0) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

/* ---- path operations -------------------------------------------------- */

int stash_store_stat(struct stash_store *st, const char *path, struct stat *out,
		     time_t *expires)
{
	char *bpath;
	int kind, fd, r;

	if (expires)
		*expires = 0;
	if (backing_meta_path(path))
		return meta_stat(st, path, out);
	r = backing_path(path, &bpath, &kind);
	if (r == 0)
		r = current_version(st, path, &bpath);
	if (r < 0)
		return r;
	fd = store_open_beneath(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	free(bpath);
	if (fd < 0)
		return fd == -ELOOP || fd == -ENXIO ? -ENOENT : fd;
	r = fstat(fd, out) < 0 ? -errno : 0;
	if (r == 0 && !S_ISREG(out->st_mode) && !S_ISDIR(out->st_mode))
		r = -ENOENT;            /* not something the store offers */
	if (r == 0 && kind == STASH_KIND_VIEW && !S_ISREG(out->st_mode))
		r = -ENOENT;
	if (r == 0)
		r = life_check(st, fd, out, expires);
	close(fd);
	return r;
}

/*
 * Ephemeral means the whole subtree: a directory made where new objects
 * are ephemeral is itself marked with its owner, and goes with it (once
 * the ephemeral objects inside have gone; persistent ones keep it).
 */
static void mark_ephemeral_dir(struct stash_store *st, const char *path, int parent,
			       const char *leaf)
{
	int sub;

	if (store_default_persistent(st, path))
		return;
	sub = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return;
	if (fsetxattr(sub, XATTR_PERSISTENT, "0", 1, 0) == 0 &&
	    fsetxattr(sub, XATTR_SESSION, st->instance, strlen(st->instance), 0) == 0)
		life_note(st, path, sub);
	close(sub);
}

int stash_store_mkdir(struct stash_store *st, const char *path, mode_t mode,
		      const struct stash_caller *who)
{
	const char *leaf;
	int k = stash_store_classify(path);
	int dirfd, r = 0, fd;

	if (k < 0)
		return k;
	if (k == STASH_KIND_VIEW)
		return -EINVAL;     /* NAME.json is always a view */
	if (k == STASH_KIND_VERSION)
		return -EROFS;
	if (k == STASH_KIND_META)
		return -EPERM;
	dirfd = backing_open_parent(st->root_fd, path, &leaf);
	if (dirfd < 0)
		return dirfd;
	/* O_PATH fds can't be used with mkdirat, so reopen the directory. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dirfd);
	if (fd < 0)
		return -errno;
	if (mkdirat(fd, leaf, mode & 07777) < 0) {
		r = -errno;
	} else {
		int sub = openat(fd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (sub >= 0) {
			struct stat sb;

			/*
			 * The kernel already applied the caller's umask to @mode;
			 * mkdirat applied the daemon's too, so set the mode asked
			 * for (keeping a setgid bit inherited from the parent).
			 */
			if (fstat(sub, &sb) < 0 ||
			    fchmod(sub, (mode & 07777) | (sb.st_mode & S_ISGID)) < 0)
				r = -errno;
			if (!r && who && fchown(sub, who->uid, who->gid) < 0 && errno != EPERM)
				r = -errno;
			close(sub);
		}
	}
	if (r == 0)
		mark_ephemeral_dir(st, path, fd, leaf);
	close(fd);
	return r;
}

int stash_store_rmdir(struct stash_store *st, const char *path)
{
	const char *leaf;
	int k = stash_store_classify(path);
	int dirfd, r;

	if (k < 0)
		return k;
	if (k == STASH_KIND_META)
		return -EPERM;
	if (!*path || strcmp(path, STASH_STREAMS_DIR) == 0 || strcmp(path, STASH_SCHEMAS_DIR) == 0)
		return -EBUSY;
	dirfd = backing_open_parent(st->root_fd, path, &leaf);
	if (dirfd < 0)
		return dirfd;
	r = unlinkat(dirfd, leaf, AT_REMOVEDIR) < 0 ? -errno : 0;
	close(dirfd);
	return r;
}

int stash_store_unlink(struct stash_store *st, const char *path,
		       const struct stash_caller *who, struct stash_error *err)
{
	const char *leaf;
	char *bpath;
	int kind, dirfd, r;
	unsigned s;
	struct stat sb;

	r = refuse_version(path, err);
	if (r < 0)
		return r;
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	if (kind == STASH_KIND_VIEW) {
		free(bpath);
		return stash_error_set(err, EPERM, "%s is the JSON view of a stash: rm the stash itself",
				       path);
	}
	dirfd = backing_open_parent(st->root_fd, bpath, &leaf);
	if (dirfd < 0) {
		free(bpath);
		return dirfd;
	}
	s = store_lock_name(st, bpath);
	if (fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
	} else if (S_ISDIR(sb.st_mode)) {
		r = -EISDIR;
	} else {
		struct stream_audit *audit = NULL;
		int fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		uint64_t v = fd >= 0 ? backing_read_version(fd) : 0;

		r = kind == STASH_KIND_STREAM ? 0 :
			stream_audit_begin(st, bpath, "delete", v + 1, json_null(), -1, who, &audit);
		/* The removed content stays readable as p@V: an rm can be undone by cp. */
		if (r == 0 && fd >= 0 && kind != STASH_KIND_STREAM && S_ISREG(sb.st_mode))
			versions_keep(st, bpath, dirfd, leaf, fd, v);
		if (r == 0)
			r = unlinkat(dirfd, leaf, 0) < 0 ? -errno : 0;
		if (r == 0 && is_schema_path(bpath))
			binding_changed(st);
		if (r == 0)
			stream_audit_commit(st, audit);
		else
			stream_audit_abort(st, audit);
		/* Held across the unlink: the blocks are freed off this path. */
		store_close_later(st, fd);
	}
	store_unlock_name(st, s);
	close(dirfd);
	free(bpath);
	return r;
}

/*
 * A rename over a stash replaces its content like a write does: the source
 * must validate against the target's schema (and a file moved into schemas/
 * must compile).  The target's binding and version carry over to the
 * source, so an editor's or sed's save keeps the stash bound and its
 * version counting up.
 */
static int check_rename(struct stash_store *st, int dfrom, const char *lfrom, int dto,
			const char *lto, const char *to, unsigned flags, struct stash_error *err)
{
	char schema[256];
	bool into_schemas = is_schema_path(to);
	int src = openat(dfrom, lfrom, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int dst = openat(dto, lto, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t n = dst >= 0 ? fgetxattr(dst, XATTR_SCHEMA, schema, sizeof(schema) - 1) : -1;
	struct stat sb;
	int r = 0;

	if (src < 0) {
		r = errno == ELOOP ? -ENOENT : (errno == EISDIR ? 0 : -errno);
		goto out;
	}
	if (fstat(src, &sb) < 0 || !S_ISREG(sb.st_mode))
		goto out;       /* directories move as they are */
	if (stash_store_classify(to) == STASH_KIND_STASH) {
		r = backing_check_new_name(to, err);
		if (r < 0)
			goto out;
	}
	if ((flags & RENAME_EXCHANGE) && (n > 0 || into_schemas ||
	    fgetxattr(src, XATTR_SCHEMA, schema, sizeof(schema) - 1) > 0)) {
		r = stash_error_set(err, EPERM, "%s: exchanging bound stashes or schemas is not supported", to);
		goto out;
	}
	if (into_schemas) {
		char *text = NULL;
		size_t len = 0;

		r = backing_slurp(src, sb.st_size, &text, &len);
		if (r == 0)
			r = binding_compile(st, to + strlen(STASH_SCHEMAS_DIR) + 1, text, len, err);
		free(text);
		if (r < 0)
			goto out;
	}
	if (n > 0) {
		schema[n] = '\0';
		r = check_content_as(st, to, src, schema, err);
		if (r == 0 && fsetxattr(src, XATTR_SCHEMA, schema, (size_t)n, 0) < 0)
			r = -errno;
	}
	if (r == 0 && dst >= 0) {
		uint64_t v = backing_read_version(dst), sv = backing_read_version(src);

		if (v >= sv)
			r = backing_write_version(src, v + 1);
	}
out:
	if (r < 0 && dst >= 0 && err && err->code)
		fsetxattr(dst, XATTR_ERROR, err->text, strlen(err->text), 0);
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	return r;
}

/* The stash a stream links to, into @buf (size PATH_MAX); 0 or -errno. */
static int read_link(struct stash_store *st, const char *stream, char *buf)
{
	int fd = store_open_beneath(st, stream, O_RDONLY | O_NONBLOCK, 0);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = fgetxattr(fd, XATTR_LINKED, buf, PATH_MAX - 1);
	close(fd);
	if (n <= 0)
		return -ENODATA;
	buf[n] = '\0';
	return 0;
}

/* Journal the audit records of a rename: one for each name it changes. */
static int audit_rename(struct stash_store *st, int dfrom, const char *lfrom, const char *from,
			const char *to, const struct stash_caller *who, struct stream_audit *a[2])
{
	int fd = openat(dfrom, lfrom, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat sb;
	uint64_t v;
	json_t *d;
	int r;

	if (fd < 0)
		return 0;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return 0;
	}
	v = backing_read_version(fd);
	close(fd);
	d = json_pack("{s:s}", "from", from);
	r = stream_audit_begin(st, to, "rename", v, d, -1, who, &a[0]);
	json_decref(d);
	if (r < 0)
		return r;
	d = json_pack("{s:s}", "to", to);
	r = stream_audit_begin(st, from, "rename", v, d, -1, who, &a[1]);
	json_decref(d);
	return r;
}

/*
 * A rename over stash @to replaces its content as a commit does: the
 * replaced file becomes a past version of @to (the caller holds the lock).
 */
static void keep_renamed_over(struct stash_store *st, int dto, const char *lto, const char *to)
{
	int fd = openat(dto, lto, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat sb;

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
		versions_keep(st, to, dto, lto, fd, backing_read_version(fd));
	close(fd);
}

int stash_store_rename(struct stash_store *st, const char *from, const char *to,
		       unsigned flags, const struct stash_caller *who,
		       struct stash_error *err)
{
	const char *lfrom, *lto;
	int kf = stash_store_classify(from), kt = stash_store_classify(to);
	struct stream_audit *audits[2] = { NULL, NULL };
	int dfrom = -1, dto = -1, r;
	unsigned s1, s2;

	if (kf < 0)
		return kf;
	if (kt < 0)
		return kt;
	if (kf == STASH_KIND_META || kt == STASH_KIND_META)
		return -EPERM;
	if (kf == STASH_KIND_VERSION)
		return refuse_version(from, err);
	if (kt == STASH_KIND_VERSION)
		return refuse_version(to, err);
	if (kf == STASH_KIND_VIEW || kt == STASH_KIND_VIEW)
		return stash_error_set(err, EPERM,
			"a NAME.json view cannot be renamed or renamed over: rename the stash NAME");
	if ((kf == STASH_KIND_STREAM) != (kt == STASH_KIND_STREAM))
		return stash_error_set(err, EPERM, "streams stay under streams/");
	dfrom = backing_open_parent(st->root_fd, from, &lfrom);
	if (dfrom < 0)
		return dfrom;
	dto = backing_open_parent(st->root_fd, to, &lto);
	if (dto < 0) {
		close(dfrom);
		return dto;
	}
	/* Lock both names in stripe order so two renames never deadlock. */
	s1 = backing_stripe(from);
	s2 = backing_stripe(to);
	if (s1 > s2) {
		unsigned t = s1;

		s1 = s2;
		s2 = t;
	}
	store_lock_stripe(st, s1);
	if (s2 != s1)
		store_lock_stripe(st, s2);
	r = check_rename(st, dfrom, lfrom, dto, lto, to, flags, err);
	if (r == 0 && kf == STASH_KIND_STASH)
		r = audit_rename(st, dfrom, lfrom, from, to, who, audits);
	if (r == 0 && kf == STASH_KIND_STASH && !(flags & RENAME_EXCHANGE))
		keep_renamed_over(st, dto, lto, to);
	if (r == 0)
		r = syscall(SYS_renameat2, dfrom, lfrom, dto, lto, flags) < 0 ? -errno : 0;
	if (r == 0 && kf == STASH_KIND_STASH && !(flags & RENAME_EXCHANGE))
		versions_move(st, from, to);
	if (r == 0 && (is_schema_path(from) || is_schema_path(to) ||
		       strcmp(from, STASH_SCHEMAS_DIR) == 0 || strcmp(to, STASH_SCHEMAS_DIR) == 0))
		binding_changed(st);
	for (int i = 0; i < 2; i++) {
		if (r == 0)
			stream_audit_commit(st, audits[i]);
		else
			stream_audit_abort(st, audits[i]);
	}
	if (s2 != s1)
		store_unlock_name(st, s2);
	store_unlock_name(st, s1);
	close(dfrom);
	close(dto);
	if (r == 0 && kf == STASH_KIND_STREAM) {
		char target[PATH_MAX];

		/* The link moves with the stream: index it under its new name. */
		if (read_link(st, to, target) == 0)
			stream_index_update(st, target, to, true);
	}
	return r;
}

/* Commit the first @size bytes of @fd's content (zero-extended) as @path. */
static int commit_truncated(struct stash_store *st, const char *path, int fd, off_t cur,
			    off_t size, const struct stash_caller *who, uint64_t *version,
			    struct stash_error *err)
{
	struct pending p = { .fd = -1 };
	int r = pending_tmpfile(st, &p);

	if (r < 0)
		return r;
	r = copy_content(fd, p.fd, cur < size ? cur : size);
	if (!r && ftruncate(p.fd, size) < 0)
		r = -errno;
	if (!r)
		r = publish(st, path, fd, p.fd, p.tmp_name, 0644, who, NULL, NULL, NULL, 0, version, err);
	if (r < 0)
		unlinkat(st->tmp_fd, p.tmp_name, 0);
	close(p.fd);
	return r;
}

int stash_store_truncate(struct stash_store *st, const char *path, off_t size,
			 const struct stash_caller *who, struct stash_error *err)
{
	struct stat sb;
	char *bpath;
	int kind, fd, r;
	unsigned s;
	uint64_t v;

	r = refuse_version(path, err);
	if (r < 0)
		return r;
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	if (kind == STASH_KIND_VIEW) {
		/* `>` on a view sends a patch; its truncation never touches the stash. */
		r = stash_store_stat(st, path, &sb, NULL);
		free(bpath);
		return r;
	}
	if (st->opts.max_size && (uint64_t)size > st->opts.max_size) {
		free(bpath);
		return stash_error_set(err, EFBIG, "%s: %lld bytes is over the size limit of %" PRIu64,
				       path, (long long)size, st->opts.max_size);
	}
	s = store_lock_name(st, bpath);
	fd = open_content(st, bpath, &sb);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	if (kind == STASH_KIND_STREAM) {
		r = size == sb.st_size ? 0 :
			stash_error_set(err, EPERM, "%s is an append-only stream", path);
	} else if (size != sb.st_size) {
		r = commit_truncated(st, bpath, fd, sb.st_size, size, who, &v, err);
	} else {
		/* Nothing to commit, but truncate(2) still marks the file changed. */
		r = futimens(fd, mtime_now) < 0 ? -errno : 0;
	}
	close(fd);
out:
	store_unlock_name(st, s);
	free(bpath);
	return r;
}

/* Open the object behind @path for metadata changes (never a symlink). */
static int open_meta(struct stash_store *st, const char *path)
{
	char *bpath;
	int kind, r = backing_path(path, &bpath, &kind);

	if (r == 0)
		r = current_version(st, path, &bpath);
	if (r < 0)
		return r;
	r = store_open_beneath(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	free(bpath);
	return r == -ELOOP ? -ENOENT : r;
}

int stash_store_chmod(struct stash_store *st, const char *path, mode_t mode)
{
	int fd = refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = fchmod(fd, mode & 07777) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int stash_store_chown(struct stash_store *st, const char *path, uid_t uid, gid_t gid)
{
	int fd = refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = fchown(fd, uid, gid) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int stash_store_utimens(struct stash_store *st, const char *path, const struct timespec ts[2])
{
	int fd = refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = futimens(fd, ts) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int stash_store_statfs(struct stash_store *st, struct statvfs *out)
{
	return fstatvfs(st->root_fd, out) < 0 ? -errno : 0;
}

/* ---- xattrs ----------------------------------------------------------- */

static bool xattr_readonly(const char *name)
{
	return strcmp(name, XATTR_VERSION) == 0 || strcmp(name, XATTR_ERROR) == 0 ||
	       strcmp(name, XATTR_SEQ) == 0;
}

/* Keep the reason of a refused metadata change where the user looks for it. */
static void note_refusal(struct stash_store *st, const char *bpath, const struct stash_error *err)
{
	int fd;

	if (!err || !err->code)
		return;
	fd = store_open_beneath(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	if (fd >= 0) {
		fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		close(fd);
	}
}

/*
 * Link stream @path to stash @value (or unlink, @value NULL).  The index
 * is updated before the xattr and the stale entry after, so a commit never
 * misses a link; stale entries are harmless (checked at append).
 */
static int set_link(struct stash_store *st, const char *path, const char *value, size_t size,
		    int flags, const struct stash_caller *who, struct stash_error *err)
{
	char target[PATH_MAX], old[PATH_MAX];
	bool had = read_link(st, path, old) == 0;
	unsigned s;
	int fd, r;

	if (stash_store_classify(path) != STASH_KIND_STREAM)
		return stash_error_set(err, EINVAL, "only streams (under streams/) link to a stash");
	if (value) {
		if (size == 0 || size >= sizeof(target) || memchr(value, '\0', size))
			return stash_error_set(err, EINVAL, "bad stash path for a link");
		memcpy(target, value, size);
		target[size] = '\0';
		if (!stream_path_ok(target))
			return stash_error_set(err, EINVAL,
				"cannot link to \"%s\": give a stash path relative to the mount root, "
				"without \"..\"", target);
		/* A stream must never be a window onto what its linker cannot read. */
		r = access_may_read(st, target, who, err);
		if (r < 0) {
			note_refusal(st, path, err);
			return r;
		}
		r = stream_index_update(st, target, path, true);
		if (r < 0)
			return r;
	}
	s = store_lock_name(st, path);
	fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		r = fd == -ELOOP ? -ENOENT : fd;
	else if (value)
		r = fsetxattr(fd, XATTR_LINKED, target, strlen(target), flags) < 0 ? -errno : 0;
	else
		r = fremovexattr(fd, XATTR_LINKED) < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	store_unlock_name(st, s);
	if (r == 0 && had && (!value || strcmp(old, target) != 0))
		stream_index_update(st, old, path, false);
	return r;
}

/*
 * Only user.* attributes are kept (commits copy them); other namespaces
 * are refused.  The kernel asks for security.capability before every
 * truncating open: that answer needs no disk access.
 */
static bool user_xattr(const char *name)
{
	return strncmp(name, "user.", 5) == 0;
}

/*
 * persistent and ttl always have a value, set or not (getfattr -n answers
 * it); listxattr names only what was set, so getfattr -d shows just that.
 */
static ssize_t effective_xattr(struct stash_store *st, const char *path, const struct stat *sb,
			       const char *name, void *value, size_t size)
{
	char text[32], *bpath;
	int kind, len;

	if (backing_path(path, &bpath, &kind) < 0)
		return -ENODATA;
	len = store_effective_xattr(st, bpath, sb, name, text, sizeof(text));
	free(bpath);
	if (len < 0 || size == 0)
		return len;
	if (size < (size_t)len)
		return -ERANGE;
	memcpy(value, text, (size_t)len);
	return len;
}

int stash_store_getxattr(struct stash_store *st, const char *path, const char *name,
			 void *value, size_t size)
{
	int fd;
	struct stat sb;
	ssize_t n;

	if (!user_xattr(name))
		return -ENODATA;
	fd = open_meta(st, path);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) < 0)
		n = -errno;
	else if (life_hidden_xattr(name))
		n = -ENODATA;
	else if ((n = life_virtual_xattr(fd, &sb, name, value, size)) == 1 &&
		 (n = fgetxattr(fd, name, value, size)) < 0)
		n = -errno;
	close(fd);
	if (n == -ENODATA)
		n = effective_xattr(st, path, &sb, name, value, size);
	return (int)n;
}

/*
 * Switching persistence takes effect at once and keeps the content: an
 * ephemeral object is marked with its owner; a persistent one loses the
 * mark and is made durable now.
 */
static int set_persistence(struct stash_store *st, int fd, bool persistent)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if (S_ISDIR(sb.st_mode)) {
		/* On a directory it is a default; made persistent, one made ephemeral stays. */
		if (persistent)
			fremovexattr(fd, XATTR_SESSION);
		return 0;
	}
	if (!persistent)
		return fsetxattr(fd, XATTR_SESSION, st->instance, strlen(st->instance), 0) < 0 ?
			-errno : 0;
	fremovexattr(fd, XATTR_SESSION);
	if (st->opts.sync == STASH_SYNC_ALWAYS)
		fsync(fd);
	return 0;
}

struct binder {
	struct stash_store *st;
	const struct stash_caller *who;
	struct stash_error *err;
};

/* May the binder read schema @name (NULL: schemas too many to list)? */
static int schema_readable(const char *name, void *ctx)
{
	struct binder *b = ctx;
	char path[sizeof(STASH_SCHEMAS_DIR) + 256];

	if (!name)
		return !b->who || b->who->uid == 0 ? 0 : stash_error_set(b->err, EACCES,
			"the schema refers to more schemas than can be checked for uid %u",
			(unsigned)b->who->uid);
	if ((size_t)snprintf(path, sizeof(path), STASH_SCHEMAS_DIR "/%s", name) >= sizeof(path))
		return stash_error_set(b->err, EINVAL, "bad schema name");
	return access_may_read(b->st, path, b->who, b->err);
}

/*
 * Binding @fd (stash @path or a directory) to schema @value: @who must be
 * able to read the schema, which must exist and compile, and a stash's
 * current document must validate (a new, empty stash has none yet).
 */
static int check_binding(struct stash_store *st, const char *path, int fd, const void *value,
			 size_t size, const struct stash_caller *who, struct stash_error *err)
{
	struct binder cx = { st, who, err };
	char name[256];
	struct stat sb;
	int r;

	if (size == 0 || size >= sizeof(name) || memchr(value, '\0', size))
		return stash_error_set(err, EINVAL, "bad schema name");
	memcpy(name, value, size);
	name[size] = '\0';
	/*
	 * Judged first: the refusals a binding causes (and binding_check's
	 * own) would show what the schema says.
	 */
	r = schema_readable(name, &cx);
	/* A schema it refers to would speak through the refusals as well. */
	if (r == 0)
		r = binding_each_dep(st, name, schema_readable, &cx, err);
	if (r == -EACCES) {
		if (err)
			fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		return r;
	}
	if (r < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0)
		return r;
	r = check_content_as(st, path, fd, name, err);
	return r;
}

/* Leave the reason of a refusal in @path's user.stash.error, for getfattr and stashctl. */
static void note_error(struct stash_store *st, const char *path, const struct stash_error *err)
{
	int fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);

	if (fd >= 0) {
		fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		close(fd);
	}
}

int stash_store_check_xattr(const char *name, const void *value, size_t size,
			    struct stash_error *err)
{
	if (!user_xattr(name))
		return -EOPNOTSUPP;
	return life_check_xattr(name, value, size, err);
}

int stash_store_setxattr(struct stash_store *st, const char *path, const char *name,
			 const void *value, size_t size, int flags,
			 const struct stash_caller *who, struct stash_error *err)
{
	char *bpath;
	int kind, fd, r;
	unsigned s;

	if (!user_xattr(name))
		return -EOPNOTSUPP;     /* not logged: cp -a and rsync -X try these */
	r = refuse_version(path, err);
	if (r < 0)
		return r;
	r = life_check_xattr(name, value, size, err);
	if (r < 0) {
		if (err && err->code && backing_path(path, &bpath, &kind) == 0) {
			note_error(st, bpath, err);
			free(bpath);
		}
		return r;
	}
	if (strcmp(name, XATTR_LINKED) == 0)
		return set_link(st, path, value, size, flags, who, err);
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	/* Under the name lock: a commit copies xattrs and must not miss this one. */
	s = store_lock_name(st, bpath);
	fd = store_open_beneath(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0) {
		r = fd == -ELOOP ? -ENOENT : fd;
	} else {
		r = strcmp(name, XATTR_SCHEMA) == 0 ?
			check_binding(st, bpath, fd, value, size, who, err) : 0;
		if (r == 0)
			r = fsetxattr(fd, name, value, size, flags) < 0 ? -errno : 0;
		if (r == 0 && strcmp(name, XATTR_PERSISTENT) == 0)
			r = set_persistence(st, fd, ((const char *)value)[0] == '1');
		if (r == 0)
			life_note(st, bpath, fd);
		if (r < 0 && err && err->code)
			fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		close(fd);
	}
	store_unlock_name(st, s);
	free(bpath);
	return r;
}

int stash_store_listxattr(struct stash_store *st, const char *path, char *list, size_t size)
{
	static const char *const virt[] = { XATTR_SHA256, XATTR_EXPIRES };
	char raw[8192], out[8192 + 64];
	int fd = open_meta(st, path);
	size_t len = 0;
	struct stat sb;
	ssize_t n;

	if (fd < 0)
		return fd;
	n = flistxattr(fd, raw, sizeof(raw));
	if (n < 0 || fstat(fd, &sb) < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	for (char *name = raw; name < raw + n; name += strlen(name) + 1) {
		if (!user_xattr(name) || life_hidden_xattr(name))
			continue;
		memcpy(out + len, name, strlen(name) + 1);
		len += strlen(name) + 1;
	}
	/* The computed ones, where they have a value. */
	for (size_t i = 0; i < sizeof(virt) / sizeof(virt[0]); i++) {
		if (strcmp(virt[i], XATTR_SHA256) == 0 ? !S_ISREG(sb.st_mode) :
		    !S_ISREG(sb.st_mode) || !life_deadline(fd, &sb))
			continue;
		memcpy(out + len, virt[i], strlen(virt[i]) + 1);
		len += strlen(virt[i]) + 1;
	}
	close(fd);
	if (size == 0)
		return (int)len;
	if (size < len)
		return -ERANGE;
	memcpy(list, out, len);
	return (int)len;
}

int stash_store_removexattr(struct stash_store *st, const char *path, const char *name)
{
	char *bpath;
	int kind, fd, r;
	unsigned s;

	if (!user_xattr(name))
		return -ENODATA;
	if (xattr_readonly(name) || strcmp(name, XATTR_SHA256) == 0 ||
	    strcmp(name, XATTR_EXPIRES) == 0 || life_hidden_xattr(name))
		return -EPERM;
	if (strcmp(name, XATTR_LINKED) == 0)
		return set_link(st, path, NULL, 0, 0, NULL, NULL);
	if (refuse_version(path, NULL) < 0)
		return -EROFS;
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	s = store_lock_name(st, bpath);
	fd = store_open_beneath(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0) {
		r = fd == -ELOOP ? -ENOENT : fd;
	} else {
		r = fremovexattr(fd, name) < 0 ? -errno : 0;
		/* Without the attribute, an object is persistent (the default mark goes). */
		if (r == 0 && strcmp(name, XATTR_PERSISTENT) == 0)
			set_persistence(st, fd, true);
		close(fd);
	}
	store_unlock_name(st, s);
	free(bpath);
	return r;
}

/* ---- directories ------------------------------------------------------ */

static bool listed(const char *dirpath, const char *name, unsigned char type)
{
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	if (strncmp(name, STASH_INTERNAL_DIR, strlen(STASH_INTERNAL_DIR)) == 0)
		return false;
	/* Only what the store offers: no symlinks, fifos or sockets planted behind it. */
	if (type != DT_REG && type != DT_DIR && type != DT_UNKNOWN)
		return false;
	(void)dirpath;
	return true;
}

/* Expired and orphaned objects are not listed (no ghost entries). */
static bool live_entry(struct stash_store *st, int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	bool live;

	if (fd < 0)
		return false;
	live = fstat(fd, &sb) == 0 && life_check(st, fd, &sb, NULL) == 0;
	close(fd);
	return live;
}

static int dir_add(struct stash_dir *d, size_t *cap, const char *name, unsigned char type,
		   ino_t ino)
{
	if (d->count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		char **n = realloc(d->names, ncap * sizeof(*n));
		unsigned char *t;
		ino_t *i;

		if (n)
			d->names = n;
		t = n ? realloc(d->types, ncap) : NULL;
		if (t)
			d->types = t;
		i = t ? realloc(d->inos, ncap * sizeof(*i)) : NULL;
		if (!i)
			return -ENOMEM;
		d->inos = i;
		*cap = ncap;
	}
	d->names[d->count] = strdup(name);
	if (!d->names[d->count])
		return -ENOMEM;
	d->types[d->count] = type;
	d->inos[d->count] = ino;
	d->count++;
	return 0;
}

int stash_dir_open(struct stash_store *st, const char *path, struct stash_dir **out)
{
	struct stash_dir *d;
	struct dirent *e;
	size_t cap = 0;
	DIR *dir;
	int fd;

	char target[PATH_MAX];
	bool meta = backing_meta_path(path), dir_file;

	if (stash_store_classify(path) < 0)
		return -ENOENT;
	if (meta) {
		if (meta_target(path, target, sizeof(target), &dir_file) < 0 || dir_file)
			return -ENOTDIR;
		path = target;
	}
	fd = store_open_beneath(st, path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd == -ELOOP ? -ENOENT : fd;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		closedir(dir);
		return -ENOMEM;
	}
	while ((e = readdir(dir))) {
		if (!listed(path, e->d_name, e->d_type))
			continue;
		if (e->d_type == DT_REG && life_any(st) && !live_entry(st, dirfd(dir), e->d_name))
			continue;
		if (dir_add(d, &cap, e->d_name, e->d_type, e->d_ino) < 0)
			goto nomem;
	}
	closedir(dir);
	if (meta && dir_add(d, &cap, ".stashfs-dir", DT_REG, 1) < 0) {
		stash_dir_close(d);
		return -ENOMEM;
	}
	*out = d;
	return 0;
nomem:
	closedir(dir);
	stash_dir_close(d);
	return -ENOMEM;
}

int stash_dir_next(struct stash_dir *d, off_t off, const char **name, unsigned char *type,
		   ino_t *ino, off_t *next)
{
	if (off < 0 || (size_t)off >= d->count)
		return 1;
	*name = d->names[off];
	*type = d->types[off];
	*ino = d->inos[off];
	*next = off + 1;
	return 0;
}

void stash_dir_close(struct stash_dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->count; i++)
		free(d->names[i]);
	free(d->names);
	free(d->types);
	free(d->inos);
	free(d);
}

/* ---- open files ------------------------------------------------------- */

/* A document of the metadata view: rendered at open, patched by writes. */
static int meta_open(struct stash_store *st, const char *path, int flags,
		     const struct stash_caller *who, struct stash_file **out)
{
	char target[PATH_MAX];
	struct stat sb;
	bool dir_file;
	struct stash_file *f;
	int r = meta_target(path, target, sizeof(target), &dir_file);

	if (r == 0)
		r = meta_stat(st, path, &sb);
	if (r == 0 && S_ISDIR(sb.st_mode))
		r = -EISDIR;
	if (r < 0)
		return r == -ENOENT && (flags & O_CREAT) ? -EPERM : r;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	f->st = st;
	f->kind = STASH_KIND_META;
	f->flags = flags;
	if (who)
		f->meta_who = *who;
	else
		f->meta_who.uid = 0;    /* the daemon's own: no check */
	f->base_fd = -1;
	f->reserve_fd = -1;
	f->p.fd = -1;
	f->path = strdup(target);
	f->meta = meta_render(st, target, &f->meta_len, &r);
	if (!f->path || !f->meta) {
		stash_file_close(f);
		return r < 0 ? r : -ENOMEM;
	}
	*out = f;
	return 0;
}

/* Apply a complete metadata patch at once, so errors reach write(). */
static int meta_write(struct stash_file *f, const void *buf, size_t size,
		      struct stash_error *err)
{
	int r = pending_pwrite(f->st, &f->p, buf, size, (off_t)f->p.len);

	if (r == 0 && f->p.fd < 0) {
		r = stash_json_progress(f->p.mem, f->p.len, err);
		if (r > 0)
			r = meta_apply(f->st, f->path, f->p.mem, f->p.len, &f->meta_who, err);
		if (r == 0 && stash_json_progress(f->p.mem, f->p.len, NULL) > 0)
			pending_reset(f->st, &f->p);    /* applied */
	} else if (r == 0) {
		r = stash_error_set(err, EFBIG, "metadata patch too large");
	}
	return r;
}

/*
 * Open a stash that has no committed version: check that it could be
 * created, reserve its name (see reserve_name) and start an empty pending
 * buffer that the first commit publishes as version 1.  Called with
 * f->path, f->create_mode set.
 */
static int open_new(struct stash_file *f, int flags, const struct stash_caller *who,
		    struct stash_error *err)
{
	struct stash_store *st = f->st;
	char (*value)[STASH_XATTR_MAX];
	ssize_t len[DEFAULTS_COUNT];
	const char *leaf;
	struct stat sb;
	unsigned s;
	int dirfd, r;

	r = backing_check_new_name(f->path, err);
	if (r < 0)
		return r;
	dirfd = backing_open_parent(st->root_fd, f->path, &leaf);
	if (dirfd < 0)
		return dirfd == -ELOOP ? -ENOENT : dirfd;
	/* Something the store doesn't offer (planted in the backing tree) keeps its name. */
	r = fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0 ? 0 :
		S_ISDIR(sb.st_mode) ? -EISDIR : S_ISREG(sb.st_mode) ? 0 : -EPERM;
	close(dirfd);
	if (r < 0)
		return r;
	s = store_lock_name(st, f->path);
	/* Someone may have committed it since the first look. */
	r = open_content(st, f->path, &sb);
	if (r >= 0) {
		if (flags & O_EXCL) {
			close(r);
			r = -EEXIST;
		} else {
			f->base_fd = r;
			f->base_size = sb.st_size;
			f->base_version = backing_read_version(r);
			r = 1;
		}
	} else if (r == -ENOENT) {
		r = reserve_name(st, f->path, (flags & O_EXCL) != 0);
		/* Only an exclusive creation is refused by another's reservation. */
		if (r == -EEXIST && !(flags & O_EXCL))
			r = -1;
		if (r >= 0 || r == -1) {
			f->reserve_fd = r;
			r = 0;
		}
	}
	store_unlock_name(st, s);
	if (r < 0)
		return r;
	if (r == 1) {
		/* An existing stash after all: an ordinary writer of it. */
		char name[256];
		ssize_t n = fgetxattr(f->base_fd, XATTR_SCHEMA, name, sizeof(name) - 1);

		if (n > 0 && !(f->schema = strndup(name, (size_t)n)))
			return -ENOMEM;
		if (flags & O_TRUNC) {
			f->mode = PENDING_FULL;
			f->dirty = f->base_size != 0;
		}
		return 0;
	}
	/* The schema it will inherit: its first write is validated already. */
	value = malloc(DEFAULTS_COUNT * sizeof(*value));
	if (!value)
		return -ENOMEM;
	r = defaults_ancestors(st, f->path, value, len);
	if (r == 0 && len[0] > 0 && !(f->schema = strndup(value[0], (size_t)len[0])))
		r = -ENOMEM;
	free(value);
	if (r < 0)
		return stash_error_set(err, -r, "%s: cannot read its directory's defaults: %s",
				       f->path, strerror(-r));
	f->fresh = true;
	f->mode = PENDING_FULL;
	f->dirty = true;
	if (who)
		f->creator = *who;
	else
		f->creator.uid = geteuid(), f->creator.gid = getegid();
	clock_gettime(CLOCK_REALTIME, &f->changed);
	return 0;
}

/*
 * Compare-and-swap: is the stash of @f still at the version it was opened
 * as (NAME@V)?  Under the name lock this is the commit's condition.  A
 * refusal names the current version, on the handle and on the stash.
 */
static int check_expected(struct stash_file *f, struct stash_error *err)
{
	struct stat sb;
	uint64_t cur = 0;
	int fd;

	if (!f->expect)
		return 0;
	fd = open_content(f->st, f->path, &sb);
	if (fd >= 0)
		cur = backing_read_version(fd);
	if (fd >= 0 && cur == f->expect) {
		close(fd);
		return 0;
	}
	if (fd >= 0)
		stash_error_set(err, STASH_CAS_ERRNO,
			"%s@%" PRIu64 ": not written: %s is at version %" PRIu64
			" now; read %s@%" PRIu64 " and try again", f->path, f->expect, f->path,
			cur, f->path, cur);
	else
		stash_error_set(err, STASH_CAS_ERRNO, "%s@%" PRIu64 ": not written: %s is gone",
				f->path, f->expect, f->path);
	if (fd >= 0) {
		fsetxattr(fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		close(fd);
	}
	return -STASH_CAS_ERRNO;
}

/* Open NAME@V for writing: NAME, on the condition that it is at V until the commit. */
static int open_cas(struct stash_store *st, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_file **out,
		    struct stash_error *err)
{
	const char *at = strrchr(path, '@');
	char stash[PATH_MAX];
	uint64_t v;
	int r;

	if (strcmp(at, "@next") == 0 || !(flags & O_TRUNC) || (flags & O_APPEND))
		return refuse_version(path, err);
	v = strtoull(at + 1, NULL, 10);
	if (!v || v == UINT64_MAX)
		return refuse_version(path, err);
	snprintf(stash, sizeof(stash), "%.*s", (int)(at - path), path);
	r = stash_file_open(st, stash, flags & ~(O_CREAT | O_EXCL), mode, who, out, err);
	if (r == -ENOENT)
		return stash_error_set(err, STASH_CAS_ERRNO, "%s: not written: %s does not exist",
				       path, stash);
	if (r < 0)
		return r;
	(*out)->expect = v;
	/* Already moved on: refused at open, before anything is written. */
	if ((*out)->base_version != v) {
		stash_error_clear(err);
		r = check_expected(*out, err);
		if (r < 0) {
			stash_file_close(*out);
			*out = NULL;
			return r;
		}
	}
	return 0;
}

int stash_file_open(struct stash_store *st, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_file **out,
		    struct stash_error *err)
{
	struct stash_file *f;
	struct stat sb;
	char *bpath;
	int kind, r, acc = flags & O_ACCMODE;
	bool writable = acc != O_RDONLY;

	if (backing_meta_path(path))
		return meta_open(st, path, flags, who, out);
	if (writable && stash_store_classify(path) == STASH_KIND_VERSION)
		return open_cas(st, path, flags, mode, who, out, err);
	if (writable || (flags & (O_CREAT | O_TRUNC))) {
		r = refuse_version(path, err);
		if (r < 0)
			return r;
	}
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f) {
		free(bpath);
		return -ENOMEM;
	}
	pthread_mutex_init(&f->lock, NULL);
	f->st = st;
	f->path = bpath;
	f->kind = (enum stash_kind)kind;
	f->flags = flags;
	f->create_mode = mode;
	f->base_fd = -1;
	f->reserve_fd = -1;
	f->p.fd = -1;

	if (kind == STASH_KIND_STREAM) {
		/* Streams are appended in place: O_APPEND on the backing file. */
		int oflags = (writable ? O_RDWR | O_APPEND : O_RDONLY) | O_NONBLOCK;

		if (flags & O_CREAT)
			oflags |= O_CREAT | (flags & O_EXCL);
		f->base_fd = store_open_beneath(st, bpath, oflags, mode & 07777);
		if (f->base_fd < 0) {
			r = f->base_fd == -ELOOP ? -ENOENT : f->base_fd;
			goto fail;
		}
		if (fstat(f->base_fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			r = S_ISDIR(sb.st_mode) ? -EISDIR : -ENOENT;
			goto fail;
		}
		if ((flags & O_TRUNC) && sb.st_size > 0) {
			r = stash_error_set(err, EPERM,
				"%s is an append-only stream: use >> to add to it", path);
			goto fail;
		}
		if ((flags & O_CREAT) && who && sb.st_size == 0 && sb.st_uid != who->uid)
			(void)!fchown(f->base_fd, who->uid, who->gid);
		f->base_size = sb.st_size;
		*out = f;
		return 0;
	}

	if (kind == STASH_KIND_VERSION) {
		/* The stash itself while at V; if it moved on meanwhile, V is kept now. */
		char *kept = strdup(bpath);

		r = kept ? current_version(st, path, &bpath) : -ENOMEM;
		if (r == 0) {
			r = open_content(st, bpath, &sb);
			if (r >= 0 && strcmp(kept, bpath) != 0 &&
			    backing_read_version(r) != strtoull(strrchr(path, '@') + 1, NULL, 10)) {
				close(r);
				r = open_content(st, kept, &sb);
			}
		}
		free(kept);
		f->path = bpath;        /* current_version may have replaced it */
	} else {
		r = open_content(st, bpath, &sb);
	}
	/*
	 * A view can be written whether or not its stash exists yet: the merge
	 * creates it.  (The kernel drops O_CREAT when it already knows the name.)
	 */
	if (r == -ENOENT && kind == STASH_KIND_VIEW && writable && !(flags & O_CREAT)) {
		flags |= O_CREAT;
		f->create_mode = 0666 & ~(who ? who->umask : 022);
	}
	if (r == -ENOENT && (flags & O_CREAT)) {
		/*
		 * A new stash has no name until its first commit (at close): others
		 * get ENOENT meanwhile, and a refused first write leaves nothing.  A
		 * view creates its stash only when its merge commits.
		 */
		if (kind == STASH_KIND_STASH) {
			r = open_new(f, flags, who, err);
			if (r < 0)
				goto fail;
			*out = f;
			return 0;
		}
		r = -ENOENT;
		f->base_size = 0;
		f->dirty = false;
		goto opened;
	} else if (r >= 0 && (flags & O_CREAT) && (flags & O_EXCL) && kind == STASH_KIND_STASH) {
		close(r);
		r = -EEXIST;
	}
	if (r < 0)
		goto fail;
	f->base_fd = r;
	f->base_size = sb.st_size;
	if (writable) {
		/* What the commits of a writer compare against and check. */
		char name[256];
		ssize_t n = fgetxattr(f->base_fd, XATTR_SCHEMA, name, sizeof(name) - 1);

		f->base_version = backing_read_version(f->base_fd);
		if (n > 0)
			f->schema = strndup(name, (size_t)n);
	}
opened:
	if (writable && (flags & O_TRUNC) && kind == STASH_KIND_STASH) {
		f->mode = PENDING_FULL;
		f->dirty = f->base_size != 0;
		/* Emptying an empty stash commits nothing, but O_TRUNC still marks it changed. */
		if (!f->dirty && f->base_fd >= 0)
			(void)futimens(f->base_fd, mtime_now);
	}
	*out = f;
	return 0;
fail:
	stash_file_close(f);
	return r;
}

uint64_t stash_file_version(const struct stash_file *f)
{
	return f->base_version;
}

ssize_t stash_file_read(struct stash_file *f, void *buf, size_t size, off_t off)
{
	ssize_t n;

	pthread_mutex_lock(&f->lock);
	if (f->kind == STASH_KIND_META) {
		n = (size_t)off >= f->meta_len ? 0 :
			(ssize_t)(size < f->meta_len - (size_t)off ? size : f->meta_len - (size_t)off);
		if (n > 0)
			memcpy(buf, f->meta + off, (size_t)n);
	} else if (f->kind != STASH_KIND_VIEW && f->mode == PENDING_FULL) {
		n = pending_pread(&f->p, buf, size, off);
	} else if (f->kind != STASH_KIND_VIEW && f->mode == PENDING_APPEND &&
		   off + (off_t)size > f->base_size) {
		ssize_t a = 0;

		if (off < f->base_size) {
			a = pread(f->base_fd, buf, (size_t)(f->base_size - off), off);
			if (a < 0) {
				n = -errno;
				goto out;
			}
		}
		n = pending_pread(&f->p, (char *)buf + a, size - (size_t)a,
				  off + a - f->base_size);
		if (n >= 0)
			n += a;
	} else if (f->base_fd < 0) {
		n = 0;
	} else {
		n = pread(f->base_fd, buf, size, off);
		if (n < 0)
			n = -errno;
	}
out:
	pthread_mutex_unlock(&f->lock);
	return n;
}

int stash_file_read_fd(struct stash_file *f, int *fd)
{
	int r = -EAGAIN;

	pthread_mutex_lock(&f->lock);
	/* A copy: a commit through this handle may replace base_fd meanwhile. */
	if ((f->kind == STASH_KIND_VIEW || f->mode == PENDING_NONE) && f->base_fd >= 0) {
		*fd = fcntl(f->base_fd, F_DUPFD_CLOEXEC, 0);
		r = *fd >= 0 ? 0 : -EAGAIN;
	}
	pthread_mutex_unlock(&f->lock);
	return r;
}

/*
 * A refused write: remember why, so that nothing this handle wrote is ever
 * committed, and leave the reason in user.stash.error for `getfattr`.
 */
static int poison(struct stash_file *f, int r, struct stash_error *err)
{
	f->poison = -r;
	if (err && err->code)
		f->poison_err = *err;
	else
		stash_error_set(&f->poison_err, -r, "%s: write refused: %s", f->path, strerror(-r));
	if (err && !err->code)
		*err = f->poison_err;
	/* A refused first write leaves no name, so nothing to note it on. */
	if (!f->fresh && !f->removed)
		note_error(f->st, f->path, &f->poison_err);
	return r;
}

/* Turn an append-only or clean handle into one holding the full content. */
static int materialize(struct stash_file *f)
{
	struct pending appended = f->p;
	int r;

	if (f->mode == PENDING_FULL)
		return 0;
	memset(&f->p, 0, sizeof(f->p));
	f->p.fd = -1;
	r = pending_load(f->st, &f->p, f->base_fd, f->base_size);
	if (r == 0 && f->mode == PENDING_APPEND) {
		char buf[65536];

		for (off_t o = 0; r == 0 && o < (off_t)appended.len; o += (off_t)sizeof(buf)) {
			ssize_t n = pending_pread(&appended, buf, sizeof(buf), o);

			r = n < 0 ? (int)n : pending_pwrite(f->st, &f->p, buf, (size_t)n,
							   (off_t)f->p.len);
		}
	}
	pending_reset(f->st, &appended);
	f->mode = PENDING_FULL;
	return r;
}

static int check_size(struct stash_file *f, uint64_t size, struct stash_error *err)
{
	uint64_t max = f->st->opts.max_size;

	if (max && size > max)
		return stash_error_set(err, EFBIG,
			"%s: %" PRIu64 " bytes would be over the size limit of %" PRIu64 " bytes",
			f->path, size, max);
	return 0;
}

/*
 * A bound stash: once the buffer holds a complete JSON document, validate
 * it now, so that `echo ... > p` fails at write() where every shell sees it.
 * An incomplete document waits for more data; the commit checks it anyway.
 */

static int precheck_document(struct stash_file *f, struct stash_error *err)
{
	int r = stash_json_progress(f->p.mem, f->p.len, err);

	if (r == 0)
		return 0;
	stash_error_clear(err);
	if (is_schema_path(f->path))
		return binding_compile(f->st, f->path + strlen(STASH_SCHEMAS_DIR) + 1, f->p.mem,
				       f->p.len, err);
	return binding_validate(f->st, f->schema, f->path, NULL, f->p.mem, f->p.len, err);
}

/*
 * A complete patch for a bound stash: merge it into the current document
 * and validate now, for the same reason.  The commit merges again under
 * the lock, on whatever is current then.  @patch is borrowed.
 */
static int precheck_merge(struct stash_file *f, json_t *patch, struct stash_error *err)
{
	json_t *doc = NULL;
	char *text = NULL;
	size_t len = 0;
	struct stat sb;
	int fd, r;

	fd = open_content(f->st, f->path, &sb);
	if (fd >= 0 && sb.st_size > 0 && (doc = doc_cache_copy(f->st, f->path, &sb)))
		;       /* parsed by the last merge */
	else if (fd >= 0 && sb.st_size > 0 && backing_slurp(fd, sb.st_size, &text, &len) == 0)
		doc = stash_json_parse(text, len, NULL);
	else if (fd >= 0 || fd == -ENOENT)
		doc = json_object();
	if (fd >= 0)
		close(fd);
	/* A document that can't be merged into is the commit's to report. */
	r = doc && json_is_object(doc) && stash_merge_apply(doc, patch, NULL) == 0 ? 0 : 1;
	if (r == 0 && f->schema)
		r = binding_validate(f->st, f->schema, f->path, doc, NULL, 0, err);
	if (r == 0) {
		size_t mlen;
		char *merged = stash_json_dump(doc, f->st->opts.json_indent, &mlen);

		r = merged ? check_size(f, mlen, err) : 1;
		free(merged);
	}
	/* Remember what was validated: a commit on the same file need not redo it. */
	f->checked.valid = r == 0 && fd >= 0 && f->schema;
	if (f->checked.valid) {
		f->checked.dev = sb.st_dev;
		f->checked.ino = sb.st_ino;
		f->checked.size = sb.st_size;
		f->checked.mtime = sb.st_mtim;
		f->checked.gen = binding_generation(f->st);
		f->checked.patch_len = f->p.len;
	}
	if (r > 0)
		r = 0;
	free(text);
	json_decref(doc);
	return r;
}

/*
 * Does the stash the view was opened on start like a JSON object (or hold
 * nothing)?  A cheap look, so that a merge into plain text is refused at
 * write() where the shell sees it; the commit parses the document for real.
 */
static bool looks_like_object(int fd)
{
	char buf[64];
	ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf), 0) : 0;

	for (ssize_t i = 0; i < n; i++) {
		if (!strchr(" \t\r\n", buf[i]))
			return buf[i] == '{';
	}
	return true;
}

/*
 * Could merging @patch take the stash over the size limit?  The merged
 * document is at most the current one plus the patch rendered one level
 * deeper: only near the limit is the merge done for real at write().
 */
static bool merge_may_exceed(struct stash_file *f, const json_t *patch)
{
	uint64_t max = f->st->opts.max_size;
	size_t len, lines = 0;
	char *text;

	if (!max)
		return false;
	text = stash_json_dump(patch, f->st->opts.json_indent, &len);
	if (!text)
		return true;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	free(text);
	return (uint64_t)f->base_size + len + lines * (size_t)f->st->opts.json_indent + 2 > max;
}

/*
 * The patch collected by a view so far.  Refuse at write() what no further
 * data can mend, so that `echo` reports it even in shells that ignore
 * close(): a text that can't become JSON, a patch that is not an object, a
 * stash that is not one, a merged document its schema refuses.
 */
static int check_view_patch(struct stash_file *f, struct stash_error *err)
{
	json_t *patch;
	int r = stash_json_progress(f->p.mem, f->p.len, err);

	if (r <= 0)
		return r;       /* incomplete, or refused */
	patch = stash_json_parse(f->p.mem, f->p.len, err);
	if (!patch)
		return -EINVAL;
	if (!json_is_object(patch))
		r = stash_error_set(err, EINVAL, "%s.json: the patch must be one JSON object, not %s",
				    f->path, json_is_array(patch) ? "an array" :
				    json_is_string(patch) ? "a string" :
				    json_is_number(patch) ? "a number" : "a literal");
	else if (!looks_like_object(f->base_fd))
		r = stash_error_set(err, EINVAL,
			"%s: cannot merge: the stash does not hold a JSON object", f->path);
	else if (f->schema || merge_may_exceed(f, patch))
		r = precheck_merge(f, patch, err);
	else
		r = 0;
	json_decref(patch);
	return r;
}

static ssize_t stream_write(struct stash_file *f, const void *buf, size_t size,
			    struct stash_error *err)
{
	unsigned s = store_lock_stream(f->st, f->path);
	struct stat sb;
	ssize_t n = 0;

	/*
	 * The size limit holds for what writers append, refused whole; audit
	 * records are appended whatever the size (a committed change is always
	 * recorded), so they may take a stream past it.
	 */
	if (fstat(f->base_fd, &sb) < 0) {
		n = -errno;
		goto out;
	}
	n = check_size(f, (uint64_t)sb.st_size + size, err);
	if (n < 0) {
		if (err)
			fsetxattr(f->base_fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		goto out;
	}
	/* One write() is one record: under the lock it lands whole, in order. */
	while ((size_t)n < size) {
		ssize_t w = write(f->base_fd, (const char *)buf + n, size - (size_t)n);

		if (w < 0) {
			n = stash_error_set(err, errno, "%s: append failed: %s", f->path,
					    strerror(errno));
			break;
		}
		n += w;
	}
	if (n > 0 && want_sync(f->st, f->base_fd))
		fdatasync(f->base_fd);
out:
	store_unlock_stream(f->st, s);
	return n;
}

/* The content changed through the handle: a later mtime than any set before. */
static void touched(struct stash_file *f)
{
	clock_gettime(CLOCK_REALTIME, &f->changed);
	f->set.times = false;
}

ssize_t stash_file_write(struct stash_file *f, const void *buf, size_t size, off_t off,
			 struct stash_error *err)
{
	int r = 0;
	bool append = (f->flags & O_APPEND) != 0;

	if (f->kind == STASH_KIND_STREAM)
		return stream_write(f, buf, size, err);
	pthread_mutex_lock(&f->lock);
	if (f->poison) {
		if (err)
			*err = f->poison_err;
		r = -f->poison;
		goto out;
	}
	if (f->kind == STASH_KIND_META) {
		r = meta_write(f, buf, size, err);
		if (r < 0)
			r = poison(f, r, err);
		goto out;
	}
	if (f->expect && check_expected(f, err) < 0) {
		/* The version moved on: refuse now rather than at close. */
		r = poison(f, -STASH_CAS_ERRNO, err);
		goto out;
	}
	if (f->kind == STASH_KIND_VIEW) {
		/* A view collects a patch; offsets are the patch's own. */
		off_t at = append ? (off_t)f->p.len : off;

		r = check_size(f, (uint64_t)at + size, err);
		/* Room for the merged document: about the current one and the patch. */
		if (r == 0)
			r = pending_reserve(f->st, &f->p, (uint64_t)f->base_size + (uint64_t)at + size,
					    false);
		if (r == 0)
			r = pending_pwrite(f->st, &f->p, buf, size, at);
		if (r == 0 && f->p.fd < 0)
			r = check_view_patch(f, err);
		if (r < 0) {
			r = poison(f, r, err);
			goto out;
		}
		f->mode = PENDING_APPEND;
		f->dirty = f->wrote = true;
		goto out;
	}
	/* A bound stash is validated whole, so its appends build the whole document. */
	if (append && f->mode != PENDING_FULL && !f->schema) {
		r = check_size(f, (uint64_t)f->base_size + f->p.len + size, err);
		if (r == 0)
			r = pending_reserve(f->st, &f->p, (uint64_t)f->base_size + f->p.len + size,
					    true);
		if (r == 0)
			r = pending_pwrite(f->st, &f->p, buf, size, (off_t)f->p.len);
		if (r == 0)
			f->mode = PENDING_APPEND;
	} else {
		r = materialize(f);
		if (append)
			off = (off_t)f->p.len;
		if (r == 0)
			r = check_size(f, (uint64_t)off + size > f->p.len ?
				       (uint64_t)off + size : f->p.len, err);
		if (r == 0)
			r = pending_reserve(f->st, &f->p, (uint64_t)off + size, true);
		if (r == 0)
			r = pending_pwrite(f->st, &f->p, buf, size, off);
	}
	if (r == 0 && (f->schema || is_schema_path(f->path)) && f->mode == PENDING_FULL &&
	    f->p.fd < 0)
		r = precheck_document(f, err);
	if (r < 0) {
		r = poison(f, r, err);
		goto out;
	}
	f->dirty = f->wrote = true;
	touched(f);
out:
	pthread_mutex_unlock(&f->lock);
	return r < 0 ? r : (ssize_t)size;
}

int stash_file_truncate(struct stash_file *f, off_t size, struct stash_error *err)
{
	int r = 0;

	if (f->kind == STASH_KIND_STREAM)
		return size == f->base_size ? 0 :
			stash_error_set(err, EPERM, "%s is an append-only stream", f->path);
	if (f->kind == STASH_KIND_VIEW || f->kind == STASH_KIND_META)
		return 0;       /* truncating a view never truncates the stash */
	pthread_mutex_lock(&f->lock);
	if (f->poison) {
		r = -f->poison;
		goto out;
	}
	r = check_size(f, (uint64_t)size, err);
	if (r == 0)
		r = materialize(f);
	if (r == 0)
		r = pending_reserve(f->st, &f->p, (uint64_t)size, true);
	if (r == 0)
		r = pending_truncate(f->st, &f->p, (size_t)size);
	if (r < 0) {
		r = poison(f, r, err);
	} else {
		f->dirty = f->wrote = true;
		touched(f);
	}
out:
	pthread_mutex_unlock(&f->lock);
	return r;
}

/* Make the temp file holding @content the handle's new base. */
static void rebase(struct stash_file *f, int fd, off_t size, uint64_t version)
{
	store_close_later(f->st, f->base_fd);   /* often the replaced file's last reference */
	f->base_fd = fd;
	f->base_size = size;
	f->base_version = version;
	f->mode = PENDING_NONE;
	f->dirty = f->wrote = false;
}

/*
 * Was the stash this handle writes removed since it was opened (by name,
 * here or by another daemon)?  Then it stays removed: the commit publishes
 * nothing, as the writes to an unlinked file on a local filesystem land
 * nowhere.  The caller holds the name lock.
 */
static bool removed_meanwhile(struct stash_file *f)
{
	struct stat sb;

	if (f->removed)
		return true;
	if (f->fresh || f->base_fd < 0)
		return false;
	if (fstatat(f->st->root_fd, f->path, &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
		return false;
	f->removed = true;
	return true;
}

/* The name's first version is out: others see it, O_EXCL may look at it. */
static void created(struct stash_file *f)
{
	f->fresh = false;
	close_fd(&f->reserve_fd);
}

/* Commit a handle holding the full new content. */
static int commit_full(struct stash_file *f, const struct stash_caller *who,
		       struct stash_error *err)
{
	unsigned s;
	uint64_t v;
	int r = pending_to_file(f->st, &f->p);

	if (r < 0)
		return stash_error_set(err, -r, "%s: cannot write temp file: %s", f->path,
				       strerror(-r));
	s = store_lock_name(f->st, f->path);
	if (removed_meanwhile(f)) {
		store_unlock_name(f->st, s);
		f->dirty = f->wrote = false;
		return 0;
	}
	r = check_expected(f, err);
	if (r == 0)
		r = publish(f->st, f->path, -1, f->p.fd, f->p.tmp_name, f->create_mode,
			    f->fresh ? &f->creator : who, &f->set, NULL, NULL, 0, &v, err);
	if (r == 0)
		created(f);
	if (r == 0 && f->expect)
		f->expect = v;  /* a later commit through the handle builds on this one */
	store_unlock_name(f->st, s);
	if (r < 0)
		return err && err->code ? r :
			stash_error_set(err, -r, "%s: commit failed: %s", f->path, strerror(-r));
	memset(&f->set, 0, sizeof(f->set));
	rebase(f, f->p.fd, (off_t)f->p.len, v);
	free(f->p.mem);
	memset(&f->p, 0, sizeof(f->p));
	f->p.fd = -1;
	return 0;
}

/* Commit appended bytes on top of whatever is committed now. */
static int commit_append(struct stash_file *f, const struct stash_caller *who,
			 struct stash_error *err)
{
	struct pending out = { .fd = -1 };
	struct stat sb;
	unsigned s;
	uint64_t v;
	int cur, r;
	char buf[65536];

	/* The copy below needs the space the reservation holds. */
	pending_unreserve(f->st, &f->p);
	s = store_lock_name(f->st, f->path);
	if (removed_meanwhile(f)) {
		store_unlock_name(f->st, s);
		f->dirty = f->wrote = false;
		return 0;
	}
	cur = open_content(f->st, f->path, &sb);
	if (cur < 0 && cur != -ENOENT) {
		r = cur;
		goto out;
	}
	if (cur < 0)
		sb.st_size = 0;
	r = check_size(f, (uint64_t)sb.st_size + f->p.len, err);
	if (r < 0)
		goto out;
	r = pending_tmpfile(f->st, &out);
	if (r == 0 && cur >= 0)
		r = copy_content(cur, out.fd, sb.st_size);
	for (off_t o = 0; r == 0 && o < (off_t)f->p.len; o += (off_t)sizeof(buf)) {
		ssize_t n = pending_pread(&f->p, buf, sizeof(buf), o);

		r = n < 0 ? (int)n : write_all(out.fd, buf, (size_t)n);
	}
	if (r == 0)
		r = publish(f->st, f->path, cur, out.fd, out.tmp_name, f->create_mode, who, &f->set,
			    NULL, NULL,
			    0, &v, err);
	if (r == 0) {
		memset(&f->set, 0, sizeof(f->set));
		rebase(f, out.fd, sb.st_size + (off_t)f->p.len, v);
		out.fd = -1;
		pending_reset(f->st, &f->p);
	}
out:
	store_unlock_name(f->st, s);
	store_close_later(f->st, cur);
	if (out.fd >= 0) {
		close(out.fd);
		unlinkat(f->st->tmp_fd, out.tmp_name, 0);
	}
	if (r < 0 && err && !err->code)
		stash_error_set(err, -r, "%s: commit failed: %s", f->path, strerror(-r));
	return r;
}

/*
 * Did the write()-time check validate this very merge: the same patch on
 * the same file (identity and bound schema), no schema changed since?  Not
 * when other daemons share the directory: they change schemas unseen.
 */
static bool still_checked(struct stash_file *f, int cur, const struct stat *sb)
{
	char name[256];
	ssize_t n;

	if (!f->checked.valid || cur < 0 || f->st->opts.shared || !f->schema ||
	    f->checked.patch_len != f->p.len || f->checked.gen != binding_generation(f->st) ||
	    f->checked.dev != sb->st_dev || f->checked.ino != sb->st_ino ||
	    f->checked.size != sb->st_size || f->checked.mtime.tv_sec != sb->st_mtim.tv_sec ||
	    f->checked.mtime.tv_nsec != sb->st_mtim.tv_nsec)
		return false;
	n = fgetxattr(cur, XATTR_SCHEMA, name, sizeof(name) - 1);
	if (n <= 0)
		return false;
	name[n] = '\0';
	return strcmp(name, f->schema) == 0;
}

/*
 * The document in @cur (the committed file of @path, @sb its stat): the one
 * this daemon wrote last, when the cache still has it, else parsed.
 */
static int doc_load(struct stash_store *st, const char *path, int cur, const struct stat *sb,
		    json_t **doc, struct stash_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	*doc = doc_cache_take(st, path, sb);
	if (*doc)
		return 0;
	r = backing_slurp(cur, sb->st_size, &text, &len);
	if (r == 0 && !(*doc = stash_json_parse(text, len, err)))
		r = -EINVAL;
	free(text);
	return r;
}

/*
 * Merge @patch into the document of @f's stash: one commit.  The caller
 * holds the name lock.
 */
static int merge_one(struct stash_file *f, json_t *patch, const struct stash_caller *who,
		     struct stash_error *err)
{
	json_t *doc = NULL;
	struct pending out = { .fd = -1 };
	char *dumped = NULL;
	size_t dlen = 0;
	struct stat sb;
	uint64_t v;
	int cur, r;

	cur = open_content(f->st, f->path, &sb);
	if (cur < 0 && cur != -ENOENT) {
		r = cur;
		goto out;
	}
	if (cur >= 0 && sb.st_size > 0) {
		r = doc_load(f->st, f->path, cur, &sb, &doc, err);
		if (r < 0 && r != -EINVAL)
			goto out;
		if (r < 0) {
			char why[STASH_ERROR_TEXT];

			snprintf(why, sizeof(why), "%s", err ? err->text : "");
			r = stash_error_set(err, EINVAL,
				"%s: cannot merge: the stash does not hold a JSON object (%s)",
				f->path, why);
			goto out;
		}
	} else {
		doc = json_object();
	}
	r = stash_merge_apply(doc, patch, err);
	if (r < 0)
		goto out;
	dumped = stash_json_dump(doc, f->st->opts.json_indent, &dlen);
	if (!dumped) {
		r = -ENOMEM;
		goto out;
	}
	r = check_size(f, dlen, err);
	if (r < 0)
		goto out;
	r = pending_tmpfile(f->st, &out);
	if (r == 0)
		r = write_all(out.fd, dumped, dlen);
	if (r == 0)
		r = publish(f->st, f->path, cur, out.fd, out.tmp_name, f->create_mode, who, NULL,
			    doc, patch,
			    still_checked(f, cur, &sb) ? PUBLISH_VALIDATED : 0, &v, err);
	if (r == 0) {
		doc_cache_put(f->st, f->path, out.fd, doc);
		doc = NULL;
		pending_reset(f->st, &f->p);
		rebase(f, out.fd, (off_t)dlen, v);
		out.fd = -1;
	}
out:
	store_close_later(f->st, cur);
	pending_reset(f->st, &out);
	free(dumped);
	json_decref(doc);
	if (r < 0 && err && !err->code)
		stash_error_set(err, -r, "%s: merge failed: %s", f->path, strerror(-r));
	return r;
}

/*
 * Merges into one stash queue up while its name lock is held.  The thread
 * that gets the lock commits every merge queued for that stash at once:
 * the patches apply in the order they arrived, the document is validated
 * against its schema after each as if it were committed alone, the size
 * limit applies to the document written, and one file is written whose
 * version counts every merge.  Concurrent writers thus share the cost of
 * writing the document (the larger it is, the more that saves).  When one
 * of them would be refused, or streams are linked to the stash (they get
 * one record per change), the batch commits one merge at a time instead.
 */
struct merge_req {
	struct stash_file *f;
	json_t *patch;
	const struct stash_caller *who;
	struct stash_error *err;
	int result;
	int fd;                 /* its descriptor of the new file, made before publishing */
	bool done;
	struct merge_req *next;
};

/* The whole batch in one commit; false (nothing changed) when it can't be. */
static bool merge_together(struct stash_store *st, struct merge_req *batch, unsigned n)
{
	struct stash_file *f = batch->f;
	struct pending out = { .fd = -1 };
	char schema[256], *dumped = NULL;
	size_t dlen = 0;
	json_t *doc = NULL;
	ssize_t bound;
	struct stat sb;
	uint64_t v;
	int cur, r = -1;

	/* Schemas must compile after each change: they go one at a time. */
	if (is_schema_path(f->path))
		return false;
	cur = open_content(st, f->path, &sb);
	if (cur < 0 || sb.st_size == 0 || stream_linked(st, f->path))
		goto out;
	doc_load(st, f->path, cur, &sb, &doc, NULL);
	bound = fgetxattr(cur, XATTR_SCHEMA, schema, sizeof(schema) - 1);
	if (bound > 0)
		schema[bound] = '\0';
	for (struct merge_req *m = batch; doc && m; m = m->next) {
		if (stash_merge_apply(doc, m->patch, NULL) < 0 ||
		    (bound > 0 && binding_validate(st, schema, f->path, doc, NULL, 0, NULL) < 0))
			goto out;
	}
	dumped = doc ? stash_json_dump(doc, st->opts.json_indent, &dlen) : NULL;
	if (!dumped || check_size(f, dlen, NULL) < 0 || pending_tmpfile(st, &out) < 0)
		goto out;
	if (write(out.fd, dumped, dlen) != (ssize_t)dlen)
		goto out;
	/* Every handle moves on to the new file: their descriptors first. */
	for (struct merge_req *m = batch; m; m = m->next) {
		m->fd = m->next ? fcntl(out.fd, F_DUPFD_CLOEXEC, 0) : out.fd;
		if (m->fd < 0)
			goto out;
	}
	r = publish(st, f->path, cur, out.fd, out.tmp_name, f->create_mode, batch->who, NULL, doc,
		    NULL,
		    PUBLISH_VALIDATED | PUBLISH_CHANGES(n), &v, NULL);
	if (r < 0)
		goto out;
	doc_cache_put(st, f->path, out.fd, doc);
	doc = NULL;
	for (struct merge_req *m = batch; m; m = m->next) {
		pending_reset(st, &m->f->p);
		rebase(m->f, m->fd, (off_t)dlen, v);
		m->fd = -1;
		m->result = 0;
	}
	out.fd = -1;
out:
	/* Not published: the copies go; out.fd itself goes with `out`. */
	for (struct merge_req *m = batch; m; m = m->next) {
		if (m->fd >= 0 && m->fd != out.fd)
			close(m->fd);
		m->fd = -1;
	}
	store_close_later(f->st, cur);
	pending_reset(st, &out);
	free(dumped);
	json_decref(doc);
	return r == 0;
}

/*
 * One round for stripe @s (the caller made it busy): every merge queued for
 * @path, in one commit if they can share it.  Returns them, to be marked done.
 */
static struct merge_req *merge_round(struct stash_store *st, struct merge_queue *q, unsigned s,
				     const char *path)
{
	struct merge_req *batch = NULL, **tail = &batch, **pp;
	unsigned n = 0;

	store_lock_name(st, path);
	pthread_mutex_lock(&st->merge_lock);
	for (pp = &q->head; *pp;) {
		struct merge_req *m = *pp;

		if (strcmp(m->f->path, path) == 0) {
			*pp = m->next;
			m->next = NULL;
			*tail = m;
			tail = &m->next;
			n++;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&st->merge_lock);
	if (n == 1 || !merge_together(st, batch, n)) {
		for (struct merge_req *m = batch; m; m = m->next)
			m->result = merge_one(m->f, m->patch, m->who, m->err);
	}
	store_unlock_name(st, s);
	return batch;
}

/*
 * Queue @req on its stripe and wait until some thread has committed it;
 * when the stripe is free, this thread commits, starting with the stash
 * whose merge has waited longest (so none starves).  Returns its result.
 */
static int merge_queued(struct stash_store *st, struct merge_req *req)
{
	unsigned s = backing_stripe(req->f->path);
	struct merge_queue *q = &st->merges[s];
	struct merge_req **pp, *done;

	pthread_mutex_lock(&st->merge_lock);
	for (pp = &q->head; *pp; pp = &(*pp)->next)
		;
	*pp = req;
	while (!req->done) {
		if (q->busy) {
			pthread_cond_wait(&st->merge_done, &st->merge_lock);
			continue;
		}
		q->busy = true;
		pthread_mutex_unlock(&st->merge_lock);
		/* The head stays while the stripe is busy: only a round removes. */
		done = merge_round(st, q, s, q->head->f->path);
		pthread_mutex_lock(&st->merge_lock);
		for (; done; done = done->next)
			done->done = true;
		q->busy = false;
		pthread_cond_broadcast(&st->merge_done);
	}
	pthread_mutex_unlock(&st->merge_lock);
	return req->result;
}

/* Merge the handle's patch into the stash's document. */
static int commit_merge(struct stash_file *f, const struct stash_caller *who,
			struct stash_error *err)
{
	struct merge_req req = { .f = f, .who = who, .err = err, .fd = -1 };
	char *text = NULL;
	size_t len = 0;
	int r;

	/* The merged document needs the space the reservation holds. */
	pending_unreserve(f->st, &f->p);
	if (f->p.fd >= 0) {
		r = backing_slurp(f->p.fd, (off_t)f->p.len, &text, &len);
		if (r < 0)
			return stash_error_set(err, -r, "%s: merge failed: %s", f->path, strerror(-r));
		req.patch = stash_json_parse(text, len, err);
		free(text);
	} else {
		req.patch = stash_json_parse(f->p.mem ? f->p.mem : "", f->p.len, err);
	}
	if (!req.patch)
		return -EINVAL;
	if (!json_is_object(req.patch)) {
		json_decref(req.patch);
		return stash_error_set(err, EINVAL, "%s.json: the patch must be one JSON object",
				       f->path);
	}
	r = merge_queued(f->st, &req);
	json_decref(req.patch);
	return r;
}

int stash_file_commit(struct stash_file *f, enum stash_commit when,
		      const struct stash_caller *who, struct stash_error *err)
{
	bool due;
	int r = 0;

	if (f->kind == STASH_KIND_STREAM)
		return 0;
	pthread_mutex_lock(&f->lock);
	if (f->poison) {
		if (err)
			*err = f->poison_err;
		r = -f->poison;
		/* Reported once; the committed content was never touched. */
		goto out;
	}
	if (f->kind == STASH_KIND_META) {
		/* A complete patch was applied at write(); what is left is incomplete. */
		if (f->p.len && when != STASH_COMMIT_FLUSH)
			r = stash_error_set(err, EINVAL, "metadata: incomplete JSON patch");
		goto out;
	}
	if (when == STASH_COMMIT_FLUSH)
		due = f->wrote || (f->dirty && ++f->flushes >= 2);
	else
		due = f->dirty;
	if (!due)
		goto out;
	if (f->kind == STASH_KIND_VIEW)
		r = commit_merge(f, who, err);
	else if (f->mode == PENDING_APPEND)
		r = commit_append(f, who, err);
	else
		r = commit_full(f, who, err);
	if (r < 0)
		poison(f, r, err);
out:
	pthread_mutex_unlock(&f->lock);
	return r;
}

bool stash_file_waiting(struct stash_file *f)
{
	bool w;

	pthread_mutex_lock(&f->lock);
	w = f->dirty && !f->wrote && !f->poison;
	pthread_mutex_unlock(&f->lock);
	return w;
}

void stash_file_discard(struct stash_file *f)
{
	pthread_mutex_lock(&f->lock);
	if (f->kind != STASH_KIND_STREAM && f->kind != STASH_KIND_META) {
		pending_reset(f->st, &f->p);
		f->mode = PENDING_NONE;
		f->dirty = f->wrote = false;
		memset(&f->set, 0, sizeof(f->set));
	}
	pthread_mutex_unlock(&f->lock);
}

int stash_file_sync(struct stash_file *f, int datasync)
{
	int r = 0;

	pthread_mutex_lock(&f->lock);
	if (f->base_fd >= 0 && (datasync ? fdatasync(f->base_fd) : fsync(f->base_fd)) < 0)
		r = -errno;
	pthread_mutex_unlock(&f->lock);
	return r;
}

int stash_file_stat(struct stash_file *f, struct stat *out)
{
	int r = 0;

	if (f->kind == STASH_KIND_META) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), STASH_META_DIR "/%s", f->path);
		r = meta_stat(f->st, path, out);
		if (r == 0 && S_ISDIR(out->st_mode))
			r = meta_stat(f->st, *f->path ? strcat(path, "/.stashfs-dir") :
				      STASH_META_DIR "/.stashfs-dir", out);
		return r;
	}
	pthread_mutex_lock(&f->lock);
	if (f->fresh) {
		/* Nothing committed yet: the handle is the only truth. */
		memset(out, 0, sizeof(*out));
		out->st_mode = S_IFREG | (f->create_mode & 07777);
		out->st_uid = f->creator.uid;
		out->st_gid = f->creator.gid;
		out->st_nlink = 1;
		out->st_blksize = 4096;
		out->st_atim = out->st_mtim = out->st_ctim = f->changed;
	} else if (f->base_fd >= 0) {
		/* Its backing file may be gone, replaced by a later commit: not the name. */
		if (fstat(f->base_fd, out) < 0)
			r = -errno;
		else
			out->st_nlink = 1;
	} else {
		r = stash_store_stat(f->st, f->path, out, NULL);
		if (r == -ENOENT) {
			memset(out, 0, sizeof(*out));
			out->st_mode = S_IFREG | (f->create_mode & 07777);
			out->st_nlink = 1;
			r = 0;
		}
	}
	if (r == 0 && f->kind != STASH_KIND_VIEW && f->kind != STASH_KIND_STREAM) {
		if (f->mode == PENDING_FULL)
			out->st_size = (off_t)f->p.len;
		else if (f->mode == PENDING_APPEND)
			out->st_size = f->base_size + (off_t)f->p.len;
		if (f->wrote || f->fresh)
			out->st_blocks = (out->st_size + 511) / 512;
		if (f->wrote)
			out->st_mtim = out->st_ctim = f->changed;
		if (f->set.mode)
			out->st_mode = S_IFREG | (f->set.mode_bits & 07777);
		if (f->set.owner) {
			if (f->set.uid != (uid_t)-1)
				out->st_uid = f->set.uid;
			if (f->set.gid != (gid_t)-1)
				out->st_gid = f->set.gid;
		}
		if (f->set.times) {
			if (f->set.ts[0].tv_nsec != UTIME_OMIT)
				out->st_atim = f->set.ts[0];
			if (f->set.ts[1].tv_nsec != UTIME_OMIT)
				out->st_mtim = f->set.ts[1];
		}
		if (f->removed)
			out->st_nlink = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return r;
}

bool stash_file_fresh(struct stash_file *f)
{
	bool fresh;

	pthread_mutex_lock(&f->lock);
	fresh = f->fresh;
	pthread_mutex_unlock(&f->lock);
	return fresh;
}

int stash_file_setattr(struct stash_file *f, const mode_t *mode, uid_t uid, gid_t gid,
		       const struct timespec *ts)
{
	if (f->kind == STASH_KIND_STREAM || f->kind == STASH_KIND_VIEW || f->kind == STASH_KIND_META)
		return 0;
	pthread_mutex_lock(&f->lock);
	if (mode) {
		f->set.mode = true;
		f->set.mode_bits = *mode & 07777;
	}
	if (uid != (uid_t)-1 || gid != (gid_t)-1) {
		/* Unchanged halves keep what an earlier call set. */
		if (!f->set.owner) {
			f->set.uid = (uid_t)-1;
			f->set.gid = (gid_t)-1;
		}
		f->set.owner = true;
		if (uid != (uid_t)-1)
			f->set.uid = uid;
		if (gid != (gid_t)-1)
			f->set.gid = gid;
	}
	if (ts) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		for (int i = 0; i < 2; i++) {
			f->set.ts[i] = ts[i].tv_nsec == UTIME_NOW ? now : ts[i];
			if (ts[i].tv_nsec == UTIME_OMIT && i == 0)
				f->set.ts[i] = f->changed;
		}
		if (ts[1].tv_nsec == UTIME_OMIT)
			f->set.ts[1] = f->changed;
		f->set.times = true;
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void stash_file_removed(struct stash_file *f)
{
	pthread_mutex_lock(&f->lock);
	f->removed = true;
	pthread_mutex_unlock(&f->lock);
}

int stash_file_moved(struct stash_file *f, const char *path)
{
	char *copy;
	int kind = stash_store_classify(path);

	if (kind != (int)f->kind || kind != STASH_KIND_STASH)
		return 0;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	free(f->path);
	f->path = copy;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void stash_file_close(struct stash_file *f)
{
	if (!f)
		return;
	pending_reset(f->st, &f->p);
	close_fd(&f->base_fd);
	close_fd(&f->reserve_fd);
	pthread_mutex_destroy(&f->lock);
	free(f->schema);
	free(f->meta);
	free(f->path);
	free(f);
}
