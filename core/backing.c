// SPDX-License-Identifier: MIT
/*
 * backing.c - the on-disk format, defined once (see backing.h).
 *
 * Everything here works on descriptors and names it is given: no store
 * state, no threads, no feature.  The store opens a backing directory
 * through it, and stashctl inspects and repairs one offline through it, so
 * that the two never disagree on a path, a lock byte, an xattr or a name.
 *
 * Every path is resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
 * from the backing directory's fd: a symlink planted in the backing tree
 * is never followed, and nothing above the root is reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backing.h"

/* ---- the format marker ---- */

void backing_format_marker(char out[BACKING_FORMAT_MARKER_MAX])
{
	snprintf(out, BACKING_FORMAT_MARKER_MAX, "stashfs-format %d\n", STASH_FORMAT_VERSION);
}

int backing_write_all(int fd, const void *data, size_t len)
{
	const char *buf = data;

	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENOSPC;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int backing_check_format(int internal_fd, struct stash_error *err)
{
	char buf[BACKING_FORMAT_MARKER_MAX] = "";
	char want[BACKING_FORMAT_MARKER_MAX];
	int fd = openat(internal_fd, BACKING_FORMAT_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int r;

	backing_format_marker(want);
	if (fd >= 0) {
		ssize_t got = read(fd, buf, sizeof(buf) - 1);

		close(fd);
		if (got < 0 || strcmp(buf, want) != 0)
			return stash_error_set(err, EINVAL,
				"backing directory has an unknown format marker (.stashfs/format: %.40s)", buf);
		return 0;
	}
	fd = openat(internal_fd, BACKING_FORMAT_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return stash_error_set(err, errno, "cannot write .stashfs/format: %s", strerror(errno));
	r = backing_write_all(fd, want, strlen(want));
	if (!r && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (!r && renameat(internal_fd, BACKING_FORMAT_TMP, internal_fd, BACKING_FORMAT_FILE) < 0)
		r = -errno;
	if (r)
		return stash_error_set(err, -r, "cannot write .stashfs/format: %s", strerror(-r));
	return 0;
}

/* ---- locks ---- */

unsigned backing_stripe(const char *path)
{
	/* FNV-1a: cheap and spreads short names well. */
	uint32_t h = 2166136261u;

	for (; *path; path++)
		h = (h ^ (unsigned char)*path) * 16777619u;
	return h % LOCK_STRIPES;
}

off_t backing_reserve_byte(const char *path)
{
	uint64_t h = 1469598103934665603ull;

	for (; *path; path++)
		h = (h ^ (unsigned char)*path) * 1099511628211ull;
	return BACKING_RESERVE_BASE + (off_t)(h >> 8);
}

int backing_ofd_lock(int fd, short type, off_t byte)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = byte,
		.l_len = 1,
	};

	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

bool backing_instance_alive(int tmpfd, const char *lockname)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd;
	bool alive;

	if (strchr(lockname, '/'))
		return false;
	fd = openat(tmpfd, lockname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	alive = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return alive;
}

/* ---- paths ---- */

int backing_openat2(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)flags | O_CLOEXEC,
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	do {
		fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	} while (fd < 0 && errno == EAGAIN);
	return fd < 0 ? -errno : (int)fd;
}

/*
 * Open the first @len bytes of @path beneath @root.  One openat2 takes
 * less than PATH_MAX bytes, and a store path may be longer (a deep
 * directory plus a long relative path): a longer one is resolved in pieces,
 * each from the directory the one before opened and under the same rules,
 * so no symlink is followed and nothing above the root is reached.
 */
static int open_beneath_n(int root, const char *path, size_t len, int flags, mode_t mode)
{
	char piece[PATH_MAX];
	int dirfd = root, fd;

	while (len >= sizeof(piece)) {
		size_t cut = sizeof(piece) - 1;

		while (cut && path[cut] != '/')
			cut--;
		if (!cut) {
			fd = -ENAMETOOLONG;     /* no component is that long */
			goto out;
		}
		memcpy(piece, path, cut);
		piece[cut] = '\0';
		fd = backing_openat2(dirfd, piece, O_PATH | O_DIRECTORY, 0);
		if (fd < 0)
			goto out;
		if (dirfd != root)
			close(dirfd);
		dirfd = fd;
		path += cut + 1;
		len -= cut + 1;
	}
	memcpy(piece, path, len);
	piece[len] = '\0';
	fd = backing_openat2(dirfd, len ? piece : ".", flags, mode);
out:
	if (dirfd != root)
		close(dirfd);
	return fd;
}

int backing_open_beneath(int root, const char *path, int flags, mode_t mode)
{
	return open_beneath_n(root, path, strlen(path), flags, mode);
}

int backing_open_parent(int root, const char *path, const char **leaf)
{
	const char *slash = strrchr(path, '/');

	*leaf = slash ? slash + 1 : path;
	return open_beneath_n(root, path, slash ? (size_t)(slash - path) : 0,
			      O_PATH | O_DIRECTORY, 0);
}

int backing_remove(int root, const char *path, int flags)
{
	const char *leaf;
	int dirfd = backing_open_parent(root, path, &leaf), r;

	if (dirfd < 0)
		return dirfd;
	r = unlinkat(dirfd, leaf, flags) < 0 ? -errno : 1;
	close(dirfd);
	return r;
}

/* ---- numbers ---- */

bool backing_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (out)
		*out = v;
	return true;
}

long long backing_xattr_number(int fd, const char *name, long long dflt)
{
	char buf[32], *end;
	ssize_t n = fgetxattr(fd, name, buf, sizeof(buf) - 1);
	long long v;

	if (n <= 0)
		return dflt;
	buf[n] = '\0';
	v = strtoll(buf, &end, 10);
	return end == buf ? dflt : v;
}

uint64_t backing_read_version(int fd)
{
	return (uint64_t)backing_xattr_number(fd, XATTR_VERSION, 0);
}

int backing_write_version(int fd, uint64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);

	return fsetxattr(fd, XATTR_VERSION, buf, (size_t)n, 0) < 0 ? -errno : 0;
}

int backing_slurp(int fd, off_t size, char **out, size_t *len)
{
	char *buf = malloc((size_t)size + 1);
	off_t done = 0;

	if (!buf)
		return -ENOMEM;
	while (done < size) {
		ssize_t n = pread(fd, buf + done, (size_t)(size - done), done);

		if (n < 0) {
			free(buf);
			return -errno;
		}
		if (n == 0)
			break;
		done += n;
	}
	buf[done] = '\0';
	*out = buf;
	*len = (size_t)done;
	return 0;
}

/* ---- names ---- */

bool backing_has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool backing_is_schema_path(const char *path)
{
	return strncmp(path, STASH_SCHEMAS_DIR "/", strlen(STASH_SCHEMAS_DIR) + 1) == 0;
}

bool backing_relpath_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 255 || name[0] == '/' || name[n - 1] == '/')
		return false;
	for (const char *c = name; *c; c++) {
		if ((unsigned char)*c < 0x20)
			return false;
	}
	for (const char *c = name; c; c = strchr(c, '/')) {
		if (*c == '/')
			c++;
		if (strncmp(c, "..", 2) == 0 && (c[2] == '/' || c[2] == '\0'))
			return false;
		if (c[0] == '.' && (c[1] == '/' || c[1] == '\0'))
			return false;
	}
	return true;
}

bool backing_name_ok(const char *name)
{
	return backing_relpath_ok(name) && stash_store_classify(name) == STASH_KIND_STASH;
}

bool backing_meta_path(const char *path)
{
	size_t n = strlen(STASH_META_DIR);

	/* The guide (guide.c) is a read-only document like the view's, of the store itself. */
	if (strcmp(path, ".stashfs-guide") == 0)
		return true;
	return strncmp(path, STASH_META_DIR, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool backing_version_suffix(const char *leaf, size_t *stem, uint64_t *version)
{
	const char *at = strrchr(leaf, '@');
	uint64_t v = 0;

	if (!at)
		return false;
	if (strcmp(at + 1, "next") == 0) {
		*stem = (size_t)(at - leaf);
		*version = 0;
		return true;
	}
	if (!at[1])
		return false;
	for (const char *c = at + 1; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		/* Too many digits is no version either, but still reserved. */
		v = v > UINT64_MAX / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*c - '0');
	}
	*stem = (size_t)(at - leaf);
	*version = v;
	return true;
}

int stash_store_classify(const char *path)
{
	const char *leaf = strrchr(path, '/');
	size_t len = strlen(path), stem;
	uint64_t v;

	if (len == 0)
		return STASH_KIND_DIR;
	leaf = leaf ? leaf + 1 : path;
	if (strlen(leaf) > NAME_MAX)
		return -ENAMETOOLONG;
	if (path[0] == '/' || !*leaf || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0)
		return -EINVAL;
	if (backing_meta_path(path))
		return STASH_KIND_META;
	/* Reserved for the store's own state, at every level. */
	for (const char *c = path; c; c = strchr(c, '/')) {
		if (*c == '/')
			c++;
		if (strncmp(c, STASH_INTERNAL_DIR, strlen(STASH_INTERNAL_DIR)) == 0)
			return -EPERM;
	}
	/* NAME@V and NAME@next: past and future versions, never a name of their own. */
	if (backing_version_suffix(leaf, &stem, &v))
		return stem ? STASH_KIND_VERSION : -EINVAL;
	if (strncmp(path, STASH_STREAMS_DIR "/", strlen(STASH_STREAMS_DIR) + 1) == 0)
		return STASH_KIND_STREAM;
	if (backing_has_suffix(leaf, STASH_VIEW_SUFFIX)) {
		size_t vstem = strlen(leaf) - strlen(STASH_VIEW_SUFFIX);

		/*
		 * No stash could have these views: .json would be the view of
		 * a stash with no name, ..json and ...json those of . and ..,
		 * X.json.json (and .json.json) that of X.json, itself a view.
		 */
		if (vstem == 0 || (vstem <= 2 && strspn(leaf, ".") >= vstem) ||
		    (vstem >= strlen(STASH_VIEW_SUFFIX) &&
		     strncmp(leaf + vstem - strlen(STASH_VIEW_SUFFIX), STASH_VIEW_SUFFIX,
			     strlen(STASH_VIEW_SUFFIX)) == 0))
			return -EINVAL;
		return STASH_KIND_VIEW;
	}
	return STASH_KIND_STASH;
}

int backing_check_new_name(const char *path, struct stash_error *err)
{
	const char *leaf = strrchr(path, '/');

	leaf = leaf ? leaf + 1 : path;
	if (strlen(leaf) + strlen(STASH_VIEW_SUFFIX) > NAME_MAX)
		return stash_error_set(err, ENAMETOOLONG,
			"%s: a stash name has at most %d bytes, so that its %s view fits",
			path, NAME_MAX - (int)strlen(STASH_VIEW_SUFFIX), STASH_VIEW_SUFFIX);
	return 0;
}

char *stash_view_target(const char *path)
{
	size_t n = strlen(path);

	if (!backing_has_suffix(path, STASH_VIEW_SUFFIX))
		return strdup(path);
	return strndup(path, n - strlen(STASH_VIEW_SUFFIX));
}

/* ---- times ---- */

void backing_iso_time(const struct timespec *ts, bool millis, char out[BACKING_TIME_MAX])
{
	struct tm tm;

	gmtime_r(&ts->tv_sec, &tm);
	if (millis)
		snprintf(out, BACKING_TIME_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (ts->tv_nsec / 1000000) % 1000);
	else
		snprintf(out, BACKING_TIME_MAX, "%04d-%02d-%02dT%02d:%02d:%02dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec);
}

int backing_version_path(const char *path, uint64_t version, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s/@%" PRIu64, VERSIONS_DIR, path, version);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Resolve @path to the backing path it stands for (views -> their stash). */
int backing_path(const char *path, char **out, int *kind)
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
		if (backing_version_path(stash, v == UINT64_MAX ? 0 : v, vp, sizeof(vp)) < 0)
			return -ENAMETOOLONG;
		*out = strdup(vp);
		return *out ? 0 : -ENOMEM;
	}
	*out = k == STASH_KIND_VIEW ? stash_view_target(path) : strdup(path);
	return *out ? 0 : -ENOMEM;
}

/*
 * Past versions are read-only: every change by their name is refused with
 * EROFS (also creating a name that ends like one).
 */
int backing_refuse_version(const char *path, struct stash_error *err)
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
