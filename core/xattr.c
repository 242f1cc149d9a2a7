// SPDX-License-Identifier: MIT
/*
 * xattr.c - the metadata of objects by path: user.stash.* and other user
 * xattrs (get, set, list, remove, with their checks), mode, owner, times.
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
#include "lifecycle.h"
#include "locks.h"
#include "store_priv.h"
#include "stream.h"
#include "versions.h"
#include "xattr.h"

/* Open backing path @bpath for its attributes: a planted symlink reads as missing. */
static int open_attrs(struct stash_store *st, const char *bpath)
{
	return store_open_object(st, bpath, O_RDONLY | O_NONBLOCK, 0);
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
	r = open_attrs(st, bpath);
	free(bpath);
	return r;
}

int stash_store_chmod(struct stash_store *st, const char *path, mode_t mode)
{
	int fd = backing_refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = fchmod(fd, mode & 07777) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int stash_store_chown(struct stash_store *st, const char *path, uid_t uid, gid_t gid)
{
	int fd = backing_refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = fchown(fd, uid, gid) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int stash_store_utimens(struct stash_store *st, const char *path, const struct timespec ts[2])
{
	int fd = backing_refuse_version(path, NULL) < 0 ? -EROFS : open_meta(st, path), r;

	if (fd < 0)
		return fd;
	r = futimens(fd, ts) < 0 ? -errno : 0;
	close(fd);
	return r;
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
	bool had = stream_read_link(st, path, old) == 0;
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
	fd = open_attrs(st, path);
	if (fd < 0)
		r = fd;
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
	/* Made persistent: it must survive a crash from now on. */
	if (st->opts.sync == STASH_SYNC_ALWAYS && fsync(fd) < 0)
		return -errno;
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

/* The store's own attributes: setting or removing one changes nothing. */
static bool derived_xattr(const char *name)
{
	return xattr_readonly(name) || strcmp(name, XATTR_SHA256) == 0 ||
	       strcmp(name, XATTR_EXPIRES) == 0;
}

int stash_store_check_xattr(const char *name, const void *value, size_t size,
			    struct stash_error *err)
{
	int r;

	if (!user_xattr(name))
		return -EOPNOTSUPP;
	r = life_check_xattr(name, value, size, err);
	/* The store's own (a copy's source had them): the new stash gets its own. */
	if (r == -EPERM && derived_xattr(name)) {
		stash_error_clear(err);
		return 1;
	}
	return r;
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
	r = backing_refuse_version(path, err);
	if (r < 0)
		return r;
	r = life_check_xattr(name, value, size, err);
	/*
	 * The store's own attributes are set by its commits alone; a copy
	 * that brings its source's (rsync -X restoring a copy of the store,
	 * to a stash that it has just committed) goes through, the store's
	 * values kept.
	 */
	if (r == -EPERM && derived_xattr(name)) {
		stash_error_clear(err);
		return 0;
	}
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
	fd = open_attrs(st, bpath);
	if (fd < 0) {
		r = fd;
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
	/*
	 * The store's own attributes stay: removing one does nothing, so
	 * that a copy that drops what its source lacks (rsync -X) goes
	 * through.
	 */
	if (derived_xattr(name))
		return 0;
	if (life_hidden_xattr(name))
		return -EPERM;
	if (strcmp(name, XATTR_LINKED) == 0)
		return set_link(st, path, NULL, 0, 0, NULL, NULL);
	if (backing_refuse_version(path, NULL) < 0)
		return -EROFS;
	r = backing_path(path, &bpath, &kind);
	if (r < 0)
		return r;
	s = store_lock_name(st, bpath);
	fd = open_attrs(st, bpath);
	if (fd < 0) {
		r = fd;
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
