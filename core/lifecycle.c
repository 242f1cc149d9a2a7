// SPDX-License-Identifier: MIT
/*
 * lifecycle.c - persistence and expiry of objects (DESIGN 2.5).
 *
 * Ephemeral objects (user.stash.persistent=0) carry the id of the daemon
 * instance that owns them in user.stash.session.  They are visible while
 * that instance lives (it holds an OFD lock on .stashfs/tmp/<id>.lock) and
 * are treated as absent the moment it is gone, so nothing ephemeral comes
 * back after a crash, even before the sweeper has removed it.  A clean stop
 * removes this instance's ephemeral objects.
 *
 * Objects with user.stash.ttl expire ttl seconds after their last change,
 * which is the backing file's ctime (every commit, rename and metadata
 * change moves it; users cannot set it).  Lookups treat an expired object
 * as absent at once; a queue ordered by deadline lets the sweeper remove
 * it, append an `expire` record to its linked streams and tell the caller
 * (the daemon invalidates the kernel's entry).  A background scan at start
 * finds what expired, or was orphaned, while no daemon was running.
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
#include "commit.h"
#include "lifecycle.h"
#include "locks.h"
#include "reap.h"
#include "stream.h"
#include "store_priv.h"
#include "versions.h"

#define LIVENESS_CACHE 16
#define LIVENESS_SECONDS 2

/*
 * A path the deadline queue or the ephemeral list holds: one per path
 * however often it is committed (a stash committed every second with a
 * day's ttl would otherwise queue 86,400 deadlines and copies of its name).
 */
struct queued {
	struct queued *next;    /* in lifecycle.byname */
	char *path;
	int64_t when;           /* earliest deadline queued for it, 0 = none known */
	unsigned refs;          /* deadlines in the heap */
	bool eph;               /* in lifecycle.ephemeral */
};

struct deadline {
	int64_t when;           /* epoch milliseconds */
	struct queued *q;
};

struct instance_state {
	char id[64];
	bool alive;
	time_t checked;
};

struct lifecycle {
	pthread_mutex_t lock;
	struct deadline *heap;
	size_t n, cap;
	struct queued **byname; /* hash of every struct queued */
	size_t nq, nbuckets;
	struct queued **ephemeral;      /* what this instance made ephemeral, in order */
	size_t neph, capeph;
	struct instance_state seen[LIVENESS_CACHE];
	unsigned nseen;
	atomic_bool any;        /* some object may have a ttl or be ephemeral */
};

int life_init(struct stash_store *st)
{
	st->life = calloc(1, sizeof(*st->life));
	if (!st->life)
		return -ENOMEM;
	pthread_mutex_init(&st->life->lock, NULL);
	/* Until the first scan says otherwise, anything may expire. */
	atomic_store(&st->life->any, true);
	return 0;
}

void life_destroy(struct stash_store *st)
{
	struct lifecycle *l = st->life;

	if (!l)
		return;
	for (size_t b = 0; b < l->nbuckets; b++) {
		struct queued *q, *next;

		for (q = l->byname[b]; q; q = next) {
			next = q->next;
			free(q->path);
			free(q);
		}
	}
	free(l->byname);
	free(l->heap);
	free(l->ephemeral);
	pthread_mutex_destroy(&l->lock);
	free(l);
	st->life = NULL;
}

void life_counts(struct stash_store *st, size_t *deadlines, size_t *ephemeral)
{
	pthread_mutex_lock(&st->life->lock);
	*deadlines = st->life->n;
	*ephemeral = st->life->neph;
	pthread_mutex_unlock(&st->life->lock);
}

bool life_any(struct stash_store *st)
{
	return atomic_load(&st->life->any);
}

/* ---- reading the lifecycle of one object ------------------------------ */

/* Is instance @id alive (its lock held)?  Cached for a moment. */
static bool instance_alive(struct stash_store *st, const char *id)
{
	struct lifecycle *l = st->life;
	time_t now = time(NULL);
	char lock[128];
	bool alive = false;
	int fd;
	unsigned slot;

	if (strcmp(id, st->instance) == 0)
		return true;
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < l->nseen; i++) {
		if (strcmp(l->seen[i].id, id) == 0 && now - l->seen[i].checked < LIVENESS_SECONDS) {
			alive = l->seen[i].alive;
			pthread_mutex_unlock(&l->lock);
			return alive;
		}
	}
	pthread_mutex_unlock(&l->lock);

	snprintf(lock, sizeof(lock), "%s" BACKING_LOCK_SUFFIX, id);
	fd = store_open_beneath(st, BACKING_TMP_DIR, O_PATH | O_DIRECTORY, 0);
	if (fd >= 0) {
		alive = backing_instance_alive(fd, lock);
		close(fd);
	}
	pthread_mutex_lock(&l->lock);
	slot = l->nseen < LIVENESS_CACHE ? l->nseen++ : (unsigned)(now % LIVENESS_CACHE);
	snprintf(l->seen[slot].id, sizeof(l->seen[slot].id), "%s", id);
	l->seen[slot].alive = alive;
	l->seen[slot].checked = now;
	pthread_mutex_unlock(&l->lock);
	return alive;
}

/* An ephemeral object whose owner is gone. */
static bool orphaned(struct stash_store *st, int fd)
{
	char id[64];
	ssize_t n;

	if (backing_xattr_number(fd, XATTR_PERSISTENT, 1) != 0)
		return false;
	n = fgetxattr(fd, XATTR_SESSION, id, sizeof(id) - 1);
	if (n <= 0)
		return true;
	id[n] = '\0';
	return !instance_alive(st, id);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t life_deadline(int fd, const struct stat *sb)
{
	long long ttl = backing_xattr_number(fd, XATTR_TTL, 0);

	return ttl > 0 ? (int64_t)sb->st_ctim.tv_sec * 1000 + sb->st_ctim.tv_nsec / 1000000 +
			 ttl * 1000 : 0;
}

int life_check(struct stash_store *st, int fd, const struct stat *sb, time_t *expires)
{
	int64_t when;

	if (expires)
		*expires = 0;
	if (!life_any(st) || S_ISDIR(sb->st_mode))
		return 0;
	if (orphaned(st, fd))
		return -ENOENT;
	when = life_deadline(fd, sb);
	if (when && when <= now_ms())
		return -ENOENT;
	if (expires)
		*expires = (time_t)((when + 999) / 1000);
	return 0;
}

/* ---- the deadline queue (a binary heap) -------------------------------- */

static size_t queued_bucket(const struct lifecycle *l, const char *path)
{
	uint64_t h = 1469598103934665603ull;

	for (; *path; path++)
		h = (h ^ (unsigned char)*path) * 1099511628211ull;
	return (size_t)(h % l->nbuckets);
}

/* Rehash every entry into @n buckets (after growth, or a rename of their paths). */
static void queued_rehash(struct lifecycle *l, size_t n)
{
	struct queued **old = l->byname, **fresh = calloc(n, sizeof(*fresh));
	size_t oldn = l->nbuckets;

	if (!fresh)
		return;         /* longer chains, or names hashed under their old paths */
	l->byname = fresh;
	l->nbuckets = n;
	for (size_t b = 0; b < oldn; b++) {
		struct queued *q, *next;

		for (q = old[b]; q; q = next) {
			size_t nb = queued_bucket(l, q->path);

			next = q->next;
			q->next = fresh[nb];
			fresh[nb] = q;
		}
	}
	free(old);
}

/* The entry of @path, made if missing; NULL out of memory. */
static struct queued *queued_get(struct lifecycle *l, const char *path)
{
	struct queued *q;
	size_t b;

	if (l->nq >= l->nbuckets)
		queued_rehash(l, l->nbuckets ? l->nbuckets * 2 : 64);
	if (!l->nbuckets)
		return NULL;
	b = queued_bucket(l, path);
	for (q = l->byname[b]; q; q = q->next)
		if (strcmp(q->path, path) == 0)
			return q;
	q = calloc(1, sizeof(*q));
	if (!q || !(q->path = strdup(path))) {
		free(q);
		return NULL;
	}
	q->next = l->byname[b];
	l->byname[b] = q;
	l->nq++;
	return q;
}

/* Free @q once neither the heap nor the ephemeral list holds it. */
static void queued_put(struct lifecycle *l, struct queued *q)
{
	struct queued **pp;

	if (q->refs || q->eph)
		return;
	pp = &l->byname[queued_bucket(l, q->path)];
	while (*pp && *pp != q)
		pp = &(*pp)->next;
	/* Hashed under an older path if a rehash after a rename failed. */
	for (size_t b = 0; !*pp && b < l->nbuckets; b++)
		for (pp = &l->byname[b]; *pp && *pp != q; pp = &(*pp)->next)
			;
	if (*pp)
		*pp = q->next;
	l->nq--;
	free(q->path);
	free(q);
}

static void heap_push(struct lifecycle *l, int64_t when, struct queued *q)
{
	size_t i;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct deadline *h = realloc(l->heap, cap * sizeof(*h));

		if (!h)
			return;
		l->heap = h;
		l->cap = cap;
	}
	i = l->n++;
	l->heap[i].when = when;
	l->heap[i].q = q;
	q->refs++;
	if (!q->when || when < q->when)
		q->when = when;
	while (i > 0 && l->heap[(i - 1) / 2].when > l->heap[i].when) {
		struct deadline t = l->heap[i];

		l->heap[i] = l->heap[(i - 1) / 2];
		l->heap[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static struct deadline heap_pop(struct lifecycle *l)
{
	struct deadline top = l->heap[0];
	size_t i = 0;

	l->heap[0] = l->heap[--l->n];
	for (;;) {
		size_t a = 2 * i + 1, b = a + 1, m = i;

		if (a < l->n && l->heap[a].when < l->heap[m].when)
			m = a;
		if (b < l->n && l->heap[b].when < l->heap[m].when)
			m = b;
		if (m == i)
			break;
		struct deadline t = l->heap[i];

		l->heap[i] = l->heap[m];
		l->heap[m] = t;
		i = m;
	}
	return top;
}

/*
 * Queue @path's deadline @when unless one no later is queued already: that
 * one finds the later deadline when it comes and queues it then.  Caller
 * holds l->lock.
 */
static void queue_deadline(struct lifecycle *l, const char *path, int64_t when)
{
	struct queued *q = queued_get(l, path);

	if (q && (!q->when || when < q->when))
		heap_push(l, when, q);
	else if (q)
		queued_put(l, q);
}

void life_note(struct stash_store *st, const char *path, int fd)
{
	struct lifecycle *l = st->life;
	struct queued *q;
	struct stat sb;
	int64_t when;
	bool eph;

	if (fstat(fd, &sb) < 0)
		return;
	/* A directory has no deadline; an ephemeral one goes at the stop. */
	when = S_ISDIR(sb.st_mode) ? 0 : life_deadline(fd, &sb);
	eph = backing_xattr_number(fd, XATTR_PERSISTENT, 1) == 0;
	if (!when && !eph)
		return;
	atomic_store(&l->any, true);
	pthread_mutex_lock(&l->lock);
	if (when)
		queue_deadline(l, path, when);
	q = eph ? queued_get(l, path) : NULL;
	if (q && !q->eph && l->neph == l->capeph) {
		size_t cap = l->capeph ? l->capeph * 2 : 64;
		struct queued **e = realloc(l->ephemeral, cap * sizeof(*e));

		if (e) {
			l->ephemeral = e;
			l->capeph = cap;
		}
	}
	if (q && !q->eph && l->neph < l->capeph) {
		l->ephemeral[l->neph++] = q;
		q->eph = true;
	}
	if (q)
		queued_put(l, q);
	pthread_mutex_unlock(&l->lock);
}

/*
 * Expire @path if its deadline has passed (under its name lock): an
 * `expire` record for its linked streams, then the backing file goes.
 * Returns 1 if expired, 0 if not (yet), < 0 on error.  With @orphans, an
 * ephemeral object of a dead instance is removed too (without a record: it
 * ended with its daemon).
 */
static int expire_one(struct stash_store *st, const char *path, bool orphans, int64_t *later)
{
	unsigned s = store_lock_name(st, path);
	struct stat sb;
	int64_t when;
	int fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);
	int r = 0;
	bool removed = false;

	*later = 0;
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		goto out;
	if (orphans && orphaned(st, fd)) {
		r = store_unlink_path(st, path);
		versions_drop(st, path);
		removed = r == 0;
		goto out;
	}
	when = life_deadline(fd, &sb);
	if (!when || when > now_ms()) {
		*later = when;
		goto out;
	}
	{
		/* Through the commit path: audited, and the history goes too. */
		struct commit c = { .op = COMMIT_EXPIRE, .st = st, .path = path, .curfd = fd };

		r = commit_remove(&c);
		removed = r == 0;
		r = removed ? 1 : r;
	}
out:
	store_unlock_name(st, s);
	/*
	 * The last close of a removed file frees its blocks, which on a disk
	 * mounted with discard waits for the device (about a millisecond a
	 * file): the reaper does that while this thread goes on to the next.
	 */
	if (removed)
		store_close_paced(st, fd);
	else if (fd >= 0)
		close(fd);
	return r;
}

int stash_store_sweep(struct stash_store *st, stash_expire_cb cb, void *ctx, int64_t *next)
{
	struct lifecycle *l = st->life;
	int64_t now = now_ms();
	int count = 0;

	*next = 0;
	for (;;) {
		struct deadline d;
		int64_t later;
		char *path;
		int r;

		pthread_mutex_lock(&l->lock);
		if (l->n == 0 || l->heap[0].when > now) {
			*next = l->n ? l->heap[0].when : 0;
			pthread_mutex_unlock(&l->lock);
			break;
		}
		/* Popped, but held (refs) until done: a directory moved meanwhile rekeys it. */
		d = heap_pop(l);
		if (d.q->when == d.when)
			d.q->when = 0;  /* its later deadlines, if any, are not known here */
		path = strdup(d.q->path);
		pthread_mutex_unlock(&l->lock);
		r = path ? expire_one(st, path, false, &later) : -ENOMEM;
		if (r == 1) {
			count++;
			if (cb)
				cb(ctx, path);
		}
		pthread_mutex_lock(&l->lock);
		if (r != 1 && path && strcmp(path, d.q->path) != 0)
			heap_push(l, d.when, d.q);      /* again, at its new path */
		else if (r != 1 && later)
			queue_deadline(l, d.q->path, later);    /* changed since: it slid */
		d.q->refs--;
		queued_put(l, d.q);
		pthread_mutex_unlock(&l->lock);
		free(path);
	}
	return count;
}

/* An ephemeral directory carries its owner's mark; one without is only a default. */
static bool ephemeral_dir(int fd)
{
	return backing_xattr_number(fd, XATTR_PERSISTENT, 1) == 0 &&
	       fgetxattr(fd, XATTR_SESSION, NULL, 0) > 0;
}

/*
 * After the scan of its content: the ephemeral directory @name (at @path)
 * of a dead instance goes, when nothing persistent is left inside it.
 */
static void remove_orphan_dir(struct stash_store *st, int parent, const char *name,
			      const char *path, bool *found)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return;
	if (ephemeral_dir(fd)) {
		*found = true;
		if (orphaned(st, fd))
			store_rmdir_path(st, path);
		else
			life_note(st, path, fd);
	}
	close(fd);
}

/* Walk @dir (a path, "" = root) for the start-up scan. */
static void scan_dir(struct stash_store *st, const char *dir, stash_expire_cb cb, void *ctx,
		     int depth, bool *found)
{
	int fd = store_open_beneath(st, dir, O_RDONLY | O_DIRECTORY, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		char path[PATH_MAX];
		int64_t later;
		int ofd;
		struct stat sb;

		if (e->d_name[0] == '.' && (!e->d_name[1] || strcmp(e->d_name, "..") == 0 ||
		    strncmp(e->d_name, STASH_INTERNAL_DIR, strlen(STASH_INTERNAL_DIR)) == 0))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "", e->d_name) >=
		    sizeof(path))
			continue;
		if (e->d_type == DT_DIR) {
			if (depth < 64)
				scan_dir(st, path, cb, ctx, depth + 1, found);
			remove_orphan_dir(st, dirfd(d), e->d_name, path, found);
			continue;
		}
		if (e->d_type != DT_REG)
			continue;
		ofd = openat(dirfd(d), e->d_name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (ofd < 0)
			continue;
		if (fstat(ofd, &sb) == 0 && (life_deadline(ofd, &sb) ||
		    backing_xattr_number(ofd, XATTR_PERSISTENT, 1) == 0)) {
			*found = true;
			close(ofd);
			if (expire_one(st, path, true, &later) == 1) {
				if (cb)
					cb(ctx, path);
			} else {
				ofd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);
				if (ofd >= 0) {
					life_note(st, path, ofd);
					close(ofd);
				}
			}
			continue;
		}
		close(ofd);
	}
	closedir(d);
}

int stash_store_scan(struct stash_store *st, stash_expire_cb cb, void *ctx)
{
	bool found = false;

	scan_dir(st, "", cb, ctx, 0, &found);
	/*
	 * Nothing with a lifecycle anywhere: lookups can skip the xattrs.  Not
	 * when other daemons share the directory: they may set a ttl any time.
	 */
	if (!found && st->life->n == 0 && st->life->neph == 0 && !st->opts.shared)
		atomic_store(&st->life->any, false);
	return 0;
}

void stash_store_shutdown(struct stash_store *st)
{
	struct lifecycle *l = st->life;

	/* Ephemeral objects end with the daemon that owns them (directories below). */
	for (size_t i = 0; i < l->neph; i++) {
		unsigned s = store_lock_name(st, l->ephemeral[i]->path);
		int fd = store_open_beneath(st, l->ephemeral[i]->path, O_RDONLY | O_NONBLOCK, 0);
		char id[64];
		ssize_t n = fd >= 0 ? fgetxattr(fd, XATTR_SESSION, id, sizeof(id) - 1) : -1;

		if (n > 0 && backing_xattr_number(fd, XATTR_PERSISTENT, 1) == 0) {
			id[n] = '\0';
			if (strcmp(id, st->instance) == 0) {
				store_unlink_path(st, l->ephemeral[i]->path);
				versions_drop(st, l->ephemeral[i]->path);
			}
		}
		if (fd >= 0)
			close(fd);
		store_unlock_name(st, s);
	}
	/*
	 * Then the directories, the last made first (they nest that way), each
	 * only when nothing persistent is left in it.
	 */
	for (size_t i = l->neph; i-- > 0;) {
		int fd = store_open_beneath(st, l->ephemeral[i]->path, O_RDONLY | O_DIRECTORY, 0);
		char id[64];
		ssize_t n = fd >= 0 && ephemeral_dir(fd) ?
			fgetxattr(fd, XATTR_SESSION, id, sizeof(id) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			id[n] = '\0';
			if (strcmp(id, st->instance) == 0)
				store_rmdir_path(st, l->ephemeral[i]->path);
		}
	}
}

/* ---- the xattr interface ----------------------------------------------- */

static bool decimal(const char *v, size_t n, unsigned long long max)
{
	unsigned long long x = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (unsigned)(v[i] - '0');
	}
	return x <= max;
}

int life_check_xattr(const char *name, const char *value, size_t size, struct stash_error *err)
{
	if (size > STASH_XATTR_MAX)
		return stash_error_set(err, EINVAL, "%s: value too long (%zu bytes, at most %d)",
				       name, size, STASH_XATTR_MAX);
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
		return 0;
	if (strcmp(name, XATTR_PERSISTENT) == 0) {
		if (size != 1 || (value[0] != '0' && value[0] != '1'))
			return stash_error_set(err, EINVAL, "%s must be 0 or 1", name);
		return 0;
	}
	if (strcmp(name, XATTR_TTL) == 0) {
		if (!decimal(value, size, STASH_TTL_MAX))
			return stash_error_set(err, EINVAL,
				"%s must be a number of seconds (0 = never expires)", name);
		return 0;
	}
	if (strcmp(name, XATTR_VERSIONS) == 0) {
		if (!decimal(value, size, STASH_VERSIONS_MAX))
			return stash_error_set(err, EINVAL,
				"%s must be how many past versions to keep, 0..%d", name,
				STASH_VERSIONS_MAX);
		return 0;
	}
	if (strcmp(name, XATTR_SCHEMA) == 0 || strcmp(name, XATTR_LINKED) == 0)
		return 0;
	if (strcmp(name, XATTR_VERSION) == 0 || strcmp(name, XATTR_SHA256) == 0 ||
	    strcmp(name, XATTR_EXPIRES) == 0 || strcmp(name, XATTR_ERROR) == 0 ||
	    strcmp(name, XATTR_SEQ) == 0 || strcmp(name, XATTR_SESSION) == 0)
		return stash_error_set(err, EPERM, "%s is read-only", name);
	return stash_error_set(err, EINVAL, "unknown stashfs attribute %s", name);
}

int life_virtual_xattr(int fd, const struct stat *sb, const char *name, char *buf, size_t size)
{
	char text[72];
	size_t len;

	if (strcmp(name, XATTR_SHA256) == 0) {
		if (!S_ISREG(sb->st_mode) || stash_sha256_fd(fd, text) < 0)
			return -ENODATA;
	} else if (strcmp(name, XATTR_EXPIRES) == 0) {
		int64_t ms = S_ISREG(sb->st_mode) ? life_deadline(fd, sb) : 0;
		struct timespec when = { .tv_sec = (time_t)(ms / 1000) };

		if (!ms)
			return -ENODATA;
		backing_iso_time(&when, false, text);
	} else {
		return 1;       /* not virtual */
	}
	len = strlen(text);
	if (size == 0)
		return (int)len;
	if (size < len)
		return -ERANGE;
	memcpy(buf, text, len);
	return (int)len;
}

bool life_hidden_xattr(const char *name)
{
	return strcmp(name, XATTR_SESSION) == 0;
}

/* Commit hooks: an expired or orphaned file at the name counts as none. */
static bool life_commit_gone(struct commit *c, int fd, const struct stat *sb)
{
	return life_check(c->st, fd, sb, NULL) < 0;
}

/* @p, or a path below it, if it is @from: the same under @to, in @out. */
static bool moved(const char *p, const char *from, const char *to, char *out, size_t size)
{
	size_t n = strlen(from);

	if (strncmp(p, from, n) != 0 || (p[n] != '/' && p[n] != '\0'))
		return false;
	return (size_t)snprintf(out, size, "%s%s", to, p + n) < size;
}

static void rekey(char **slot, const char *from, const char *to, bool exchange)
{
	char path[PATH_MAX];
	char *dup;

	if (!moved(*slot, from, to, path, sizeof(path)) &&
	    !(exchange && moved(*slot, to, from, path, sizeof(path))))
		return;
	dup = strdup(path);
	if (dup) {
		free(*slot);
		*slot = dup;
	}
}

/*
 * A directory moved (or two names swapped): what was queued below it
 * follows, keeping its deadline (a rename moves no ctime below it).  The
 * queue is walked whole, once per such rename.
 */
static void life_moved(struct stash_store *st, const char *from, const char *to, bool exchange)
{
	struct lifecycle *l = st->life;

	pthread_mutex_lock(&l->lock);
	for (size_t b = 0; b < l->nbuckets; b++)
		for (struct queued *q = l->byname[b]; q; q = q->next)
			rekey(&q->path, from, to, exchange);
	queued_rehash(l, l->nbuckets);
	pthread_mutex_unlock(&l->lock);
}

/*
 * A committed stash's deadline is queued, an ephemeral one remembered; a
 * renamed stash is queued under its new name (the rename moved its ctime,
 * so its deadline; what stays queued under the old name finds nothing).
 */
static void life_commit_published(struct commit *c, void *state)
{
	(void)state;
	if (c->op != COMMIT_RENAME) {
		if (c->tmpfd >= 0)
			life_note(c->st, c->path, c->tmpfd);
	} else if (life_any(c->st)) {
		if (c->srcfd >= 0 && !(c->flags & RENAME_EXCHANGE))
			life_note(c->st, c->path, c->srcfd);
		else
			life_moved(c->st, c->from, c->path, c->flags & RENAME_EXCHANGE);
	}
}

const struct commit_hook life_commit_hook = {
	.gone = life_commit_gone,
	.published = life_commit_published,
};
