// SPDX-License-Identifier: MIT
/*
 * commit.c - the one path a change takes to become the content of a name:
 * pending content -> temp file -> metadata -> checks -> sync -> rename ->
 * directory sync, and what a handle does around it (full and append commits).
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
#include "locks.h"
#include "reap.h"
#include "store_priv.h"
#include "stream.h"
#include "versions.h"

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
bool want_sync(struct stash_store *st, int fd)
{
	return st->opts.sync == STASH_SYNC_ALWAYS &&
	       backing_xattr_number(fd, XATTR_PERSISTENT, 1) != 0;
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

int commit_register(struct stash_store *st, const struct commit_hook *hook)
{
	if (st->nhooks == COMMIT_HOOKS_MAX)
		return -ENOSPC;
	st->hooks[st->nhooks++] = hook;
	return 0;
}

/* Does a hook say the file @fd at the name counts as none (expired, orphaned)? */
static bool commit_gone(struct commit *c, int fd, const struct stat *sb)
{
	for (unsigned i = 0; i < c->st->nhooks; i++)
		if (c->st->hooks[i]->gone && c->st->hooks[i]->gone(c, fd, sb))
			return true;
	return false;
}

/*
 * The file @c replaces: open it (unless the caller holds it), and give the
 * new content its metadata (or, for a new stash, its owner, mode and the
 * directory defaults).  An expired or orphaned file counts as none.
 */
static int commit_base(struct commit *c)
{
	struct stash_store *st = c->st;
	struct stat old;
	int r;

	c->oldfd = c->curfd >= 0 ? c->curfd :
		openat(c->dirfd, c->leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (c->oldfd >= 0 && fstat(c->oldfd, &old) < 0)
		return -errno;
	if (c->oldfd >= 0 && S_ISREG(old.st_mode) && commit_gone(c, c->oldfd, &old)) {
		/* Expired or orphaned: the name starts afresh. */
		if (c->oldfd != c->curfd)
			close(c->oldfd);
		c->oldfd = -1;
		errno = ENOENT;
	}
	if (c->oldfd >= 0) {
		if (!S_ISREG(old.st_mode))
			return S_ISDIR(old.st_mode) ? -EISDIR : -EPERM;
		c->old_version = backing_read_version(c->oldfd);
	}
	if (c->oldfd >= 0 && !c->fresh) {
		r = copy_xattrs(c->oldfd, c->tmpfd);
		if (r < 0)
			return r;
		/* New content drops setuid/setgid, as a write does on a local filesystem. */
		if (fchmod(c->tmpfd, old.st_mode & 01777) < 0 ||
		    (fchown(c->tmpfd, old.st_uid, old.st_gid) < 0 && errno != EPERM))
			return -errno;
		return 0;
	}
	if (c->oldfd < 0 && errno != ENOENT)
		return errno == ELOOP ? -EPERM : -errno;
	/*
	 * A new stash, also over a file another creation committed meanwhile
	 * (the name was no name for it yet): its creator's owner and mode, so
	 * that a private file never takes another user's.
	 */
	if (fchmod(c->tmpfd, c->create_mode & 07777) < 0)
		return -errno;
	/* Only root can give files away; an unprivileged daemon keeps them. */
	if (c->who && fchown(c->tmpfd, c->who->uid, c->who->gid) < 0 && errno != EPERM)
		return -errno;
	/* A stash made again at a name with history counts on from it. */
	if (c->oldfd < 0)
		c->old_version = versions_last(st, c->path);
	return defaults_apply(st, c->path, c->defaults, c->tmpfd, c->err);
}

/* The change did not happen: tell the first @n hooks, last first. */
static void commit_aborted(struct commit *c, void **state, unsigned n)
{
	while (n--)
		if (c->st->hooks[n]->aborted)
			c->st->hooks[n]->aborted(c, state[n]);
}

static void commit_published(struct commit *c, void **state)
{
	for (unsigned i = 0; i < c->st->nhooks; i++)
		if (c->st->hooks[i]->published)
			c->st->hooks[i]->published(c, state[i]);
}

/* Run the prepare hooks; on a refusal, abort those that prepared. */
static int commit_prepare(struct commit *c, void **state)
{
	struct stash_store *st = c->st;

	for (unsigned i = 0; i < st->nhooks; i++) {
		int r = st->hooks[i]->prepare ? st->hooks[i]->prepare(c, &state[i]) : 0;

		if (r < 0) {
			commit_aborted(c, state, i);
			return r;
		}
	}
	return 0;
}

int commit_publish(struct commit *c)
{
	struct stash_store *st = c->st;
	void *state[COMMIT_HOOKS_MAX] = { NULL };
	bool durable;
	int r;

	c->oldfd = -1;
	c->old_version = 0;
	c->dirfd = backing_open_parent(st->root_fd, c->path, &c->leaf);
	if (c->dirfd < 0)
		return c->dirfd;
	r = commit_base(c);
	if (r == 0)
		r = apply_set(c->tmpfd, c->set);
	for (unsigned i = 0; r == 0 && i < st->nhooks; i++)
		r = st->hooks[i]->check ? st->hooks[i]->check(c) : 0;
	c->version = c->old_version + (c->changes ? c->changes : 1);
	if (r == 0)
		r = backing_write_version(c->tmpfd, c->version);
	if (r < 0)
		goto out;
	durable = want_sync(st, c->tmpfd);
	if (durable && fdatasync(c->tmpfd) < 0) {
		r = -errno;
		goto out;
	}
	r = commit_prepare(c, state);
	if (r < 0)
		goto out;
	if (renameat(st->tmp_fd, c->tmpname, c->dirfd, c->leaf) < 0) {
		r = -errno;
		commit_aborted(c, state, st->nhooks);
		goto out;
	}
	if (durable) {
		/*
		 * The rename is durable only once the directory is.  It is in
		 * place whatever this says, and cannot be taken back: the
		 * change is published, as after rename(2) without a sync.
		 */
		int d = openat(c->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (d >= 0) {
			(void)!fsync(d);
			close(d);
		}
	}
	commit_published(c, state);
out:
	if (c->oldfd >= 0 && c->oldfd != c->curfd)
		store_close_later(st, c->oldfd);
	close(c->dirfd);
	return r;
}

int commit_remove(struct commit *c)
{
	struct stash_store *st = c->st;
	void *state[COMMIT_HOOKS_MAX] = { NULL };
	struct stat sb;
	int r;

	c->tmpfd = -1;
	c->oldfd = -1;
	c->dirfd = backing_open_parent(st->root_fd, c->path, &c->leaf);
	if (c->dirfd < 0)
		return c->dirfd;
	if (fstatat(c->dirfd, c->leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto out;
	}
	if (S_ISDIR(sb.st_mode)) {
		r = -EISDIR;
		goto out;
	}
	c->oldfd = c->curfd >= 0 ? c->curfd :
		openat(c->dirfd, c->leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	c->old_version = c->oldfd >= 0 ? backing_read_version(c->oldfd) : 0;
	c->version = c->old_version + 1;
	r = commit_prepare(c, state);
	if (r < 0)
		goto out;
	if (unlinkat(c->dirfd, c->leaf, 0) < 0) {
		r = -errno;
		commit_aborted(c, state, st->nhooks);
		goto out;
	}
	commit_published(c, state);
out:
	/* Held across the unlink: the blocks are freed off this path. */
	if (c->oldfd >= 0 && c->oldfd != c->curfd)
		store_close_later(st, c->oldfd);
	close(c->dirfd);
	return r;
}

/*
 * The files a rename moves and replaces: @c->srcfd when @c->from is a
 * regular file (a directory moves as it is), @c->oldfd whatever is at
 * @c->path.  A new stash name must be one the store takes.
 */
static int rename_base(struct commit *c)
{
	struct stat sb;
	int fd = openat(c->from_dirfd, c->from_leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	c->oldfd = openat(c->dirfd, c->leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (c->oldfd >= 0)
		c->old_version = backing_read_version(c->oldfd);
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : (errno == EISDIR ? 0 : -errno);
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return 0;
	}
	c->srcfd = fd;
	c->version = backing_read_version(fd);
	return stash_store_classify(c->path) == STASH_KIND_STASH ?
		backing_check_new_name(c->path, c->err) : 0;
}

/* Lock the names of a rename in stripe order, so that two renames never deadlock. */
static void rename_lock(struct commit *c, unsigned s[2])
{
	s[0] = backing_stripe(c->from);
	s[1] = backing_stripe(c->path);
	if (s[0] > s[1]) {
		unsigned t = s[0];

		s[0] = s[1];
		s[1] = t;
	}
	store_lock_stripe(c->st, s[0]);
	if (s[1] != s[0])
		store_lock_stripe(c->st, s[1]);
}

int commit_rename(struct commit *c)
{
	struct stash_store *st = c->st;
	void *state[COMMIT_HOOKS_MAX] = { NULL };
	unsigned s[2];
	int r;

	c->tmpfd = c->oldfd = c->srcfd = c->dirfd = -1;
	c->old_version = c->version = 0;
	c->from_dirfd = backing_open_parent(st->root_fd, c->from, &c->from_leaf);
	if (c->from_dirfd < 0)
		return c->from_dirfd;
	c->dirfd = backing_open_parent(st->root_fd, c->path, &c->leaf);
	if (c->dirfd < 0) {
		r = c->dirfd;
		goto out;
	}
	rename_lock(c, s);
	r = rename_base(c);
	for (unsigned i = 0; r == 0 && c->srcfd >= 0 && i < st->nhooks; i++)
		r = st->hooks[i]->check ? st->hooks[i]->check(c) : 0;
	/* The moved file counts on from the one it replaces, as a commit does. */
	if (r == 0 && c->srcfd >= 0 && c->oldfd >= 0 && c->old_version >= c->version) {
		c->version = c->old_version + 1;
		r = backing_write_version(c->srcfd, c->version);
	}
	if (r < 0 && c->oldfd >= 0 && c->err && c->err->code)
		fsetxattr(c->oldfd, XATTR_ERROR, c->err->text, strlen(c->err->text), 0);
	if (r == 0)
		r = commit_prepare(c, state);
	if (r == 0 && syscall(SYS_renameat2, c->from_dirfd, c->from_leaf, c->dirfd, c->leaf,
			      c->flags) < 0) {
		r = -errno;
		commit_aborted(c, state, st->nhooks);
	} else if (r == 0) {
		commit_published(c, state);
	}
	if (s[1] != s[0])
		store_unlock_name(st, s[1]);
	store_unlock_name(st, s[0]);
	for (unsigned i = 0; r == 0 && i < st->nhooks; i++)
		if (st->hooks[i]->unlocked)
			st->hooks[i]->unlocked(c);
out:
	if (c->srcfd >= 0)
		close(c->srcfd);
	if (c->oldfd >= 0)
		store_close_later(st, c->oldfd);
	if (c->dirfd >= 0)
		close(c->dirfd);
	close(c->from_dirfd);
	return r;
}

/*
 * A refused write: remember why, so that nothing this handle wrote is ever
 * committed, and leave the reason in user.stash.error for `getfattr`.
 */
int poison(struct stash_file *f, int r, struct stash_error *err)
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

/* Make the temp file holding @content the handle's new base. */
void rebase(struct stash_file *f, int fd, off_t size, uint64_t version)
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
	free(f->defaults);
	f->defaults = NULL;
}

/* Publish a handle's temp file @tmpfd/@tmpname with the metadata set through it. */
static int commit_handle(struct stash_file *f, int cur, int tmpfd, const char *tmpname,
			 const struct stash_caller *who, uint64_t *version,
			 struct stash_error *err)
{
	struct commit c = { .st = f->st, .path = f->path, .curfd = cur, .tmpfd = tmpfd,
			    .tmpname = tmpname, .create_mode = f->create_mode, .who = who,
			    .set = &f->set, .defaults = f->fresh ? f->defaults : NULL,
			    .fresh = f->fresh, .err = err };
	int r = commit_publish(&c);

	if (r == 0)
		*version = c.version;
	return r;
}

/* Commit a handle holding the full new content. */
int commit_full(struct stash_file *f, const struct stash_caller *who,
		struct stash_error *err)
{
	unsigned s;
	uint64_t v = 0;
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
		r = commit_handle(f, -1, f->p.fd, f->p.tmp_name, f->fresh ? &f->creator : who, &v,
				  err);
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
int commit_append(struct stash_file *f, const struct stash_caller *who,
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

		r = n < 0 ? (int)n : backing_write_all(out.fd, buf, (size_t)n);
	}
	if (r == 0)
		r = commit_handle(f, cur, out.fd, out.tmp_name, who, &v, err);
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
 * Compare-and-swap: is the stash of @f still at the version it was opened
 * as (NAME@V)?  Under the name lock this is the commit's condition.  A
 * refusal names the current version, on the handle and on the stash.
 */
int check_expected(struct stash_file *f, struct stash_error *err)
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

int check_size(struct stash_file *f, uint64_t size, struct stash_error *err)
{
	uint64_t max = f->st->opts.max_size;

	if (max && size > max)
		return stash_error_set(err, EFBIG,
			"%s: %" PRIu64 " bytes would be over the size limit of %" PRIu64 " bytes",
			f->path, size, max);
	return 0;
}

/* Open the committed content of stash @path read-only (snapshot). */
int open_content(struct stash_store *st, const char *path, struct stat *stbuf)
{
	int fd = store_open_object(st, path, O_RDONLY | O_NONBLOCK, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, stbuf) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	if (S_ISDIR(stbuf->st_mode)) {
		close(fd);
		return -EISDIR;
	}
	if (!S_ISREG(stbuf->st_mode) || commit_gone(&(struct commit){ .st = st, .path = path },
						     fd, stbuf)) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}
