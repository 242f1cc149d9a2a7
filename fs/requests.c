// SPDX-License-Identifier: MIT
/*
 * requests.c - what the daemon does with the kernel's requests as a whole,
 * apart from answering them: their largest size, and a count per operation.
 *
 * Counting: stashfs_counted_ops() returns a copy of the operations table in
 * which every operation stashfs implements first bumps its counter, then
 * calls the real one (ops.c knows nothing of it).  The counts are read on
 * the mount root as the xattr user.stash.requests (a JSON object, operation
 * name -> requests since the mount), answered from memory, so reading it is
 * also one bare round trip.  Operations stashfs leaves unset stay unset
 * (libfuse answers ENOSYS without calling anyone) and are not counted;
 * ioctl, poll, bmap and retrieve_reply have no wrapper (stashfs has none
 * of them): set one day, they would run uncounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"

#define REQUESTS_XATTR "user.stash.requests"

/* One counter per operation of struct fuse_lowlevel_ops that is wrapped. */
#define COUNTED_OPS(X) \
	X(init) X(destroy) X(lookup) X(forget) X(getattr) X(setattr) \
	X(readlink) X(mknod) X(mkdir) X(unlink) X(rmdir) X(symlink) \
	X(rename) X(link) X(open) X(read) X(write) X(flush) X(release) \
	X(fsync) X(opendir) X(readdir) X(releasedir) X(fsyncdir) X(statfs) \
	X(setxattr) X(getxattr) X(listxattr) X(removexattr) X(access) \
	X(create) X(getlk) X(setlk) X(write_buf) X(forget_multi) X(flock) \
	X(fallocate) X(readdirplus) X(copy_file_range) X(lseek)

enum counted_op {
#define X(op) OP_##op,
	COUNTED_OPS(X)
#undef X
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
#define X(op) [OP_##op] = #op,
	COUNTED_OPS(X)
#undef X
};

static _Atomic unsigned long long counts[OP_COUNT];
static struct fuse_lowlevel_ops real;

static void count(enum counted_op op)
{
	atomic_fetch_add_explicit(&counts[op], 1, memory_order_relaxed);
}

/*
 * The counts as a JSON object, only operations seen at least once, into
 * @buf of @size bytes.  Returns the length it needs (like snprintf).
 */
static size_t format_counts(char *buf, size_t size)
{
	size_t len = 0;
	int i, n;

	n = snprintf(buf, size, "{");
	len += (size_t)n;
	for (i = 0; i < OP_COUNT; i++) {
		unsigned long long c = atomic_load_explicit(&counts[i], memory_order_relaxed);

		if (!c)
			continue;
		n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0,
			     "%s\"%s\": %llu", len > 1 ? ", " : "", op_names[i], c);
		len += (size_t)n;
	}
	n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0, "}\n");
	return len + (size_t)n;
}

static bool is_requests_xattr(fuse_ino_t ino, const char *name)
{
	return ino == FUSE_ROOT_ID && strcmp(name, REQUESTS_XATTR) == 0;
}

/* ---- the wrappers: count, then hand over ------------------------------ */

static void counted_init(void *userdata, struct fuse_conn_info *conn)
{
	count(OP_init);
	real.init(userdata, conn);
}

static void counted_destroy(void *userdata)
{
	count(OP_destroy);
	real.destroy(userdata);
}

/* A wrapper for an operation whose first argument is the request. */
#define WRAP(op, params, args) \
	static void counted_##op params \
	{ \
		count(OP_##op); \
		real.op args; \
	}

WRAP(lookup, (fuse_req_t req, fuse_ino_t parent, const char *name), (req, parent, name))
WRAP(forget, (fuse_req_t req, fuse_ino_t ino, uint64_t nlookup), (req, ino, nlookup))
WRAP(getattr, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(setattr, (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	       struct fuse_file_info *fi), (req, ino, attr, to_set, fi))
WRAP(readlink, (fuse_req_t req, fuse_ino_t ino), (req, ino))
WRAP(mknod, (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev),
     (req, parent, name, mode, rdev))
WRAP(mkdir, (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode),
     (req, parent, name, mode))
WRAP(unlink, (fuse_req_t req, fuse_ino_t parent, const char *name), (req, parent, name))
WRAP(rmdir, (fuse_req_t req, fuse_ino_t parent, const char *name), (req, parent, name))
WRAP(symlink, (fuse_req_t req, const char *link, fuse_ino_t parent, const char *name),
     (req, link, parent, name))
WRAP(rename, (fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	      const char *newname, unsigned int flags),
     (req, parent, name, newparent, newname, flags))
WRAP(link, (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname),
     (req, ino, newparent, newname))
WRAP(open, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(read, (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi),
     (req, ino, size, off, fi))
WRAP(write, (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	     struct fuse_file_info *fi), (req, ino, buf, size, off, fi))
WRAP(flush, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(release, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(fsync, (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
     (req, ino, datasync, fi))
WRAP(opendir, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(readdir, (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	       struct fuse_file_info *fi), (req, ino, size, off, fi))
WRAP(releasedir, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
WRAP(fsyncdir, (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
     (req, ino, datasync, fi))
WRAP(statfs, (fuse_req_t req, fuse_ino_t ino), (req, ino))
WRAP(listxattr, (fuse_req_t req, fuse_ino_t ino, size_t size), (req, ino, size))
WRAP(access, (fuse_req_t req, fuse_ino_t ino, int mask), (req, ino, mask))
WRAP(create, (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	      struct fuse_file_info *fi), (req, parent, name, mode, fi))
WRAP(getlk, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock),
     (req, ino, fi, lock))
WRAP(setlk, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
	     int sleep), (req, ino, fi, lock, sleep))
WRAP(write_buf, (fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		 struct fuse_file_info *fi), (req, ino, bufv, off, fi))
WRAP(forget_multi, (fuse_req_t req, size_t n, struct fuse_forget_data *forgets),
     (req, n, forgets))
WRAP(flock, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op),
     (req, ino, fi, op))
WRAP(fallocate, (fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		 struct fuse_file_info *fi), (req, ino, mode, offset, length, fi))
WRAP(readdirplus, (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi), (req, ino, size, off, fi))
WRAP(copy_file_range, (fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
		       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
		       struct fuse_file_info *fi_out, size_t len, int flags),
     (req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len, flags))
WRAP(lseek, (fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi),
     (req, ino, off, whence, fi))

#undef WRAP

/* The counts are read-only: setting or removing them is refused like other read-only xattrs. */
static void counted_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			     const char *value, size_t size, int flags)
{
	count(OP_setxattr);
	if (is_requests_xattr(ino, name))
		return (void)fuse_reply_err(req, EPERM);
	real.setxattr(req, ino, name, value, size, flags);
}

static void counted_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	count(OP_removexattr);
	if (is_requests_xattr(ino, name))
		return (void)fuse_reply_err(req, EPERM);
	real.removexattr(req, ino, name);
}

static void counted_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char buf[4096];
	size_t len;

	count(OP_getxattr);
	if (!is_requests_xattr(ino, name))
		return real.getxattr(req, ino, name, size);
	len = format_counts(buf, sizeof(buf));
	if (len >= sizeof(buf))
		fuse_reply_err(req, E2BIG);     /* cannot happen: ~40 names */
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

const struct fuse_lowlevel_ops *stashfs_counted_ops(const struct fuse_lowlevel_ops *ops)
{
	static struct fuse_lowlevel_ops counted;

	real = *ops;
	counted = *ops;
#define X(op) if (ops->op) counted.op = counted_##op;
	COUNTED_OPS(X)
#undef X
	return &counted;
}

/* ---- request size ------------------------------------------------------ */

/*
 * libfuse answers a read from a file descriptor by splicing the reply
 * header and the data into one pipe and the pipe into /dev/fuse; when the
 * pipe cannot hold a whole reply (its data pages, the header and three
 * pages of slack libfuse reserves) it falls back to allocating a buffer
 * of the request's size and copying into it, which for 1 MiB requests is
 * slower than splicing 128 KiB ones.  Pipes grow only up to
 * /proc/sys/fs/pipe-max-size (1 MiB by default) without CAP_SYS_RESOURCE,
 * so ask the kernel for requests no bigger than what fits.
 */
void stashfs_fit_requests_to_pipe(struct fuse_conn_info *conn)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned want = conn->max_write;
	int p[2], cap;

	if (page <= 0 || pipe(p) < 0)
		return;
	cap = fcntl(p[0], F_SETPIPE_SZ, (int)want + 4 * (int)page);
	if (cap < 0) {
		FILE *f = fopen("/proc/sys/fs/pipe-max-size", "re");
		int max = 0;

		if (f) {
			if (fscanf(f, "%d", &max) != 1)
				max = 0;
			fclose(f);
		}
		cap = max > 0 ? fcntl(p[0], F_SETPIPE_SZ, max) : -1;
	}
	close(p[0]);
	close(p[1]);
	if (cap <= 4 * page)
		return;
	/* Three pages of libfuse's slack and one for the header, in whole pages. */
	if ((unsigned long)cap - 4 * (unsigned long)page < want)
		conn->max_write = (unsigned)(cap - 4 * page);
}
