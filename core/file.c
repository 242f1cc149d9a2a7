// SPDX-License-Identifier: MIT
/*
 * file.c - open files: what a handle reads (its snapshot), what it will
 * commit, and when, for each kind of file (stash, view, stream, metadata
 * view, past version).
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
#include "access.h"
#include "binding.h"
#include "commit.h"
#include "defaults.h"
#include "file.h"
#include "lifecycle.h"
#include "locks.h"
#include "merge.h"
#include "meta.h"
#include "reap.h"
#include "store_priv.h"
#include "stream.h"
#include "versions.h"
#include "xattr.h"

/* ---- open files ------------------------------------------------------- */

/*
 * What is at @leaf of @dirfd (@f->path) now, for a creation that holds its
 * reservation: 0 nothing (or an expired stash), 1 a stash (its snapshot
 * taken as the handle's base), or -errno: something the store doesn't
 * offer, planted in the backing tree, keeps its name.
 */
static int look_at_name(struct stash_file *f, int dirfd, const char *leaf)
{
	struct stat sb;
	int r = fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0 ?
		(errno == ENOENT ? 0 : -errno) :
		S_ISDIR(sb.st_mode) ? -EISDIR : S_ISREG(sb.st_mode) ? 1 : -EPERM;

	if (r != 1)
		return r;
	r = open_content(f->st, f->path, &sb);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	f->base_fd = r;
	f->base_size = sb.st_size;
	f->base_version = backing_read_version(r);
	return 1;
}

/*
 * A new stash's directory defaults, read from its directory @dirfd (-1:
 * opened there) up, for its first commit; its first write is validated
 * against the schema already.
 */
static int read_defaults(struct stash_file *f, int dirfd, struct stash_error *err)
{
	struct defaults *d = malloc(sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	f->defaults = d;
	r = defaults_ancestors(f->st, f->path, dirfd, d->value, d->len);
	if (r == 0 && d->len[DEFAULT_SCHEMA] > 0 &&
	    !(f->schema = strndup(d->value[DEFAULT_SCHEMA], (size_t)d->len[DEFAULT_SCHEMA])))
		r = -ENOMEM;
	if (r < 0)
		return stash_error_set(err, -r, "%s: cannot read its directory's defaults: %s",
				       f->path, strerror(-r));
	return 0;
}

/*
 * Open @path's directory, for reading its attributes when it can be read
 * (*@readable), else only to look in; *@leaf is @path's name there.
 */
static int open_dir_of(struct stash_store *st, const char *path, const char **leaf,
		       bool *readable)
{
	const char *slash = strrchr(path, '/');
	char *dir = strndup(path, slash ? (size_t)(slash - path) : 0);
	int fd;

	*leaf = slash ? slash + 1 : path;
	if (!dir)
		return -ENOMEM;
	fd = store_open_object(st, dir, O_RDONLY | O_DIRECTORY, 0);
	*readable = fd >= 0;
	if (fd == -EACCES)
		fd = store_open_object(st, dir, O_PATH | O_DIRECTORY, 0);
	free(dir);
	return fd;
}

/*
 * Open a stash that has no committed version: reserve its name (see
 * reserve_name), check that it could be created, and start an empty
 * pending buffer that the first commit publishes as version 1, with the
 * directory defaults read here.  Called with f->path, f->create_mode set.
 */
static int open_new(struct stash_file *f, int flags, const struct stash_caller *who,
		    struct stash_error *err)
{
	struct stash_store *st = f->st;
	bool excl = (flags & O_EXCL) != 0;
	const char *leaf;
	bool readable;
	int dirfd, r;

	r = backing_check_new_name(f->path, err);
	if (r < 0)
		return r;
	/*
	 * Reserve, then look: a creator holds its reservation until its first
	 * commit is out, so a look after the reservation cannot miss another
	 * creation, and needs no name lock.  Only an exclusive creation is
	 * refused by another's reservation.
	 */
	r = reserve_name(st, f->path, excl);
	if (r < 0 && (r != -EEXIST || excl))
		return r;
	f->reserve_fd = r < 0 ? -1 : r;
	dirfd = open_dir_of(st, f->path, &leaf, &readable);
	if (dirfd < 0)
		return dirfd;
	r = look_at_name(f, dirfd, leaf);
	if (r == 0)
		r = read_defaults(f, readable ? dirfd : -1, err);
	close(dirfd);
	if (r == 1 && excl)
		return -EEXIST;
	if (r == 1) {
		/* An existing stash after all: an ordinary writer of it. */
		char name[256];
		ssize_t n = fgetxattr(f->base_fd, XATTR_SCHEMA, name, sizeof(name) - 1);

		close_fd(&f->reserve_fd);
		if (n > 0 && !(f->schema = strndup(name, (size_t)n)))
			return -ENOMEM;
		if (flags & O_TRUNC) {
			f->mode = PENDING_FULL;
			f->dirty = f->base_size != 0;
		}
		return 0;
	}
	if (r < 0)
		return r;
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
 * Open NAME@V for writing: NAME, on the condition that it is at V until the
 * commit.  NAME@V.json (@merge) is NAME.json on the same condition.
 */
static int open_cas(struct stash_store *st, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_file **out,
		    struct stash_error *err, bool merge)
{
	const char *at = strrchr(path, '@');
	char stash[PATH_MAX];
	uint64_t v;
	int r;

	/* A merge may come in several writes (>>); a replacement is one whole document. */
	if (strncmp(at, "@next", 5) == 0 || (!merge && (!(flags & O_TRUNC) || (flags & O_APPEND))))
		return backing_refuse_version(path, err);
	v = strtoull(at + 1, NULL, 10);
	if (!v || v == UINT64_MAX)
		return backing_refuse_version(path, err);
	snprintf(stash, sizeof(stash), "%.*s%s", (int)(at - path), path,
		 merge ? STASH_VIEW_SUFFIX : "");
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

/*
 * A stash, a view or a past version: the handle holds the committed file
 * as its snapshot (none yet for a new stash, or a view of a stash to be).
 */
static int content_file_open(struct stash_file *f, const char *path, int flags, mode_t mode,
			     const struct stash_caller *who, struct stash_error *err)
{
	struct stash_store *st = f->st;
	enum stash_kind kind = f->kind;
	bool writable = (flags & O_ACCMODE) != O_RDONLY;
	char *bpath = f->path;
	struct stat sb;
	int r;

	(void)mode;
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
		if (kind == STASH_KIND_STASH)
			return open_new(f, flags, who, err);
		r = -ENOENT;
		f->base_size = 0;
		f->dirty = false;
		goto opened;
	} else if (r >= 0 && (flags & O_CREAT) && (flags & O_EXCL) && kind == STASH_KIND_STASH) {
		close(r);
		r = -EEXIST;
	}
	if (r < 0)
		return r;
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
	return 0;
}

/* How each kind of file opens and takes writes (NULL write: a stash's own). */
static const struct file_kind content_file_kind = { .open = content_file_open };

static const struct file_kind *file_kind_of(enum stash_kind kind)
{
	switch (kind) {
	case STASH_KIND_META:
		return &meta_file_kind;
	case STASH_KIND_STREAM:
		return &stream_file_kind;
	default:
		return &content_file_kind;
	}
}

int stash_file_open(struct stash_store *st, const char *path, int flags, mode_t mode,
		    const struct stash_caller *who, struct stash_file **out,
		    struct stash_error *err)
{
	struct stash_file *f;
	char *bpath = NULL;
	int kind = STASH_KIND_META, r;
	bool writable = (flags & O_ACCMODE) != O_RDONLY;

	if (!backing_meta_path(path)) {
		if (writable && stash_store_classify(path) == STASH_KIND_VERSION)
			return open_cas(st, path, flags, mode, who, out, err, false);
		if (writable && backing_refuse_version(path, NULL) < 0 &&
		    stash_store_classify(path) == STASH_KIND_VIEW)
			return open_cas(st, path, flags, mode, who, out, err, true);
		if (writable || (flags & (O_CREAT | O_TRUNC))) {
			r = backing_refuse_version(path, err);
			if (r < 0)
				return r;
		}
		r = backing_path(path, &bpath, &kind);
		if (r < 0)
			return r;
	}
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
	f->ops = file_kind_of(f->kind);
	r = f->ops->open(f, path, flags, mode, who, err);
	if (r < 0) {
		stash_file_close(f);
		return r;
	}
	*out = f;
	return 0;
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
	if (backing_is_schema_path(f->path))
		return binding_compile(f->st, f->path + strlen(STASH_SCHEMAS_DIR) + 1, f->p.mem,
				       f->p.len, err);
	return binding_validate(f->st, f->schema, f->path, NULL, f->p.mem, f->p.len, err);
}

/* The content changed through the handle: a later mtime than any set before. */
static void touched(struct stash_file *f)
{
	clock_gettime(CLOCK_REALTIME, &f->changed);
	f->set.times = false;
}

/*
 * Over 80 lines: one path for every kind a write can meet (refused handle,
 * other kinds' own write, compare-and-swap, a view's patch, a stash's
 * bytes), so that the order of their checks is visible in one place.
 */
ssize_t stash_file_write(struct stash_file *f, const void *buf, size_t size, off_t off,
			 struct stash_error *err)
{
	int r = 0;
	bool append = (f->flags & O_APPEND) != 0;

	if (f->kind == STASH_KIND_STREAM)
		return f->ops->write(f, buf, size, off, err);   /* under the stream's own lock */
	pthread_mutex_lock(&f->lock);
	if (f->poison) {
		if (err)
			*err = f->poison_err;
		r = -f->poison;
		goto out;
	}
	if (f->ops->write) {
		r = (int)f->ops->write(f, buf, size, off, err);
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
	if (r == 0 && (f->schema || backing_is_schema_path(f->path)) && f->mode == PENDING_FULL &&
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

		if ((size_t)snprintf(path, sizeof(path), STASH_META_DIR "/%s", f->path) >= sizeof(path))
			return -ENAMETOOLONG;
		r = meta_stat(f->st, path, out);
		/* A directory's metadata file: its own document, not the folder. */
		if (r == 0 && S_ISDIR(out->st_mode) &&
		    (size_t)snprintf(path, sizeof(path), STASH_META_DIR "%s%s/.stashfs-dir",
				     *f->path ? "/" : "", f->path) >= sizeof(path))
			return -ENAMETOOLONG;
		if (r == 0 && S_ISDIR(out->st_mode))
			r = meta_stat(f->st, path, out);
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

/* Under f->lock: commits publish nothing, a new stash's name is free again. */
static void mark_removed(struct stash_file *f)
{
	f->removed = true;
	close_fd(&f->reserve_fd);
}

bool stash_file_drop_new(struct stash_file *f)
{
	bool fresh;

	pthread_mutex_lock(&f->lock);     /* a commit holds it throughout */
	fresh = f->fresh && !f->removed;
	if (fresh)
		mark_removed(f);
	pthread_mutex_unlock(&f->lock);
	return fresh;
}

void stash_file_removed(struct stash_file *f)
{
	pthread_mutex_lock(&f->lock);
	mark_removed(f);
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
	/* Its new directories' defaults are the ones a first commit takes. */
	free(f->defaults);
	f->defaults = NULL;
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
	free(f->defaults);
	pthread_mutex_destroy(&f->lock);
	free(f->schema);
	free(f->meta);
	free(f->path);
	free(f);
}
