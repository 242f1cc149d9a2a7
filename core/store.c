// SPDX-License-Identifier: MIT
/*
 * store.c - the front of the store: opening and closing a backing
 * directory (its checks, instance and temp directory), and the operations
 * by path: stat, mkdir, rmdir, unlink, rename, truncate, statfs.
 *
 * A change of content goes through commit.c: the new content is written
 * to a temp file under BACKING/.stashfs/tmp/<instance>/, gets its
 * metadata, is fsynced when persistent and renamed over the name.  Readers
 * hold an fd on the file they opened, so a commit never changes what an
 * open reader sees: the snapshot per open comes from rename, not from
 * copying.  Open files are file.c's, metadata by path xattr.c's,
 * listings dir.c's; the on-disk format (paths beneath the root, lock
 * bytes, names) is backing.c's.  This file knows nothing of FUSE.
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
#include "commit.h"
#include "defaults.h"
#include "file.h"
#include "lifecycle.h"
#include "locks.h"
#include "merge.h"
#include "meta.h"
#include "pending.h"
#include "reap.h"
#include "store_priv.h"
#include "stream.h"
#include "versions.h"
#include "xattr.h"

/* ---- names ------------------------------------------------------------ */

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
	r = a < 0 || b < 0 ? -errno : backing_write_all(a, "a", 1);
	if (r == 0)
		r = backing_write_all(b, "b", 1);
	if (r < 0) {
		r = stash_error_set(err, -r, "cannot write in .stashfs: %s", strerror(-r));
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

/*
 * A store not yet on a backing directory: its options, its modules' state
 * and the commit hooks.  NULL when out of memory.
 */
static struct stash_store *store_new(const struct stash_store_options *opts)
{
	struct stash_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->root_fd = st->tmp_fd = st->lock_fd = st->instance_lock_fd = st->presence_fd = -1;
	if (opts)
		st->opts = *opts;
	else
		stash_store_options_init(&st->opts);
	locks_init(st);
	st->links_fd = -1;
	/*
	 * What features do at each commit, in this order: binding checks the
	 * content; streams journal their records, then versions keep the
	 * replaced file; after the rename streams append, lifecycle queues
	 * the deadline and binding notes a changed schema.
	 */
	commit_register(st, &binding_commit_hook);
	commit_register(st, &stream_commit_hook);
	commit_register(st, &versions_commit_hook);
	commit_register(st, &life_commit_hook);
	if (binding_init(st) < 0 || life_init(st) < 0 || reap_init(st) < 0 || merge_init(st) < 0) {
		binding_destroy(st);
		life_destroy(st);
		reap_destroy(st);
		merge_destroy(st);
		locks_destroy(st);
		free(st);
		return NULL;
	}
	return st;
}

int stash_store_open(const char *backing, const struct stash_store_options *opts,
		     struct stash_store **out, struct stash_error *err)
{
	struct stash_store *st;
	int internal_fd = -1, r;

	stash_error_clear(err);
	st = store_new(opts);
	if (!st)
		return stash_error_set(err, ENOMEM, "out of memory");

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
	merge_destroy(st);
	locks_destroy(st);
	free(st);
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
	fd = store_open_object(st, bpath, O_RDONLY | O_NONBLOCK, 0);
	free(bpath);
	if (fd < 0)
		return fd;
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
	int dirfd, r = 0, fd, reserved;

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
	/*
	 * A stash being created has its name already, as on ext4 where the
	 * create made it: the exclusive reservation, held across the mkdir,
	 * fails with EEXIST while its first writer is open.
	 */
	reserved = reserve_name(st, path, true);
	if (reserved < 0) {
		r = reserved;
	} else if (mkdirat(fd, leaf, mode & 07777) < 0) {
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
	if (reserved >= 0)
		close(reserved);
	if (r == 0)
		mark_ephemeral_dir(st, path, fd, leaf);
	close(fd);
	return r;
}

int stash_store_reserved(struct stash_store *st, const char *path)
{
	int fd = reserve_name(st, path, true);

	if (fd == -EEXIST)
		return 1;
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
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
	struct commit c = { .op = COMMIT_DELETE, .st = st, .curfd = -1, .who = who, .err = err };
	char *bpath;
	int kind, r;
	unsigned s;

	r = backing_refuse_version(path, err);
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
	c.path = bpath;
	s = store_lock_name(st, bpath);
	r = commit_remove(&c);
	store_unlock_name(st, s);
	free(bpath);
	return r;
}

int stash_store_rename(struct stash_store *st, const char *from, const char *to,
		       unsigned flags, const struct stash_caller *who,
		       struct stash_error *err)
{
	int kf = stash_store_classify(from), kt = stash_store_classify(to);

	if (kf < 0)
		return kf;
	if (kt < 0)
		return kt;
	if (kf == STASH_KIND_META || kt == STASH_KIND_META)
		return -EPERM;
	if (kf == STASH_KIND_VERSION)
		return backing_refuse_version(from, err);
	if (kt == STASH_KIND_VERSION)
		return backing_refuse_version(to, err);
	if (kf == STASH_KIND_VIEW || kt == STASH_KIND_VIEW)
		return stash_error_set(err, EPERM,
			"a NAME.json view cannot be renamed or renamed over: rename the stash NAME");
	if ((kf == STASH_KIND_STREAM) != (kt == STASH_KIND_STREAM))
		return stash_error_set(err, EPERM, "streams stay under streams/");
	return commit_rename(&(struct commit){ .op = COMMIT_RENAME, .st = st, .path = to,
					       .from = from, .from_kind = kf, .flags = flags,
					       .curfd = -1, .tmpfd = -1, .who = who, .err = err });
}

/* Commit the first @size bytes of @fd's content (zero-extended) as @path. */
static int commit_truncated(struct stash_store *st, const char *path, int fd, off_t cur,
			    off_t size, const struct stash_caller *who, uint64_t *version,
			    struct stash_error *err)
{
	struct pending p = { .fd = -1 };
	struct commit c = { .st = st, .path = path, .curfd = fd, .create_mode = 0644, .who = who,
			    .err = err };
	int r = pending_tmpfile(st, &p);

	if (r < 0)
		return r;
	r = copy_content(fd, p.fd, cur < size ? cur : size);
	if (!r && ftruncate(p.fd, size) < 0)
		r = -errno;
	c.tmpfd = p.fd;
	c.tmpname = p.tmp_name;
	if (!r)
		r = commit_publish(&c);
	if (!r)
		*version = c.version;
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

	r = backing_refuse_version(path, err);
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

int stash_store_statfs(struct stash_store *st, struct statvfs *out)
{
	return fstatvfs(st->root_fd, out) < 0 ? -errno : 0;
}

