/* SPDX-License-Identifier: MIT */
/*
 * versions.c - past versions of stashes.
 *
 * A commit replaces a stash's file by renaming a new one over it; the old
 * file is kept by giving it a second name first, under
 * .stashfs/versions/<path>/@<version>.  A hard link, not a copy: keeping a
 * version costs a link and, now and then, an unlink of the oldest, whatever
 * the size.  The tree under .stashfs/versions mirrors the store's
 * directories; "@<digits>" names are reserved in the store, so a version
 * never meets a stash or directory of the same name there.
 *
 * What this file does not do: decide when a version is made (the commit
 * path, unlink and rename call it) or serve reads (NAME@V resolves to the
 * path built here and is read like any committed file).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "stashfs/sha256.h"

#include "defaults.h"
#include "reap.h"
#include "commit.h"
#include "versions.h"

/* The history directory of @path, made with its parents if @create. */
static int open_history(struct stash_store *st, const char *path, bool create)
{
	char dir[PATH_MAX];
	int n = snprintf(dir, sizeof(dir), "%s/%s", VERSIONS_DIR, path);
	int fd;

	if (n < 0 || (size_t)n >= sizeof(dir))
		return -ENAMETOOLONG;
	fd = store_open_beneath(st, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd != -ENOENT || !create)
		return fd;
	/* .stashfs is the store's own: no symlinks to fear in its tree. */
	for (char *c = strchr(dir + strlen(STASH_INTERNAL_DIR) + 1, '/'); c; c = strchr(c + 1, '/')) {
		*c = '\0';
		n = mkdirat(st->root_fd, dir, 0700) < 0 && errno != EEXIST ? -errno : 0;
		*c = '/';
		if (n < 0)
			return n;
	}
	if (mkdirat(st->root_fd, dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return store_open_beneath(st, dir, O_RDONLY | O_DIRECTORY, 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Append @x to the array *@v of *@n (capacity *@cap); 0 or -ENOMEM. */
static int add_version(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		uint64_t *nv = realloc(*v, (*cap = *cap ? *cap * 2 : 32) * sizeof(**v));

		if (!nv)
			return -ENOMEM;
		*v = nv;
	}
	(*v)[(*n)++] = x;
	return 0;
}

/*
 * The version numbers kept in history directory @fd (just opened: read
 * from its start), ascending, into a new array *@out (caller frees);
 * returns the count or -errno.  getdents64 on @fd itself: a DIR over a
 * duplicate cost five more system calls at each listing, and a stash made
 * again at a name with history lists it at its first commit.
 */
static int list_versions(int fd, uint64_t **out)
{
	char buf[8192] __attribute__((aligned(8)));
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;
	ssize_t got;
	int r = 0;

	*out = NULL;
	while (r == 0 && (got = getdents64(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t o = 0; r == 0 && o < got; ) {
			struct dirent64 *e = (struct dirent64 *)(buf + o);
			uint64_t x;
			size_t stem;

			o += e->d_reclen;
			if (e->d_name[0] == '@' && backing_version_suffix(e->d_name, &stem, &x) &&
			    !stem && x)
				r = add_version(&v, &n, &cap, x);
		}
	}
	if (r == 0 && got < 0)
		r = -errno;
	if (r < 0) {
		free(v);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	return (int)n;
}

/* Keep the newest @keep versions in history directory @fd, unlink the rest. */
static void prune(int fd, long long keep)
{
	uint64_t *v;
	int n = list_versions(fd, &v);
	char name[32];

	for (int i = 0; i + keep < n; i++) {
		snprintf(name, sizeof(name), "@%" PRIu64, v[i]);
		unlinkat(fd, name, 0);
	}
	free(v);
}

/*
 * Unlink the kept version at backing path @vp, leaving the freeing of its
 * blocks to the reaper thread (the last close of an unlinked file frees
 * them, which is what made commits slow when done inline).  0 or -errno.
 */
static int drop_later(struct stash_store *st, const char *vp)
{
	int fd = openat(st->root_fd, vp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (unlinkat(st->root_fd, vp, 0) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	store_close_later(st, fd);
	return 0;
}

void versions_keep(struct stash_store *st, const char *path, int dirfd, const char *leaf,
		   int fd, uint64_t version)
{
	/* Directory defaults were copied onto the stash when it was made. */
	long long keep = backing_xattr_number(fd, XATTR_VERSIONS, (long long)st->opts.versions);
	char vp[PATH_MAX], old[PATH_MAX];
	int h;

	if (keep <= 0 || version == 0) {
		/*
		 * Nothing kept: still drop what an older, larger retention left,
		 * with the directory, so that the next commit finds none at once.
		 */
		versions_drop(st, path);
		return;
	}
	if (backing_version_path(path, version, vp, sizeof(vp)) < 0)
		return;
	/*
	 * One link by path: the directories under .stashfs are the store's
	 * own, so no symlink there to fear; they are made on the first miss.
	 */
	if (linkat(dirfd, leaf, st->root_fd, vp, 0) < 0) {
		if (errno == ENOENT) {
			h = open_history(st, path, true);
			if (h < 0)
				return;
			close(h);
		} else if (errno == EEXIST) {
			/* Left by an older stash of the same name that counted differently. */
			unlinkat(st->root_fd, vp, 0);
		} else {
			return;
		}
		if (linkat(dirfd, leaf, st->root_fd, vp, 0) < 0)
			return;
	}
	if ((uint64_t)keep >= version)
		return;
	/*
	 * Versions count up by one at almost every commit: dropping the one
	 * that just fell out of the window is one unlink, and its predecessor
	 * is gone already.  Otherwise (a gap, a smaller retention than
	 * before) list and prune.
	 */
	if (backing_version_path(path, version - (uint64_t)keep, old, sizeof(old)) == 0 &&
	    drop_later(st, old) == 0 &&
	    (version - (uint64_t)keep == 1 ||
	     (backing_version_path(path, version - (uint64_t)keep - 1, old, sizeof(old)) == 0 &&
	      faccessat(st->root_fd, old, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)))
		return;
	h = open_history(st, path, false);
	if (h >= 0) {
		prune(h, keep);
		close(h);
	}
}

uint64_t versions_last(struct stash_store *st, const char *path)
{
	int h = open_history(st, path, false);
	uint64_t *v, last = 0;
	int n;

	if (h < 0)
		return 0;
	n = list_versions(h, &v);
	if (n > 0)
		last = v[n - 1];
	free(v);
	close(h);
	return last;
}

/* Move the histories under @from's (of a directory's stashes) to @to's, one by one. */
static void move_history(struct stash_store *st, const char *from, const char *to);

static void move_children(struct stash_store *st, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];
	int h = open_history(st, from, false);
	DIR *d = h >= 0 ? fdopendir(h) : NULL;
	struct dirent *e;

	if (!d) {
		if (h >= 0)
			close(h);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		/* "@V" is a version of a stash once named @from: it stays. */
		if (e->d_name[0] == '.' || e->d_name[0] == '@' || e->d_type != DT_DIR ||
		    snprintf(a, sizeof(a), "%s/%s", from, e->d_name) >= (int)sizeof(a) ||
		    snprintf(b, sizeof(b), "%s/%s", to, e->d_name) >= (int)sizeof(b))
			continue;
		/* The stash moved here replaces the removed one's history. */
		versions_drop(st, b);
		move_history(st, a, b);
	}
	closedir(d);
	if (snprintf(dir, sizeof(dir), "%s/%s", VERSIONS_DIR, from) < (int)sizeof(dir))
		unlinkat(st->root_fd, dir, AT_REMOVEDIR);
}

/*
 * Move @from's history directory to @to's, made with its parents (an empty
 * one is replaced); when @to's holds histories already, those under
 * @from's one by one.
 */
static void move_history(struct stash_store *st, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	int h;

	if (snprintf(a, sizeof(a), "%s/%s", VERSIONS_DIR, from) >= (int)sizeof(a) ||
	    snprintf(b, sizeof(b), "%s/%s", VERSIONS_DIR, to) >= (int)sizeof(b))
		return;
	h = open_history(st, from, false);
	if (h < 0)
		return;
	close(h);
	/* Make @to's parents, then move the directory (an empty @to is replaced). */
	h = open_history(st, to, true);
	if (h < 0)
		return;
	close(h);
	unlinkat(st->root_fd, b, AT_REMOVEDIR);
	if (renameat(st->root_fd, a, st->root_fd, b) == 0 || (errno != ENOTEMPTY && errno != EEXIST))
		return;
	/*
	 * A directory moved to a name whose history holds those of stashes
	 * removed there: each stash's history follows it on its own.
	 */
	move_children(st, from, to);
}

void versions_move(struct stash_store *st, const char *from, const char *to)
{
	int h = open_history(st, to, false), n;
	uint64_t *v;

	if (h >= 0) {
		/* @to keeps the history it has: @from's stays under @from. */
		n = list_versions(h, &v);
		free(v);
		close(h);
		if (n != 0)
			return;
	}
	move_history(st, from, to);
}

void versions_drop(struct stash_store *st, const char *path)
{
	char dir[PATH_MAX];
	int h = open_history(st, path, false);

	if (h < 0)
		return;
	prune(h, 0);
	close(h);
	if (snprintf(dir, sizeof(dir), "%s/%s", VERSIONS_DIR, path) < (int)sizeof(dir))
		unlinkat(st->root_fd, dir, AT_REMOVEDIR);
}

/* The kept version @name of history directory @h as {version, time, size, sha256}. */
static json_t *describe(int h, uint64_t v)
{
	char name[32], sum[65], when[BACKING_TIME_MAX];
	struct stat sb;
	int fd;
	json_t *o;

	snprintf(name, sizeof(name), "@%" PRIu64, v);
	fd = openat(h, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) < 0 || stash_sha256_fd(fd, sum) < 0) {
		close(fd);
		return NULL;
	}
	close(fd);
	backing_iso_time(&sb.st_mtim, false, when);
	o = json_pack("{s:I, s:s, s:I, s:s}", "version", (json_int_t)v, "time", when,
		      "size", (json_int_t)sb.st_size, "sha256", sum);
	return o;
}

json_t *versions_list(struct stash_store *st, const char *path)
{
	json_t *list = json_array();
	int h = open_history(st, path, false), n;
	uint64_t *v;

	if (h < 0 || !list)
		return list;
	n = list_versions(h, &v);
	/* Newest first, as a log reads. */
	for (int i = n - 1; i >= 0; i--) {
		json_t *o = describe(h, v[i]);

		if (o)
			json_array_append_new(list, o);
	}
	free(v);
	close(h);
	return list;
}

long long versions_retention(struct stash_store *st, const char *path, int fd)
{
	char buf[32], dir[PATH_MAX];
	ssize_t n = fgetxattr(fd, XATTR_VERSIONS, buf, sizeof(buf) - 1);
	char *slash;

	if (n > 0) {
		buf[n] = '\0';
		return strtoll(buf, NULL, 10);
	}
	/* A directory's own setting, else the nearest ancestor's, else the mount's. */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		dir[0] = '\0';
	n = store_nearest_default(st, dir, XATTR_VERSIONS, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		return strtoll(buf, NULL, 10);
	}
	return (long long)st->opts.versions;
}

/*
 * Version V of a stash that is at V now is the stash itself (nothing is
 * kept for it yet): point *@bpath, the kept version's path, at the stash.
 * A commit in between keeps V, so a caller that finds the stash moved on
 * calls this again and finds the kept file.
 */
int current_version(struct stash_store *st, const char *path, char **bpath)
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
 * Commit hooks: the file a commit replaces or an rm removes is kept as
 * NAME@V before the rename or unlink (an rm can be undone by cp); an
 * expiry takes the history with it, the owner's retention promise.
 */
static int versions_commit_prepare(struct commit *c, void **state)
{
	struct stat sb;

	(void)state;
	if (c->oldfd < 0 || c->op == COMMIT_EXPIRE ||
	    strncmp(c->path, STASH_STREAMS_DIR "/", strlen(STASH_STREAMS_DIR) + 1) == 0)
		return 0;
	/* An exchange replaces nothing: both files live on. */
	if (c->op == COMMIT_RENAME &&
	    (c->from_kind != STASH_KIND_STASH || (c->flags & RENAME_EXCHANGE)))
		return 0;
	if ((c->op == COMMIT_DELETE || c->op == COMMIT_RENAME) &&
	    (fstat(c->oldfd, &sb) < 0 || !S_ISREG(sb.st_mode)))
		return 0;
	versions_keep(c->st, c->path, c->dirfd, c->leaf, c->oldfd, c->old_version);
	return 0;
}

/*
 * After a rename the histories follow the stashes: a stash's to its new
 * name (unless the name it replaced has one), a directory's all those of
 * the stashes under it; an exchange of two directories swaps theirs.
 */
static void rename_histories(struct commit *c)
{
	char a[PATH_MAX], b[PATH_MAX];

	if (c->from_kind != STASH_KIND_STASH)
		return;
	if (!(c->flags & RENAME_EXCHANGE)) {
		/* A directory's stashes are not the stash once named @c->path. */
		if (c->srcfd >= 0)
			versions_move(c->st, c->from, c->path);
		else
			move_history(c->st, c->from, c->path);
		return;
	}
	if (c->srcfd >= 0 ||
	    snprintf(a, sizeof(a), "%s/%s", VERSIONS_DIR, c->from) >= (int)sizeof(a) ||
	    snprintf(b, sizeof(b), "%s/%s", VERSIONS_DIR, c->path) >= (int)sizeof(b))
		return;
	if (renameat2(c->st->root_fd, a, c->st->root_fd, b, RENAME_EXCHANGE) < 0 && errno == ENOENT) {
		/* One side has no history: the other's moves. */
		if (faccessat(c->st->root_fd, a, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			versions_move(c->st, c->from, c->path);
		else
			versions_move(c->st, c->path, c->from);
	}
}

static void versions_commit_published(struct commit *c, void *state)
{
	(void)state;
	if (c->op == COMMIT_EXPIRE)
		versions_drop(c->st, c->path);
	if (c->op == COMMIT_RENAME)
		rename_histories(c);
}

const struct commit_hook versions_commit_hook = {
	.prepare = versions_commit_prepare,
	.published = versions_commit_published,
};
