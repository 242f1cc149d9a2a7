// SPDX-License-Identifier: MIT
/*
 * ops.c - the FUSE low-level operations: each maps the kernel's inode
 * numbers to a store path, makes one call into core and replies.
 *
 * Caching: stashes and directories get long entry/attr timeouts; every
 * commit that goes through this daemon invalidates the attributes of the
 * inode it changed (also when it changed through NAME.json).  While a file
 * is open for writing its attributes are not cached: a writer sees its own
 * size, others the committed one.  A new stash's entry is never cached
 * before its first commit: its name exists for nobody until then.  Views
 * get no entry or attribute caching.  File data goes around the page cache (see
 * cache_open), so a snapshot per open holds whatever the kernel caches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "stashfs/waits.h"

#include "backing.h"
#include "fs.h"

/* Reads up to this size are answered from the stack. */
#define SMALL_READ (32 * 1024)

/* One open file: the core handle and the node it belongs to. */
struct fh {
	struct stash_file *f;
	struct node *node;
	struct fh *next;        /* in fs->fh_hash */
	unsigned refs;          /* the kernel's + borrowers' (see fh_get), under fs->lock */
	bool writer;            /* opened for writing: may commit */
	bool closed;            /* its writer closed a descriptor on it, under fs->lock */
	uint64_t owner;         /* fd table (lock owner) of the last write, 0 = unknown */
	pid_t wpid;             /* thread of the last write, 0 = none */
	struct stash_caller opener;     /* for commits at release, which has no caller */
	struct kept_xattr *kept;        /* set before the first commit, under fs->lock */
};

/*
 * An xattr set through the descriptor of a new stash's writer before its
 * first commit (cp -a and cp --preserve=xattr set them on the file they
 * are still writing).  The name has no backing file yet: the value waits on
 * the handle and goes to the stash right after its first commit.
 */
struct kept_xattr {
	struct kept_xattr *next;
	struct stash_caller who;
	char *name;
	size_t size;
	char value[];
};

static void kept_free(struct kept_xattr *k)
{
	while (k) {
		struct kept_xattr *next = k->next;

		free(k->name);
		free(k);
		k = next;
	}
}

/* The open files of a node are in fs->fh_hash, by the node's address. */
static struct fh *fh_from(struct fh *h, const struct node *n)
{
	while (h && h->node != n)
		h = h->next;
	return h;
}

#define node_for_each_fh(fs, n, h) \
	for (h = fh_from((fs)->fh_hash[hash_ptr(FH_BUCKETS, n)], n); h; h = fh_from(h->next, n))

static void fh_free(struct fh *h)
{
	stash_file_close(h->f);
	kept_free(h->kept);
	free(h);
}

/* An open directory, listed so that one the kernel never released is closed at exit. */
struct dir_handle {
	struct stash_dir *d;
	fuse_ino_t ino;
	struct stat sb;         /* the directory at opendir, for fstat once it is removed */
	struct dir_handle *prev, *next;
};

static struct stashfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void caller_of(fuse_req_t req, struct stash_caller *who)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	who->uid = ctx->uid;
	who->gid = ctx->gid;
	who->pid = ctx->pid;
	who->umask = ctx->umask;
	who->ngroups = 0;
}

/*
 * The caller with its supplementary groups, for the permission checks of
 * links and bindings.  Only there: libfuse reads them from /proc.
 */
static void caller_with_groups(fuse_req_t req, struct stash_caller *who)
{
	int n;

	caller_of(req, who);
	n = fuse_req_getgroups(req, STASH_CALLER_GROUPS, who->groups);
	who->ngroups = n < 0 ? 0 : n > STASH_CALLER_GROUPS ? STASH_CALLER_GROUPS : n;
}

/* ---- node table ------------------------------------------------------- */

#define NODE_BUCKETS_MIN ((size_t)1 << 16)
#define NODE_TRIM_BATCH 4096
#define FH_BUCKETS 4096

/*
 * A node's inode number is its address (the root's is FUSE_ROOT_ID): no
 * table from numbers to nodes, and the kernel sends only numbers of nodes
 * it holds a lookup on, which live until it forgets them.
 */
static fuse_ino_t node_ino(struct stashfs *fs, const struct node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* Caller holds fs->lock. */
static struct node *node_by_ino(struct stashfs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root : (struct node *)(uintptr_t)ino;
}

/* The name of a named node, in the node or out of it (see node_move). */
static const char *node_name(const struct node *n)
{
	char *out;

	if (!n->name_out)
		return n->name;
	memcpy(&out, n->name, sizeof(out));
	return out;
}

/* For log lines: the name of @n, "?" once it has none. */
static const char *node_label(const struct node *n)
{
	return n->named ? node_name(n) : "?";
}

static size_t hash_name(struct stashfs *fs, const struct node *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h % fs->nbuckets);
}

static size_t hash_ptr(size_t nbuckets, const void *p)
{
	return (size_t)((uint64_t)(uintptr_t)p * 11400714819323198485ull >> 20) % nbuckets;
}

/*
 * Every node but the root is in the name hash: by its parent and name, or,
 * once unnamed (unlinked while the kernel or an open file holds it), by its
 * address, where no lookup finds it and the table still lists it.
 */
static size_t node_bucket(struct stashfs *fs, const struct node *n)
{
	return n->named ? hash_name(fs, n->parent, node_name(n)) : hash_ptr(fs->nbuckets, n);
}

static void node_hash(struct stashfs *fs, struct node *n)
{
	size_t b = node_bucket(fs, n);

	n->name_next = fs->name_hash[b];
	fs->name_hash[b] = n;
}

static void node_unhash(struct stashfs *fs, struct node *n)
{
	struct node **pp = &fs->name_hash[node_bucket(fs, n)];

	while (*pp && *pp != n)
		pp = &(*pp)->name_next;
	if (*pp)
		*pp = n->name_next;
	n->name_next = NULL;
}

/*
 * The hash follows the number of nodes: doubled once there are more nodes
 * than buckets, so a lookup stays one or two steps whatever the number of
 * stashes the kernel holds; halved once a quarter of the buckets would do.
 * Holds fs->lock.  Out of memory, the table stays as it is (longer chains,
 * nothing lost).
 */
static void nodes_resize(struct stashfs *fs)
{
	struct node **old = fs->name_hash;
	size_t oldn = fs->nbuckets, newn;

	if (fs->nnodes > oldn)
		newn = oldn * 2;
	else if (oldn > NODE_BUCKETS_MIN && fs->nnodes < oldn / 4)
		newn = oldn / 2;
	else
		return;
	fs->name_hash = calloc(newn, sizeof(*fs->name_hash));
	if (!fs->name_hash) {
		fs->name_hash = old;
		return;
	}
	fs->nbuckets = newn;
	for (size_t i = 0; i < oldn; i++) {
		for (struct node *n = old[i], *next; n; n = next) {
			next = n->name_next;
			node_hash(fs, n);
		}
	}
	free(old);
}

/*
 * glibc keeps small freed blocks for reuse, and pages where one node is
 * left stay whole: once many nodes went (the kernel forgot them), the
 * sweeper hands the free pages back to the system, so a million stashes
 * the kernel has forgotten cost nothing: after 4,096 went, or a sweep after
 * the last went.  Not under fs->lock.
 */
static void nodes_trim(struct stashfs *fs)
{
	bool trim;

	pthread_mutex_lock(&fs->lock);
	/* Many gone, or the last few once the forgetting has stopped. */
	trim = fs->nodes_freed >= NODE_TRIM_BATCH ||
	       (fs->nodes_freed && fs->nodes_freed == fs->nodes_freed_seen);
	fs->nodes_freed_seen = trim ? 0 : fs->nodes_freed;
	if (trim)
		fs->nodes_freed = 0;
	pthread_mutex_unlock(&fs->lock);
	if (trim)
		malloc_trim(0);
}

/*
 * A node with @name in it: room for a pointer at least, so that a longer
 * name it takes later (node_move) fits there as a pointer.
 */
static struct node *node_alloc(const char *name)
{
	size_t len = strlen(name) + 1;
	struct node *n = calloc(1, offsetof(struct node, name) +
				   (len > sizeof(char *) ? len : sizeof(char *)));

	if (n) {
		memcpy(n->name, name, len);
		n->named = true;
	}
	return n;
}

int stashfs_nodes_init(struct stashfs *fs)
{
	fs->nbuckets = NODE_BUCKETS_MIN;
	fs->nnodes = 1;
	fs->name_hash = calloc(fs->nbuckets, sizeof(*fs->name_hash));
	fs->fh_hash = calloc(FH_BUCKETS, sizeof(*fs->fh_hash));
	fs->root = node_alloc("");
	if (!fs->name_hash || !fs->fh_hash || !fs->root)
		return -ENOMEM;
	pthread_mutex_init(&fs->lock, NULL);
	fs->root->nlookup = 1;
	fs->root->is_dir = true;
	fs->root->kind = STASH_KIND_DIR;
	return 0;
}

/* Take @n's name away (an out-of-line one is freed). */
static void node_drop_name(struct node *n)
{
	if (n->name_out) {
		free((char *)node_name(n));
		n->name_out = false;
	}
	n->named = false;
}

static void node_free(struct node *n)
{
	node_drop_name(n);
	free(n);
}

void stashfs_nodes_destroy(struct stashfs *fs)
{
	/*
	 * A release the kernel had not sent when the session ended (an
	 * unmount racing the last close): its file is closed here, nothing
	 * more is committed.
	 */
	for (size_t b = 0; fs->fh_hash && b < FH_BUCKETS; b++) {
		for (struct fh *h = fs->fh_hash[b], *next; h; h = next) {
			next = h->next;
			fh_free(h);
		}
	}
	for (size_t b = 0; fs->name_hash && b < fs->nbuckets; b++) {
		for (struct node *n = fs->name_hash[b], *next; n; n = next) {
			next = n->name_next;
			node_free(n);
		}
	}
	for (struct dir_handle *dh = fs->dirs, *dn; dh; dh = dn) {
		dn = dh->next;
		stash_dir_close(dh->d);
		free(dh);
	}
	fs->dirs = NULL;
	free(fs->root);
	free(fs->name_hash);
	free(fs->fh_hash);
	pthread_mutex_destroy(&fs->lock);
}

/* Caller holds fs->lock. */
static struct node *node_by_name(struct stashfs *fs, struct node *parent, const char *name)
{
	struct node *n = fs->name_hash[hash_name(fs, parent, name)];

	while (n && !(n->parent == parent && n->named && strcmp(node_name(n), name) == 0))
		n = n->name_next;
	return n;
}

/* Take @n's name away: it now belongs to nobody. */
static void node_unname(struct stashfs *fs, struct node *n)
{
	if (!n->named || n == fs->root)
		return;
	node_unhash(fs, n);
	node_drop_name(n);
	node_hash(fs, n);
}

/*
 * Give the unnamed node @n the name @name in @parent.  Holds fs->lock.  A
 * name longer than the node's room goes out of it (the node can't move:
 * its address is its inode number).  Out of memory, it stays unnamed:
 * lookups of it fail with ENOENT.
 */
static void node_move(struct stashfs *fs, struct node *n, struct node *parent,
		      const char *name)
{
	size_t len = strlen(name) + 1;

	if (len <= malloc_usable_size(n) - offsetof(struct node, name)) {
		memcpy(n->name, name, len);
	} else {
		char *copy = strdup(name);

		if (!copy)
			return;
		memcpy(n->name, &copy, sizeof(copy));
		n->name_out = true;
	}
	node_unhash(fs, n);
	parent->refs++;
	n->parent->refs--;
	n->parent = parent;
	n->named = true;
	node_hash(fs, n);
}

/* Free @n and its now-unused ancestors.  Caller holds fs->lock. */
static void node_maybe_free(struct stashfs *fs, struct node *n)
{
	while (n && n != fs->root && n->nlookup == 0 && n->refs == 0) {
		struct node *parent = n->parent;

		node_unhash(fs, n);
		node_free(n);
		fs->nnodes--;
		fs->nodes_freed++;
		parent->refs--;
		n = parent;
	}
	nodes_resize(fs);
}

/* Find or make the node for @name in @parent; nlookup + 1.  Holds fs->lock. */
static struct node *node_get(struct stashfs *fs, struct node *parent, const char *name,
			     const struct stat *sb, int kind)
{
	struct node *n = node_by_name(fs, parent, name);

	if (n && n->is_dir != S_ISDIR(sb->st_mode)) {
		/* The name now stands for something else (changed behind us). */
		node_unname(fs, n);
		n = NULL;
	}
	if (!n) {
		n = node_alloc(name);
		if (!n)
			return NULL;
		/* Its address may have been a node's the kernel forgot. */
		n->generation = ++fs->generation;
		n->is_dir = S_ISDIR(sb->st_mode);
		n->kind = kind == STASH_KIND_META || !n->is_dir ? (enum stash_kind)kind : STASH_KIND_DIR;
		n->parent = parent;
		node_hash(fs, n);
		parent->refs++;
		fs->nnodes++;
		nodes_resize(fs);
	}
	/* A count past 32 bits pins the node: it is never freed. */
	if (n->nlookup != NODE_PINNED)
		n->nlookup++;
	return n;
}

/*
 * The store path of @n, joined with @name when given, into a new string
 * (*@out, the caller frees it).  Holds fs->lock.  -ENOENT if unlinked.  No
 * length limit: a path from the root may exceed PATH_MAX, core resolves it.
 */
static int node_path(struct stashfs *fs, const struct node *n, const char *name, char **out)
{
	size_t len = name ? strlen(name) : 0, at;
	const struct node *m;
	char *buf;

	for (m = n; m != fs->root; m = m->parent) {
		if (!m->named)
			return -ENOENT;
		len += strlen(node_name(m)) + (len ? 1 : 0);
	}
	buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	at = len;
	buf[at] = '\0';
	if (name) {
		at -= strlen(name);
		memcpy(buf + at, name, strlen(name));
	}
	for (m = n; m != fs->root; m = m->parent) {
		size_t l = strlen(node_name(m));

		if (at < len)
			buf[--at] = '/';
		at -= l;
		memcpy(buf + at, node_name(m), l);
	}
	*out = buf;
	return 0;
}

/* Path of inode @ino, optionally joined with @name, into a new string. */
static int ino_path(struct stashfs *fs, fuse_ino_t ino, const char *name, char **path,
		    struct node **out)
{
	struct node *n;
	int r;

	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, ino);
	r = n ? node_path(fs, n, name, path) : -ENOENT;
	if (out)
		*out = n;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static void path_free(char **path)
{
	free(*path);
}

/* A store path for the length of one operation, freed when it ends. */
#define REQ_PATH(v) char *v __attribute__((cleanup(path_free))) = NULL

/* ---- cache invalidation ----------------------------------------------- */

/*
 * After a merge through NAME.json the stash NAME changed behind the
 * kernel's back: drop its cached attributes and pages, or, if the kernel
 * does not know NAME yet, any negative entry for it.  The node is read
 * under the lock only: a forget may free it right after.
 */
static void view_target_changed(struct stashfs *fs, struct node *view)
{
	fuse_ino_t target = 0, parent = 0;
	char name[NAME_MAX + 1];

	pthread_mutex_lock(&fs->lock);
	if (view->named && view->parent) {
		/* NAME.json and NAME@V (a compare-and-swap) both change NAME. */
		const char *vname = node_name(view);
		size_t l = view->kind == STASH_KIND_VERSION ?
			(size_t)(strrchr(vname, '@') - vname) :
			strlen(vname) - strlen(STASH_VIEW_SUFFIX);
		struct node *n;

		snprintf(name, sizeof(name), "%.*s", (int)l, vname);
		n = node_by_name(fs, view->parent, name);
		target = n ? node_ino(fs, n) : 0;
		parent = node_ino(fs, view->parent);
	}
	pthread_mutex_unlock(&fs->lock);
	if (target)
		fuse_lowlevel_notify_inval_inode(fs->se, target, 0, 0);
	else if (parent)
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

/* ---- replies ---------------------------------------------------------- */

/*
 * How long the kernel may keep attributes.  Views and streams change behind
 * their inode (merges, audit records), metadata documents with every
 * setxattr: their attributes are never cached.  Their names may be: a
 * stale name leads to ENOENT at open or stat, as after a remote delete.
 */
static double timeout_for(struct stashfs *fs, int kind)
{
	/* NAME@next and a version still to come change size when the version comes. */
	return kind == STASH_KIND_VIEW || kind == STASH_KIND_STREAM || kind == STASH_KIND_META ||
		kind == STASH_KIND_VERSION ? 0.0 : fs->cfg.cache_timeout;
}

static double entry_timeout_for(struct stashfs *fs, int kind)
{
	return kind == STASH_KIND_META ? 0.0 : fs->cfg.cache_timeout;
}

static void fill_attr(struct stashfs *fs, struct stat *sb, const struct node *n)
{
	/* Containers whose uids differ from the host's see one owner and mode mask. */
	if (fs->cfg.uid >= 0)
		sb->st_uid = (uid_t)fs->cfg.uid;
	if (fs->cfg.gid >= 0)
		sb->st_gid = (gid_t)fs->cfg.gid;
	if (fs->cfg.umask >= 0)
		sb->st_mode &= ~(mode_t)fs->cfg.umask;
	sb->st_ino = node_ino(fs, n);
	if (n->kind == STASH_KIND_META)
		return;
	if (n->kind == STASH_KIND_VIEW)
		sb->st_mode = (sb->st_mode & 07777 & ~07111) | S_IFREG;
}

/* Look @name up in @parent and fill @e (nlookup + 1 on success). */
static int do_lookup(struct stashfs *fs, fuse_ino_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	REQ_PATH(path);
	struct node *p, *n;
	time_t expires;
	int kind, r;

	r = ino_path(fs, parent, name, &path, NULL);
	if (r < 0)
		return r;
	kind = stash_store_classify(path);
	if (kind < 0)
		return kind == -EPERM ? -ENOENT : kind;
	memset(e, 0, sizeof(*e));
	r = stash_store_stat(fs->store, path, &e->attr, &expires);
	/* A version still to come: its name is there to be waited for. */
	if (r == -ENOENT && kind == STASH_KIND_VERSION) {
		uint64_t target;

		r = stash_waits_future(fs->store, path, &target, &e->attr);
		r = r == 1 ? 0 : r == 0 ? -ENOENT : r;
	}
	if (r < 0)
		return r;
	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	n = p ? node_get(fs, p, name, &e->attr, kind) : NULL;
	if (n) {
		fill_attr(fs, &e->attr, n);
		e->ino = node_ino(fs, n);
		e->generation = n->generation;
		e->attr_timeout = timeout_for(fs, n->kind);
		e->entry_timeout = entry_timeout_for(fs, n->kind);
		/* The kernel forgets an expiring name by itself, on time. */
		if (expires) {
			double left = difftime(expires, time(NULL));

			if (left < e->entry_timeout)
				e->entry_timeout = left > 0 ? left : 0;
			if (left < e->attr_timeout)
				e->attr_timeout = left > 0 ? left : 0;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return n ? 0 : -ENOMEM;
}

static void reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, r < 0 ? -r : r);
}

/* Log a refusal once, with its reason. */
static void log_refusal(const char *op, const char *path, int r, const struct stash_error *err)
{
	if (err && err->code)
		LOG(FUSE_LOG_NOTICE, "%s %s refused: %s\n", op, path, err->text);
	else
		LOG(FUSE_LOG_NOTICE, "%s %s refused: %s\n", op, path, strerror(-r));
}

/* ---- operations ------------------------------------------------------- */

static void stashfs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* `>` truncates in the open, so the old content lives until the commit. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Never: it hides sizes and errors behind the kernel's own buffering. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
		stashfs_fit_requests_to_pipe(conn);
	}
	/*
	 * The store clears setuid/setgid bits itself at each content commit
	 * and keeps no security.* attributes (the kernel's question for
	 * security.capability at each truncating open is answered from memory).
	 */
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
}

static struct fh *fh_get(struct stashfs *fs, struct node *n, pid_t pid, bool any);
static void fh_put(struct stashfs *fs, struct fh *h);
static bool has_writers(struct stashfs *fs, struct node *n);
static bool writes_for(const struct fh *h, pid_t pid);

/*
 * The writer handle of @n that thread @pid opened or writes through and has
 * not closed yet, with a reference (fh_put), or NULL.  Holds fs->lock.
 */
static struct fh *own_writer(struct stashfs *fs, struct node *n, pid_t pid)
{
	struct fh *h;

	node_for_each_fh(fs, n, h) {
		if (writes_for(h, pid) && !h->closed) {
			h->refs++;
			return h;
		}
	}
	return NULL;
}

static int open_in(struct stashfs *fs, pid_t pid, fuse_ino_t ino);
static int do_commit(fuse_req_t req, struct fh *h, enum stash_commit when);
static struct fh *fresh_writer(struct stashfs *fs, fuse_ino_t ino, pid_t pid);

/*
 * The writer handle of new stash @n (no commit yet) that speaks for the
 * process of thread @pid, with a reference (fh_put), or NULL: one the
 * thread opened or wrote through, else another if the process holds a
 * descriptor on @n (a thread pool: Node's libuv, Rust's tokio, Go's
 * scheduler open in one thread and stat in another, which may have ended
 * since).  /proc is read only in that second case.  The caller keeps @n.
 */
static struct fh *new_stash_writer(struct stashfs *fs, struct node *n, pid_t pid)
{
	struct fh *h, *found;
	bool theirs = false;

	pthread_mutex_lock(&fs->lock);
	found = own_writer(fs, n, pid);
	if (!found) {
		node_for_each_fh(fs, n, h) {
			if (h->writer && !h->closed && stash_file_fresh(h->f)) {
				found = h;
				found->refs++;
				theirs = true;
				break;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (found && (!stash_file_fresh(found->f) ||
		      (theirs && (!pid || open_in(fs, pid, node_ino(fs, n)) != 1)))) {
		fh_put(fs, found);
		found = NULL;
	}
	return found;
}

/*
 * A new stash not committed yet is no name for anyone but the process
 * writing it, which sees it by name as on ext4 (stat, chmod, touch,
 * truncate: git's lock files, Python's open-then-os.chmod).  Never cached,
 * so every other process's lookup asks again and gets ENOENT.
 */
static int own_new_file(struct stashfs *fs, fuse_ino_t parent, const char *name, pid_t pid,
			struct fuse_entry_param *e)
{
	struct node *p, *n;
	struct fh *h = NULL;
	struct stat sb;
	int r = -ENOENT;

	/* A name no one looked up yet: pinned, as its release and forget may come. */
	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	n = p ? node_by_name(fs, p, name) : NULL;
	if (n)
		n->refs++;
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return -ENOENT;
	h = new_stash_writer(fs, n, pid);
	if (h && stash_file_stat(h->f, &sb) == 0) {
		memset(e, 0, sizeof(*e));
		fill_attr(fs, &sb, n);
		e->attr = sb;
		pthread_mutex_lock(&fs->lock);
		if (n->named && n->parent == p) {
			if (n->nlookup != NODE_PINNED)
				n->nlookup++;
			e->ino = node_ino(fs, n);
			e->generation = n->generation;
			r = 0;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	if (h)
		fh_put(fs, h);
	pthread_mutex_lock(&fs->lock);
	n->refs--;
	node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static void stashfs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stashfs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct node *n = NULL;
	struct fh *h;
	int r = do_lookup(fs, parent, name, &e);

	if (r == -ENOENT && own_new_file(fs, parent, name, fuse_req_ctx(req)->pid, &e) == 0)
		return (void)fuse_reply_entry(req, &e);
	if (r < 0)
		return reply_err(req, r);
	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, e.ino);
	pthread_mutex_unlock(&fs->lock);
	/*
	 * The attributes of a file open for writing go to one inode the writer
	 * shares: a writer's process gets its own version (as from getattr),
	 * and no one may cache them, or the writer's fstat and SEEK_END would
	 * show the committed size until they time out.
	 */
	if (n && has_writers(fs, n)) {
		e.attr_timeout = 0;
		h = fh_get(fs, n, fuse_req_ctx(req)->pid, false);
		if (h) {
			struct stat sb;

			if (stash_file_stat(h->f, &sb) == 0) {
				fill_attr(fs, &sb, n);
				e.attr = sb;
			}
			fh_put(fs, h);
		}
	}
	fuse_reply_entry(req, &e);
}

static void stashfs_op_forget_one(struct stashfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, ino);
	if (n && n != fs->root && n->nlookup != NODE_PINNED) {
		n->nlookup = n->nlookup > nlookup ? n->nlookup - (uint32_t)nlookup : 0;
		node_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

static void stashfs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	stashfs_op_forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void stashfs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		stashfs_op_forget_one(fs_of(req), f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

/* Does a view node have open handles (a merge on its way)? */
static bool view_open(struct stashfs *fs, struct node *n)
{
	bool open;

	pthread_mutex_lock(&fs->lock);
	open = n->refs > 0;
	pthread_mutex_unlock(&fs->lock);
	return open;
}

/* Is @h open for writing by process @pid (opened or written through there)? */
static bool writes_for(const struct fh *h, pid_t pid)
{
	return h->writer && pid && (h->opener.pid == pid || h->wpid == pid);
}

/*
 * The open file of @n that speaks for the process @pid: one it opened for
 * writing or wrote through (a writer sees its own file, also through
 * fstat, which comes without a handle).  Failing that, with @any, any open
 * file of @n (an unlinked node has nothing else to answer from).  Returns
 * it with a reference (fh_put), or NULL.
 */
static struct fh *fh_get(struct stashfs *fs, struct node *n, pid_t pid, bool any)
{
	struct fh *found = NULL, *h;

	pthread_mutex_lock(&fs->lock);
	node_for_each_fh(fs, n, h) {
		if (writes_for(h, pid)) {
			found = h;
			break;
		}
	}
	if (!found && any)
		found = fh_from(fs->fh_hash[hash_ptr(FH_BUCKETS, n)], n);
	if (found)
		found->refs++;
	pthread_mutex_unlock(&fs->lock);
	return found;
}

static void fh_put(struct stashfs *fs, struct fh *h)
{
	bool last;

	pthread_mutex_lock(&fs->lock);
	last = --h->refs == 0;
	pthread_mutex_unlock(&fs->lock);
	if (last)
		fh_free(h);
}

/*
 * Every file of @n that process @pid has open for writing, each with a
 * reference (fh_put): a new array in *@out (caller frees), its length
 * returned; 0 (and NULL) when there is none or no memory for the array.
 */
static size_t fh_writers(struct stashfs *fs, struct node *n, pid_t pid, struct fh ***out)
{
	struct fh **all = NULL, *h;
	size_t count = 0, i = 0;

	pthread_mutex_lock(&fs->lock);
	node_for_each_fh(fs, n, h)
		count += writes_for(h, pid);
	if (count && (all = calloc(count, sizeof(*all)))) {
		node_for_each_fh(fs, n, h) {
			if (writes_for(h, pid)) {
				h->refs++;
				all[i++] = h;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	*out = all;
	return all ? count : 0;
}

/* Does @n have files open for writing (attributes that may change at any close)? */
static bool has_writers(struct stashfs *fs, struct node *n)
{
	struct fh *h;
	bool w = false;

	pthread_mutex_lock(&fs->lock);
	node_for_each_fh(fs, n, h) {
		if ((w = h->writer))
			break;
	}
	pthread_mutex_unlock(&fs->lock);
	return w;
}

/* Tell open file @h that its name is gone (@path NULL) or moved to @path. */
static void handle_renamed(struct fh *h, const char *path)
{
	if (path)
		(void)stash_file_moved(h->f, path);
	else
		stash_file_removed(h->f);
}

/* Tell every open file of @n (under fs->lock) that its name is gone or moved. */
static void handles_renamed(struct stashfs *fs, struct node *n, const char *path)
{
	struct fh *h;

	node_for_each_fh(fs, n, h)
		handle_renamed(h, path);
}

/*
 * @dir (a directory, just renamed; under fs->lock) took the files open below
 * it along: their writers commit under the paths they have now.
 */
static void handles_below_renamed(struct stashfs *fs, const struct node *dir)
{
	if (!dir || !dir->is_dir)
		return;
	for (size_t b = 0; b < FH_BUCKETS; b++) {
		for (struct fh *h = fs->fh_hash[b]; h; h = h->next) {
			const struct node *up = h->node->parent;
			char *path;

			if (!h->node->named)
				continue;
			while (up && up != dir && up != fs->root)
				up = up->parent;
			if (up == dir && node_path(fs, h->node, NULL, &path) == 0) {
				handle_renamed(h, path);
				free(path);
			}
		}
	}
}

/*
 * A directory removed while open still answers fstat, as on ext4: as it
 * was at opendir, empty and with no links.  False when none is open.
 */
static bool removed_dir_stat(struct stashfs *fs, fuse_ino_t ino, struct stat *sb)
{
	bool found = false;

	pthread_mutex_lock(&fs->lock);
	for (struct dir_handle *dh = fs->dirs; dh && !found; dh = dh->next) {
		if (dh->ino == ino) {
			*sb = dh->sb;
			sb->st_nlink = 0;
			sb->st_size = 0;
			found = true;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return found;
}

static void stashfs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	struct node *n = NULL;
	struct fh *h = NULL;
	struct stat sb;
	double timeout;
	int r;

	if (fi) {
		h = (struct fh *)(uintptr_t)fi->fh;
		r = stash_file_stat(h->f, &sb);
		n = h->node;
		h = NULL;
	} else {
		r = ino_path(fs, ino, NULL, &path, &n);
		/* fstat comes without a handle: the writer's own, or an unlinked file's. */
		if (n)
			h = fh_get(fs, n, fuse_req_ctx(req)->pid, r == -ENOENT);
		if (h) {
			r = stash_file_stat(h->f, &sb);
			fh_put(fs, h);
		} else if (r == 0) {
			r = stash_store_stat(fs->store, path, &sb, NULL);
			if (r == -ENOENT && n && n->kind == STASH_KIND_VERSION) {
				uint64_t target;

				r = stash_waits_future(fs->store, path, &target, &sb);
				r = r == 1 ? 0 : r == 0 ? -ENOENT : r;
			}
			/*
			 * Removed or expired behind the kernel, yet open: it still
			 * works.  A new stash not committed yet is a name for no
			 * one, but its inode is reached without a lookup only
			 * through a descriptor (its entry is never cached): an
			 * fstat by a process that inherited the writer's fd
			 * (`sh -c 'cat > new'`) sees the file being written.
			 */
			if (r == -ENOENT && n && (h = fh_get(fs, n, 0, true))) {
				bool fresh = stash_file_fresh(h->f);

				if (stash_file_stat(h->f, &sb) == 0) {
					if (!fresh)
						sb.st_nlink = 0;
					r = 0;
				}
				fh_put(fs, h);
			}
		}
		if (r == -ENOENT && n && n->is_dir && removed_dir_stat(fs, ino, &sb))
			r = 0;
		if (r == -ENOENT && n && n->kind == STASH_KIND_VIEW && view_open(fs, n)) {
			/* Being written: its stash comes with the merge at close. */
			memset(&sb, 0, sizeof(sb));
			sb.st_mode = S_IFREG | 0644;
			sb.st_nlink = 1;
			sb.st_uid = fuse_req_ctx(req)->uid;
			sb.st_gid = fuse_req_ctx(req)->gid;
			r = 0;
		}
	}
	if (r < 0)
		return reply_err(req, r);
	fill_attr(fs, &sb, n);
	/* While it has writers, what a process sees depends on who asks. */
	timeout = has_writers(fs, n) ? 0.0 : timeout_for(fs, n->kind);
	fuse_reply_attr(req, &sb, timeout);
}

/* The times a setattr asks for, as utimensat takes them. */
static void setattr_times(const struct stat *attr, int to_set, struct timespec ts[2])
{
	ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		ts[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		ts[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		ts[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		ts[1] = attr->st_mtim;
}

/*
 * chmod, chown, utimens and truncate through the open writer @h of the
 * caller (fchmod and futimens come without a handle): they apply to the
 * version it will commit.  A stash not committed yet has nothing else to
 * change; a committed one is changed by name too, for everyone else.
 */
static int setattr_writer(struct fh *h, const struct stat *attr, int to_set,
			  struct stash_error *err)
{
	struct timespec ts[2];
	mode_t mode = attr->st_mode;
	int r = 0;

	if (to_set & FUSE_SET_ATTR_SIZE)
		r = stash_file_truncate(h->f, attr->st_size, err);
	setattr_times(attr, to_set, ts);
	if (r == 0)
		r = stash_file_setattr(h->f, (to_set & FUSE_SET_ATTR_MODE) ? &mode : NULL,
				       (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
				       (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1,
				       (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) ?
				       ts : NULL);
	return r;
}

static void stashfs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			       struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	struct stash_error err;
	struct stash_caller who;
	REQ_PATH(path);
	struct node *n;
	struct fh *mine = fi ? (struct fh *)(uintptr_t)fi->fh : NULL, *one = NULL;
	struct fh **hs = NULL;
	size_t nh = 0;
	int r, w = 0;

	stash_error_clear(&err);
	caller_of(req, &who);
	r = ino_path(fs, ino, NULL, &path, &n);
	/*
	 * ftruncate brings its handle; fchmod, fchown and futimens come
	 * without one and go to every writer of the caller's process, as on
	 * ext4 where they change the one inode all its descriptors share.
	 */
	if (mine && mine->writer)
		hs = &mine, nh = 1;
	else if (!mine && n)
		nh = fh_writers(fs, n, who.pid, &hs);
	/* A new stash's, from another thread of its writer's process. */
	if (!nh && !mine && n && (one = fresh_writer(fs, ino, who.pid)))
		hs = &one, nh = 1;
	if (nh) {
		bool fresh = stash_file_fresh(hs[0]->f);

		for (size_t i = 0; i < nh; i++) {
			if (w == 0)
				w = setattr_writer(hs[i], attr, to_set, &err);
			if (hs[i] != mine)
				fh_put(fs, hs[i]);
		}
		if (hs != &mine && hs != &one)
			free(hs);
		if (w < 0) {
			log_refusal("setattr", path, w, &err);
			return reply_err(req, w);
		}
		/* Not committed yet, or its name is gone: the handle is all there is. */
		if (fresh || r == -ENOENT)
			return stashfs_op_getattr(req, ino, fi);
		/* The size was the handle's to change; the rest goes to the name too. */
		to_set &= ~FUSE_SET_ATTR_SIZE;
	}
	if (r < 0)
		return reply_err(req, r);
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (mine)
			r = stash_file_truncate(mine->f, attr->st_size, &err);
		else
			r = stash_store_truncate(fs->store, path, attr->st_size, &who, &err);
		/* The kernel takes the new size from this reply. */
		if (r < 0) {
			log_refusal("truncate", path, r, &err);
			return reply_err(req, r);
		}
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		r = stash_store_chmod(fs->store, path, attr->st_mode);
		if (r < 0)
			return reply_err(req, r);
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		r = stash_store_chown(fs->store, path,
				      (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
				      (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1);
		if (r < 0)
			return reply_err(req, r);
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec ts[2];

		setattr_times(attr, to_set, ts);
		r = stash_store_utimens(fs->store, path, ts);
		if (r < 0)
			return reply_err(req, r);
	}
	stashfs_op_getattr(req, ino, fi);
}

static void stashfs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct stashfs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct stash_caller who;
	REQ_PATH(path);
	int r;

	caller_of(req, &who);
	r = ino_path(fs, parent, name, &path, NULL);
	if (r == 0)
		r = stash_store_mkdir(fs->store, path, mode, &who);
	if (r == 0)
		r = do_lookup(fs, parent, name, &e);
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_entry(req, &e);
}

/* Forget the name @name in @parent: it no longer names the node it did. */
static void unname(struct stashfs *fs, fuse_ino_t parent, const char *name)
{
	struct node *p, *n;

	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	n = p ? node_by_name(fs, p, name) : NULL;
	if (n) {
		/* Its open files keep working, and stay removed when they close. */
		handles_renamed(fs, n, NULL);
		node_unname(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

/*
 * new_stash_writer of @name in @parent, a name the kernel holds while it
 * asks to remove or move it.
 */
static struct fh *own_fresh_writer(struct stashfs *fs, fuse_ino_t parent, const char *name,
				   pid_t pid)
{
	struct node *p, *n;

	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	n = p ? node_by_name(fs, p, name) : NULL;
	pthread_mutex_unlock(&fs->lock);
	return n ? new_stash_writer(fs, n, pid) : NULL;
}

static void stashfs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stashfs *fs = fs_of(req);
	struct stash_error err;
	struct stash_caller who;
	REQ_PATH(path);
	bool dropped = false;
	struct fh *h;
	int r;

	stash_error_clear(&err);
	caller_of(req, &who);
	r = ino_path(fs, parent, name, &path, NULL);
	if (r == 0)
		r = stash_store_unlink(fs->store, path, &who, &err);
	/*
	 * Its writer removes a new stash before its first commit (mkstemp then
	 * unlink: Python's TemporaryFile): the name is free again, and its open
	 * files keep working and commit nothing.  Unless that commit came first.
	 */
	if (r == -ENOENT && (h = own_fresh_writer(fs, parent, name, who.pid))) {
		dropped = stash_file_drop_new(h->f);
		fh_put(fs, h);
		if (!dropped)   /* its first commit came first */
			r = stash_store_unlink(fs->store, path, &who, &err);
	}
	if (r == 0 || dropped) {
		unname(fs, parent, name);
		if (!dropped)
			stashfs_waits_changed(fs, path);
	}
	reply_err(req, dropped ? 0 : r);
}

static void stashfs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	int r = ino_path(fs, parent, name, &path, NULL);

	if (r == 0)
		r = stash_store_rmdir(fs->store, path);
	if (r == 0)
		unname(fs, parent, name);
	reply_err(req, r);
}

/*
 * The process writing a new stash renames it before its first commit
 * (Python's NamedTemporaryFile then os.replace, Rust's tempfile persist):
 * what it wrote so far is committed under the name it has, which then
 * moves as any stash's does (mode, the target's history and schema); later
 * writes commit at the close, under the new name.
 */
static int commit_own_new_file(fuse_req_t req, fuse_ino_t parent, const char *name,
			       const char *to, unsigned int flags)
{
	struct stashfs *fs = fs_of(req);
	struct stat sb;
	struct fh *h;
	int r;

	/* What the rename would refuse anyway is refused before the commit. */
	if (stash_store_stat(fs->store, to, &sb, NULL) == 0) {
		if (flags & RENAME_NOREPLACE)
			return -EEXIST;
		if (S_ISDIR(sb.st_mode))
			return -EISDIR;
	} else if (flags & RENAME_EXCHANGE) {
		return -ENOENT;
	}
	h = own_fresh_writer(fs, parent, name, fuse_req_ctx(req)->pid);
	if (!h)
		return -ENOENT;
	r = do_commit(req, h, STASH_COMMIT_LAST);
	fh_put(fs, h);
	return r;
}

static void stashfs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(from);
	REQ_PATH(to);
	struct stash_error err;
	struct stash_caller who;
	struct node *p, *np, *n, *victim;
	int r;

	stash_error_clear(&err);
	caller_of(req, &who);
	r = ino_path(fs, parent, name, &from, NULL);
	if (r == 0)
		r = ino_path(fs, newparent, newname, &to, NULL);
	if (r == 0) {
		r = stash_store_rename(fs->store, from, to, flags, &who, &err);
		if (r == -ENOENT) {
			r = commit_own_new_file(req, parent, name, to, flags);
			if (r == 0)
				r = stash_store_rename(fs->store, from, to, flags, &who, &err);
		}
	}
	if (r < 0) {
		if (err.code)
			log_refusal("rename", from, r, &err);
		return reply_err(req, r);
	}
	stashfs_waits_changed(fs, from);
	stashfs_waits_changed(fs, to);
	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	np = node_by_ino(fs, newparent);
	n = p ? node_by_name(fs, p, name) : NULL;
	victim = np ? node_by_name(fs, np, newname) : NULL;
	if (flags & RENAME_EXCHANGE) {
		/* The two trade names, as the kernel's entries just did (writers too). */
		if (n) {
			handles_renamed(fs, n, to);
			node_unname(fs, n);
		}
		if (victim) {
			handles_renamed(fs, victim, from);
			node_unname(fs, victim);
		}
		if (n && np)
			node_move(fs, n, np, newname);
		if (victim && p)
			node_move(fs, victim, p, name);
		handles_below_renamed(fs, n);
		handles_below_renamed(fs, victim);
	} else {
		if (victim && victim != n) {
			handles_renamed(fs, victim, NULL);
			node_unname(fs, victim);
		}
		if (n && np) {
			/* Its writers commit under the new name, as on a local filesystem. */
			handles_renamed(fs, n, to);
			node_unname(fs, n);
			node_move(fs, n, np, newname);
			handles_below_renamed(fs, n);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, 0);
}

static void stashfs_op_refuse_entry(fuse_req_t req)
{
	/* Hard links, symlinks and special files are not part of the store. */
	fuse_reply_err(req, EPERM);
}

/*
 * A link or symlink named like a stash being created: the name is taken
 * (EEXIST, as on ext4, which checks that before anything else); otherwise
 * refused.
 */
static void refuse_entry_at(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);

	if (ino_path(fs, parent, name, &path, NULL) == 0 &&
	    stash_store_reserved(fs->store, path) == 1)
		return reply_err(req, -EEXIST);
	stashfs_op_refuse_entry(req);
}

static void stashfs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
			    const char *newname)
{
	refuse_entry_at(req, newparent, newname);
}

static void stashfs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			       const char *name)
{
	refuse_entry_at(req, parent, name);
}

/* A regular file from mknod is an empty stash, as on ext4; nothing else is offered. */
static void stashfs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			     mode_t mode, dev_t rdev)
{
	struct stashfs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct stash_error err;
	struct stash_caller who;
	struct stash_file *f;
	REQ_PATH(path);
	int kind, r;

	if (!S_ISREG(mode))
		return refuse_entry_at(req, parent, name);
	stash_error_clear(&err);
	caller_of(req, &who);
	r = ino_path(fs, parent, name, &path, NULL);
	kind = r < 0 ? r : stash_store_classify(path);
	if (kind < 0)
		return reply_err(req, kind);
	if (kind != STASH_KIND_STASH && kind != STASH_KIND_STREAM)
		return stashfs_op_refuse_entry(req);
	r = stash_file_open(fs->store, path, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, mode & 07777,
			    &who, &f, &err);
	if (r == 0) {
		r = stash_file_commit(f, STASH_COMMIT_LAST, &who, &err);
		stash_file_close(f);
	}
	if (r == 0)
		r = do_lookup(fs, parent, name, &e);
	if (r < 0) {
		if (err.code)
			log_refusal("mknod", path, r, &err);
		return reply_err(req, r);
	}
	fuse_reply_entry(req, &e);
}

/*
 * Every open of a stash goes around the page cache (direct I/O): the
 * kernel keeps one size and one set of pages per inode, while stashfs
 * gives each open its own snapshot; a cached reader would see the old
 * version cut to the new size after a commit.  Read-only opens skip the
 * flush round trip at close: they have nothing to commit.
 */
static void cache_open(struct stashfs *fs, struct fh *h, struct fuse_file_info *fi,
		       bool writable)
{
	size_t b;

	h->writer = writable;
	h->refs = 1;
	pthread_mutex_lock(&fs->lock);
	h->node->refs++;
	b = hash_ptr(FH_BUCKETS, h->node);
	h->next = fs->fh_hash[b];
	fs->fh_hash[b] = h;
	pthread_mutex_unlock(&fs->lock);
	fi->direct_io = 1;
	/* Nothing to commit at close: read-only opens and streams (appended in place). */
	fi->noflush = !writable || h->node->kind == STASH_KIND_STREAM;
}

static void cache_close(struct stashfs *fs, struct fh *h)
{
	struct fh **pp;

	pthread_mutex_lock(&fs->lock);
	for (pp = &fs->fh_hash[hash_ptr(FH_BUCKETS, h->node)]; *pp && *pp != h; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = h->next;
	h->node->refs--;
	node_maybe_free(fs, h->node);
	pthread_mutex_unlock(&fs->lock);
}

static int do_open(fuse_req_t req, fuse_ino_t ino, struct node *n, const char *path, int flags,
		   mode_t mode, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	struct stash_error err;
	struct stash_caller who;
	struct fh *h;
	int r;

	stash_error_clear(&err);
	/* A metadata document's writes link and bind as its opener. */
	if (stash_store_classify(path) == STASH_KIND_META && (flags & O_ACCMODE) != O_RDONLY)
		caller_with_groups(req, &who);
	else
		caller_of(req, &who);
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	r = stash_file_open(fs->store, path, flags, mode, &who, &h->f, &err);
	if (r < 0) {
		if (err.code)
			log_refusal("open", path, r, &err);
		free(h);
		return r;
	}
	h->node = n;
	h->opener = who;
	fi->fh = (uintptr_t)h;
	/* A read-only open that creates (`flock FILE`, `open(O_RDONLY | O_CREAT)`) commits it empty. */
	cache_open(fs, h, fi, (flags & O_ACCMODE) != O_RDONLY || stash_file_fresh(h->f));
	return 0;
}

int stashfs_open_parked(fuse_req_t req, struct node *n, const char *path,
			struct fuse_file_info *fi)
{
	return do_open(req, node_ino(fs_of(req), n), n, path, fi->flags, 0, fi);
}

/*
 * The process writing a new stash opens it by name again for writing (it
 * sees the name, see own_new_file): another writer of the same creation,
 * as its open with O_CREAT would have made.
 */
static int reopen_own_new_file(fuse_req_t req, fuse_ino_t ino, struct node *n, const char *path,
			       struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	struct fh *h = new_stash_writer(fs, n, fuse_req_ctx(req)->pid);
	struct stat sb;
	int r;

	r = h ? stash_file_stat(h->f, &sb) : -ENOENT;
	if (h)
		fh_put(fs, h);
	return r < 0 ? -ENOENT : do_open(req, ino, n, path, fi->flags | O_CREAT, sb.st_mode & 07777, fi);
}

static void stashfs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	struct node *n;
	uint64_t target;
	int r = ino_path(fs, ino, NULL, &path, &n);

	if (r == 0)
		r = do_open(req, ino, n, path, fi->flags, 0, fi);
	if (r == -ENOENT && path && (fi->flags & O_ACCMODE) != O_RDONLY)
		r = reopen_own_new_file(req, ino, n, path, fi);
	/* Reading a version still to come waits for it (see waits.c). */
	if (r == -ENOENT && n->kind == STASH_KIND_VERSION &&
	    (fi->flags & O_ACCMODE) == O_RDONLY && !(fi->flags & O_TRUNC)) {
		int f = stash_waits_future(fs->store, path, &target, NULL);

		if (f == 1 && (fi->flags & O_NONBLOCK))
			r = -EAGAIN;
		else if (f == 1)
			return stashfs_waits_park(fs, req, n, path, target, fi);
		else if (f == 0)        /* committed since the first try */
			r = do_open(req, ino, n, path, fi->flags, 0, fi);
	}
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_open(req, fi);
}

/* Is @path NAME@V.json, a merge on the condition that NAME is at V? */
static bool conditional_merge(const char *path)
{
	char *target = stash_view_target(path);
	bool r = target && stash_store_classify(target) == STASH_KIND_VERSION;

	free(target);
	return r;
}

static void stashfs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			      mode_t mode, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	struct fuse_entry_param e;
	REQ_PATH(path);
	struct node *p, *n = NULL;
	struct fh *h = NULL;
	int kind, r;

	r = ino_path(fs, parent, name, &path, NULL);
	if (r < 0)
		return reply_err(req, r);
	kind = stash_store_classify(path);
	if (kind < 0)
		return reply_err(req, kind);
	if (kind == STASH_KIND_DIR)
		return reply_err(req, EISDIR);
	memset(&e, 0, sizeof(e));
	e.attr.st_mode = S_IFREG | (mode & 07777);
	pthread_mutex_lock(&fs->lock);
	p = node_by_ino(fs, parent);
	if (p)
		n = node_get(fs, p, name, &e.attr, kind);
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return reply_err(req, p ? ENOMEM : ENOENT);
	r = do_open(req, node_ino(fs, n), n, path, fi->flags | O_CREAT, mode, fi);
	if (r == 0) {
		h = (struct fh *)(uintptr_t)fi->fh;
		r = stash_file_stat(h->f, &e.attr);
		if (r < 0) {
			cache_close(fs, h);
			fh_put(fs, h);
		}
	}
	if (r < 0) {
		stashfs_op_forget_one(fs, node_ino(fs, n), 1);
		return reply_err(req, r);
	}
	fill_attr(fs, &e.attr, n);
	e.ino = node_ino(fs, n);
	e.generation = n->generation;
	e.attr_timeout = timeout_for(fs, n->kind);
	e.entry_timeout = entry_timeout_for(fs, n->kind);
	/*
	 * Not a name for anyone else until its first commit: no caching it.
	 * Nor NAME@V.json, a condition rather than a file: the next writer of
	 * it is to create it again, not to find it by a getattr that fails.
	 */
	if (stash_file_fresh(h->f) || conditional_merge(path))
		e.attr_timeout = e.entry_timeout = 0;
	fuse_reply_create(req, &e, fi);
}

static void stashfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	char small[SMALL_READ], *mem;
	ssize_t n;
	int fd;

	/*
	 * Most stashes are small: read them into the stack.  A reply from an
	 * fd that libfuse can't splice costs a page-aligned allocation of the
	 * whole requested size (cat asks for 128 KiB), which fragments the heap
	 * between the inode table's entries.
	 */
	n = stash_file_read(h->f, small, size < sizeof(small) ? size : sizeof(small), off);
	if (n < 0)
		return reply_err(req, (int)n);
	if ((size_t)n < sizeof(small) || size <= sizeof(small))
		return (void)fuse_reply_buf(req, small, (size_t)n);
	if (stash_file_read_fd(h->f, &fd) == 0) {
		/* Zero copy: the snapshot file goes to the kernel by splice. */
		buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		buf.buf[0].fd = fd;
		buf.buf[0].pos = off;
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
		close(fd);
		return;
	}
	mem = malloc(size);
	if (!mem)
		return reply_err(req, ENOMEM);
	n = stash_file_read(h->f, mem, size, off);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, mem, (size_t)n);
	free(mem);
}

static void stashfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
			     off_t off, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	struct stash_error err;
	ssize_t n;

	stash_error_clear(&err);
	h->owner = fi->lock_owner;
	h->wpid = fuse_req_ctx(req)->pid;
	n = stash_file_write(h->f, buf, size, off, &err);
	if (n < 0) {
		log_refusal("write", node_label(h->node), (int)n, &err);
		return reply_err(req, (int)n);
	}
	fuse_reply_write(req, (size_t)n);
}

/* new_stash_writer of node @ino, which the kernel holds while it asks. */
static struct fh *fresh_writer(struct stashfs *fs, fuse_ino_t ino, pid_t pid)
{
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	return n ? new_stash_writer(fs, n, pid) : NULL;
}

/* The kept xattr @name of @h (under fs->lock): its link, for unlinking. */
static struct kept_xattr **kept_find(struct fh *h, const char *name)
{
	struct kept_xattr **k = &h->kept;

	while (*k && strcmp((*k)->name, name) != 0)
		k = &(*k)->next;
	return k;
}

/* Keep an xattr on a new stash's writer handle; judged as the store would. */
static int kept_set(struct stashfs *fs, struct fh *h, const char *name, const char *value,
		    size_t size, int flags, const struct stash_caller *who,
		    struct stash_error *err)
{
	struct kept_xattr *k, **at;
	int r = stash_store_check_xattr(name, value, size, err);

	if (r != 0)
		return r < 0 ? r : 0;
	k = malloc(sizeof(*k) + size);
	if (!k || !(k->name = strdup(name))) {
		free(k);
		return -ENOMEM;
	}
	k->next = NULL;
	k->who = *who;
	k->size = size;
	memcpy(k->value, value, size);
	pthread_mutex_lock(&fs->lock);
	at = kept_find(h, name);
	if (*at && (flags & XATTR_CREATE)) {
		r = -EEXIST;
	} else if (!*at && (flags & XATTR_REPLACE)) {
		r = -ENODATA;
	} else {
		k->next = *at ? (*at)->next : NULL;
		if (*at) {
			(*at)->next = NULL;
			kept_free(*at);
		}
		*at = k;
		k = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	kept_free(k);
	return r;
}

/*
 * After the first commit: the kept xattrs go to the stash, in the order
 * set.  Returns the first refusal (logged, and in user.stash.error).
 */
static int kept_apply(struct stashfs *fs, struct fh *h)
{
	struct kept_xattr *k, *list = NULL;
	REQ_PATH(path);
	int r = 0;

	pthread_mutex_lock(&fs->lock);
	/* Newest first on the handle: reversed, they go oldest first. */
	while ((k = h->kept)) {
		h->kept = k->next;
		k->next = list;
		list = k;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!list || ino_path(fs, node_ino(fs, h->node), NULL, &path, NULL) < 0) {
		kept_free(list);
		return 0;
	}
	for (k = list; k; k = k->next) {
		struct stash_error err;
		int e;

		stash_error_clear(&err);
		e = stash_store_setxattr(fs->store, path, k->name, k->value, k->size, 0,
					 &k->who, &err);
		if (e < 0) {
			log_refusal("setxattr", path, e, &err);
			if (!r)
				r = e;
		}
	}
	kept_free(list);
	return r;
}

static int do_commit(fuse_req_t req, struct fh *h, enum stash_commit when)
{
	struct stashfs *fs = fs_of(req);
	struct stash_error err;
	struct stash_caller who;
	uint64_t before = stash_file_version(h->f);
	int r;

	if (!h->writer)
		return 0;
	stash_error_clear(&err);
	caller_of(req, &who);
	if (who.pid == 0)
		who = h->opener;
	r = stash_file_commit(h->f, when, &who, &err);
	if (r < 0) {
		log_refusal("commit", node_label(h->node), r, &err);
		return r;
	}
	/*
	 * A merge changes another inode.  A commit changes this one's size,
	 * times and ctime after the kernel last asked (a setattr through the
	 * handle, say): drop its cached attributes, only those (direct I/O keeps
	 * no pages, and dropping them would take locks a closing writer holds).
	 */
	if (stash_file_version(h->f) != before) {
		REQ_PATH(path);

		if (ino_path(fs, node_ino(fs, h->node), NULL, &path, NULL) == 0)
			stashfs_waits_changed(fs, path);
		if (h->node->kind == STASH_KIND_VIEW || h->node->kind == STASH_KIND_VERSION)
			view_target_changed(fs, h->node);
		else
			fuse_lowlevel_notify_inval_inode(fs->se, node_ino(fs, h->node), -1, 0);
	}
	return h->kept && !stash_file_fresh(h->f) ? kept_apply(fs, h) : 0;
}

/* Linux task flag (include/linux/sched.h), as /proc/PID/stat shows it. */
#define TASK_PF_EXITING 0x00000004UL

/*
 * Is task @pid exiting because a signal killed its process?  (False when
 * unknown.)  PF_SIGNALED can't tell: when a process with threads exits
 * (exit_group), the kernel kills its other threads with SIGKILL and marks
 * them so, and any of them may be the last to close the process's files.
 * The exit code in field 52 is the whole process's: a signal number in its
 * low 7 bits only when a signal ended the process.  The kernel shows it to
 * whoever may ptrace the task (root, or the task's own user); to others it
 * reads 0.
 */
static bool killed_by_signal(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long flags = 0;
	long long code = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* The command name may hold anything: fields resume after its last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1 ||
	    !(flags & TASK_PF_EXITING))
		return false;
	/* Fields 3 to 51 (state is field 3), then exit_code. */
	for (int field = 3; field <= 52; field++) {
		while (*++p == ' ')
			;
		if (!*p)
			return false;
		if (field == 52)
			return sscanf(p, "%lld", &code) == 1 && (code & 0x7f) != 0;
		p += strcspn(p, " ") - 1;
	}
	return false;
}

/*
 * The device ("major:minor") of mount @id in @mountinfo, or with @id < 0
 * of the last FUSE mount on @point (the top one: it may sit on a bind mount
 * of its own mount point).  0, or -1 when not found.
 */
static int mount_dev(const char *mountinfo, long id, const char *point, char *out, size_t size)
{
	char line[4096];
	int r = -1;
	FILE *f = fopen(mountinfo, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char dev[24], mnt[2048], *sep = strstr(line, " - ");
		long mid;

		if (!sep || sscanf(line, "%ld %*d %23s %*s %2047s", &mid, dev, mnt) != 3)
			continue;
		if (id >= 0 ? mid != id : strncmp(sep + 3, "fuse", 4) != 0 || strcmp(mnt, point) != 0)
			continue;
		snprintf(out, size, "%s", dev);
		r = 0;
		if (id >= 0)
			break;
	}
	fclose(f);
	return r;
}

void stashfs_mount_learned(struct stashfs *fs)
{
	char point[2048];
	size_t n = 0;

	/* mountinfo escapes space, tab, newline and backslash as \ooo. */
	for (const char *c = fs->mountpoint; c && *c && n + 5 < sizeof(point); c++) {
		if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\\')
			n += (size_t)snprintf(point + n, sizeof(point) - n, "\\%03o", *c);
		else
			point[n++] = *c;
	}
	point[n] = '\0';
	if (mount_dev("/proc/self/mountinfo", -1, point, fs->mount_dev, sizeof(fs->mount_dev)) < 0)
		fs->mount_dev[0] = '\0';
}

/*
 * Does task @pid still hold a descriptor on node @ino of this mount?  Its
 * fdinfo names the inode and the mount, which the task's own mountinfo
 * turns into a device: a container's bind mount of the store is the same
 * device under another path.  1 if it does, 0 if not, -1 when unknown.
 */
static int open_in(struct stashfs *fs, pid_t pid, fuse_ino_t ino)
{
	char path[64];
	struct dirent *de;
	bool held = false;
	int infos;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	infos = fs->mount_dev[0] ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = infos >= 0 ? opendir(path) : NULL;
	if (!d) {
		if (infos >= 0)
			close(infos);
		return -1;
	}
	while (!held && (de = readdir(d))) {
		char buf[512], dev[24];
		unsigned long long i = 0;
		long mnt = -1;
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(infos, de->d_name, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *l = buf; l; l = strchr(l, '\n')) {
			if (*l == '\n')
				l++;
			if (strncmp(l, "ino:", 4) == 0)
				i = strtoull(l + 4, NULL, 10);
			else if (strncmp(l, "mnt_id:", 7) == 0)
				mnt = strtol(l + 7, NULL, 10);
		}
		if (i != ino || mnt < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
		held = mount_dev(path, mnt, NULL, dev, sizeof(dev)) == 0 &&
			strcmp(dev, fs->mount_dev) == 0;
	}
	closedir(d);
	close(infos);
	return held ? 1 : 0;
}

/* The thread group (process) of task @tid, from /proc/TID/status; 0 if unknown. */
static pid_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	pid_t tgid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (!tgid && fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &tgid) != 1)
			tgid = 0;
	fclose(f);
	return tgid;
}

static void stashfs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	enum stash_commit when = STASH_COMMIT_FLUSH;
	pid_t pid = fuse_req_ctx(req)->pid;

	/*
	 * A flush from another fd table is a forked child closing its
	 * inherited copy (close-on-exec, exit): the writer is not done, so
	 * publishing now would show readers half a document.
	 */
	if (!h->writer || (h->owner && fi->lock_owner != h->owner))
		return (void)fuse_reply_err(req, 0);
	/*
	 * Nothing written through it yet, so no fd table to compare: a flush
	 * from a process other than the opener's is a copy's close too.
	 * (Its /proc/PID/stat must not be read either: a child closing its
	 * copies at exec holds a lock that reading it waits for.)
	 */
	if (!h->owner && pid && pid != h->opener.pid) {
		pid_t g = tgid_of(pid);

		if (!g || g != tgid_of(h->opener.pid))
			return (void)fuse_reply_err(req, 0);
	}
	/* Its name is no longer the writer's to see (own_new_file). */
	pthread_mutex_lock(&fs_of(req)->lock);
	h->closed = true;
	pthread_mutex_unlock(&fs_of(req)->lock);
	/*
	 * The writer was killed before it closed (its descriptors close as it
	 * exits): what it wrote is not a finished document.
	 */
	if (pid && killed_by_signal(pid)) {
		LOG(FUSE_LOG_NOTICE, "%s: writer %d killed by a signal: nothing committed\n",
		    node_label(h->node), (int)pid);
		stash_file_discard(h->f);
		return (void)fuse_reply_err(req, 0);
	}
	/*
	 * A change with nothing written yet (`touch p`, `: > p`) commits when
	 * its process closes its last descriptor on it, not at the close of a
	 * shell redirection's first copy, with the writes still to come.
	 */
	if (pid && stash_file_waiting(h->f) && open_in(fs_of(req), pid, ino) == 0)
		when = STASH_COMMIT_LAST;
	reply_err(req, do_commit(req, h, when));
}

static void stashfs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;

	/* The close already returned; a late refusal is logged and kept in xattr. */
	do_commit(req, h, STASH_COMMIT_LAST);
	cache_close(fs_of(req), h);
	fh_put(fs_of(req), h);
	fuse_reply_err(req, 0);
}

static void stashfs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			     struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	int r = do_commit(req, h, STASH_COMMIT_SYNC);

	if (r == 0)
		r = stash_file_sync(h->f, datasync);
	reply_err(req, r);
}

static void stashfs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	struct dir_handle *dh = calloc(1, sizeof(*dh));
	int r = dh ? ino_path(fs, ino, NULL, &path, NULL) : -ENOMEM;

	if (r == 0)
		r = stash_dir_open(fs->store, path, &dh->d);
	if (r < 0) {
		free(dh);
		return reply_err(req, r);
	}
	dh->ino = ino;
	if (stash_store_stat(fs->store, path, &dh->sb, NULL) < 0)
		dh->sb.st_mode = S_IFDIR | 0755;
	pthread_mutex_lock(&fs->lock);
	dh->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = dh;
	fs->dirs = dh;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uintptr_t)dh;
	fuse_reply_open(req, fi);
}

/* The inode number of @ino's parent (the root's own for the root). */
static fuse_ino_t parent_ino(struct stashfs *fs, fuse_ino_t ino)
{
	struct node *n;
	fuse_ino_t r;

	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, ino);
	r = n->parent ? node_ino(fs, n->parent) : FUSE_ROOT_ID;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

/*
 * A listing starts with "." and "..", as on ext4 (`ls -a`, and programs
 * that skip two entries); the store's names follow from offset 2.
 */
static int listing_next(struct stashfs *fs, struct dir_handle *dh, off_t off, const char **name,
			unsigned char *type, ino_t *ino, off_t *next)
{
	int r;

	if (off == 0 || off == 1) {
		*name = off ? ".." : ".";
		*type = DT_DIR;
		*ino = off ? parent_ino(fs, dh->ino) : dh->ino;
		*next = off + 1;
		return 0;
	}
	r = stash_dir_next(dh->d, off - 2, name, type, ino, next);
	if (r == 0)
		*next += 2;
	return r;
}

static void stashfs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			       struct fuse_file_info *fi)
{
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t left = size;
	const char *name;
	unsigned char type;
	ino_t dino;
	off_t next;

	if (!buf)
		return reply_err(req, ENOMEM);
	while (listing_next(fs_of(req), dh, off, &name, &type, &dino, &next) == 0) {
		struct stat sb = { .st_ino = dino, .st_mode = (mode_t)type << 12 };
		size_t used = fuse_add_direntry(req, p, left, name, &sb, next);

		if (used > left)
			break;
		p += used;
		left -= used;
		off = next;
	}
	fuse_reply_buf(req, buf, size - left);
	free(buf);
}

static void stashfs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stashfs *fs = fs_of(req);
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;

	pthread_mutex_lock(&fs->lock);
	if (dh->prev)
		dh->prev->next = dh->next;
	else
		fs->dirs = dh->next;
	if (dh->next)
		dh->next->prev = dh->prev;
	pthread_mutex_unlock(&fs->lock);
	stash_dir_close(dh->d);
	free(dh);
	fuse_reply_err(req, 0);
}

static void stashfs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int r = stash_store_statfs(fs_of(req)->store, &sv);

	if (r < 0)
		return reply_err(req, r);
	fuse_reply_statfs(req, &sv);
}

static void stashfs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
				const char *value, size_t size, int flags)
{
	struct stashfs *fs = fs_of(req);
	struct stash_caller who;
	struct stash_error err;
	REQ_PATH(path);
	struct fh *h;
	int r;

	stash_error_clear(&err);
	if (strcmp(name, XATTR_LINKED) == 0 || strcmp(name, XATTR_SCHEMA) == 0)
		caller_with_groups(req, &who);
	else
		caller_of(req, &who);   /* cp -a, rsync -X: no /proc read per file */
	r = ino_path(fs, ino, NULL, &path, NULL);
	if (r == 0 && (h = fresh_writer(fs, ino, who.pid))) {
		r = kept_set(fs, h, name, value, size, flags, &who, &err);
		fh_put(fs, h);
	} else if (r == 0) {
		r = stash_store_setxattr(fs->store, path, name, value, size, flags, &who, &err);
	}
	if (r < 0 && err.code)
		log_refusal("setxattr", path, r, &err);
	reply_err(req, r);
}

/* Reply to getxattr/listxattr: the size when asked for it, else the value. */
static void reply_xattr_value(fuse_req_t req, const char *buf, int r, size_t size)
{
	if (r < 0)
		reply_err(req, r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
}

static void stashfs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	char *buf = size ? malloc(size) : NULL;
	int r = size && !buf ? -ENOMEM : ino_path(fs, ino, NULL, &path, NULL);
	struct fh *h = r == 0 ? fresh_writer(fs, ino, fuse_req_ctx(req)->pid) : NULL;

	if (h) {
		struct kept_xattr *k;

		/* Before its first commit a new stash has only what was kept. */
		pthread_mutex_lock(&fs->lock);
		k = *kept_find(h, name);
		r = !k ? -ENODATA : size && k->size > size ? -ERANGE : (int)k->size;
		if (k && size && r >= 0)
			memcpy(buf, k->value, k->size);
		pthread_mutex_unlock(&fs->lock);
		fh_put(fs, h);
	} else if (r == 0) {
		r = stash_store_getxattr(fs->store, path, name, buf, size);
	}
	reply_xattr_value(req, buf, r, size);
	free(buf);
}

static void stashfs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	char *buf = size ? malloc(size) : NULL;
	int r = size && !buf ? -ENOMEM : ino_path(fs, ino, NULL, &path, NULL);

	if (r == 0)
		r = stash_store_listxattr(fs->store, path, buf, size);
	reply_xattr_value(req, buf, r, size);
	free(buf);
}

static void stashfs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct stashfs *fs = fs_of(req);
	REQ_PATH(path);
	int r = ino_path(fs, ino, NULL, &path, NULL);

	if (r == 0)
		r = stash_store_removexattr(fs->store, path, name);
	reply_err(req, r);
}

const struct fuse_lowlevel_ops stashfs_ops = {
	.init = stashfs_op_init,
	.lookup = stashfs_op_lookup,
	.forget = stashfs_op_forget,
	.forget_multi = stashfs_op_forget_multi,
	.getattr = stashfs_op_getattr,
	.setattr = stashfs_op_setattr,
	.mkdir = stashfs_op_mkdir,
	.unlink = stashfs_op_unlink,
	.rmdir = stashfs_op_rmdir,
	.rename = stashfs_op_rename,
	.link = stashfs_op_link,
	.symlink = stashfs_op_symlink,
	.mknod = stashfs_op_mknod,
	.open = stashfs_op_open,
	.create = stashfs_op_create,
	.read = stashfs_op_read,
	.write = stashfs_op_write,
	.flush = stashfs_op_flush,
	.release = stashfs_op_release,
	.fsync = stashfs_op_fsync,
	.opendir = stashfs_op_opendir,
	.readdir = stashfs_op_readdir,
	.releasedir = stashfs_op_releasedir,
	.statfs = stashfs_op_statfs,
	.setxattr = stashfs_op_setxattr,
	.getxattr = stashfs_op_getxattr,
	.listxattr = stashfs_op_listxattr,
	.removexattr = stashfs_op_removexattr,
};

/* ---- the sweeper ------------------------------------------------------ */

/* The sweeper removed @path: the kernel must forget the name (no ghosts). */
static void expired(void *ctx, const char *path)
{
	struct stashfs *fs = ctx;
	struct node *n = fs->root;
	REQ_PATH(buf);
	char *comp, *save = NULL, *leaf = NULL;
	fuse_ino_t parent = 0;

	stashfs_waits_changed(fs, path);
	buf = strdup(path);
	if (!buf)
		return;
	pthread_mutex_lock(&fs->lock);
	for (comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		if (leaf && !(n = node_by_name(fs, n, leaf)))
			break;
		leaf = comp;
	}
	if (n && leaf)
		parent = node_ino(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (parent) {
		fuse_lowlevel_notify_inval_entry(fs->se, parent, leaf, strlen(leaf));
		LOG(FUSE_LOG_INFO, "expired %s\n", path);
	}
}

static void *sweeper_main(void *arg)
{
	struct stashfs *fs = arg;

	stash_store_scan(fs->store, expired, fs);
	pthread_mutex_lock(&fs->sweep_lock);
	while (!fs->sweep_stop) {
		struct timespec until;
		int64_t next;
		double wait = fs->cfg.sweep_interval;

		pthread_mutex_unlock(&fs->sweep_lock);
		stash_store_sweep(fs->store, expired, fs, &next);
		nodes_trim(fs);
		pthread_mutex_lock(&fs->sweep_lock);
		clock_gettime(CLOCK_REALTIME, &until);
		if (next) {
			double left = (double)(next - ((int64_t)until.tv_sec * 1000 +
						       until.tv_nsec / 1000000)) / 1000.0;

			if (left < wait)
				wait = left > 0.005 ? left : 0.005;
		}
		until.tv_sec += (time_t)wait;
		until.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (!fs->sweep_stop)
			pthread_cond_timedwait(&fs->sweep_cond, &fs->sweep_lock, &until);
	}
	pthread_mutex_unlock(&fs->sweep_lock);
	return NULL;
}

int stashfs_sweeper_start(struct stashfs *fs)
{
	pthread_mutex_init(&fs->sweep_lock, NULL);
	pthread_cond_init(&fs->sweep_cond, NULL);
	fs->sweep_stop = false;
	return -pthread_create(&fs->sweeper, NULL, sweeper_main, fs);
}

void stashfs_sweeper_stop(struct stashfs *fs)
{
	pthread_mutex_lock(&fs->sweep_lock);
	fs->sweep_stop = true;
	pthread_cond_signal(&fs->sweep_cond);
	pthread_mutex_unlock(&fs->sweep_lock);
	pthread_join(fs->sweeper, NULL);
	pthread_cond_destroy(&fs->sweep_cond);
	pthread_mutex_destroy(&fs->sweep_lock);
}
