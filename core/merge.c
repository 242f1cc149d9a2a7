// SPDX-License-Identifier: MIT
/*
 * merge.c - merges through NAME.json: the write-time check of a patch, the
 * cache of parsed documents, and the queue that commits the merges of one
 * name together.
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
#include "binding.h"
#include "commit.h"
#include "file.h"
#include "lifecycle.h"
#include "locks.h"
#include "merge.h"
#include "reap.h"
#include "store_priv.h"
#include "stream.h"

#define DOC_CACHE_SLOTS 64              /* parsed documents kept for merges */
#define DOC_CACHE_MAX (1024 * 1024)     /* largest document kept */

/* A parsed document kept for the next merge of the same file (merge.c). */
struct doc_cache_entry {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	json_t *doc;            /* owned */
};

/* Merges of one lock stripe waiting for its name lock (merge.c). */
struct merge_req;
struct merge_queue {
	struct merge_req *head;
	bool busy;              /* a thread is committing this stripe's merges */
};

/* What merges of a store share (st->merge). */
struct merge_state {
	pthread_mutex_t docs_lock;
	struct doc_cache_entry docs[DOC_CACHE_SLOTS];
	pthread_mutex_t merge_lock;     /* the merge queues */
	pthread_cond_t merge_done;
	struct merge_queue merges[LOCK_STRIPES];
};

/*
 * The parsed documents of the stashes merged last, so that a merge parses
 * only its patch.  An entry is valid only for the very file it was written
 * to (device, inode, size and mtime): any other commit, also another
 * daemon's, replaces the file and misses.  Direct-mapped by the path's
 * hash; the caller holds the path's name lock, the cache lock guards slots.
 */
static struct doc_cache_entry *doc_slot(struct stash_store *st, const char *path)
{
	return &st->merge->docs[backing_stripe(path) % DOC_CACHE_SLOTS];
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

	pthread_mutex_lock(&st->merge->docs_lock);
	if (doc_entry_is(e, path, sb))
		doc = json_copy(e->doc);
	pthread_mutex_unlock(&st->merge->docs_lock);
	return doc;
}

/* Take the cached document of @path if it is that of the file @sb (new reference). */
static json_t *doc_cache_take(struct stash_store *st, const char *path, const struct stat *sb)
{
	struct doc_cache_entry *e = doc_slot(st, path);
	json_t *doc = NULL;

	pthread_mutex_lock(&st->merge->docs_lock);
	if (e->path && strcmp(e->path, path) == 0) {
		if (doc_entry_is(e, path, sb)) {
			doc = e->doc;
			e->doc = NULL;
		}
		doc_entry_clear(e);
	}
	pthread_mutex_unlock(&st->merge->docs_lock);
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
	pthread_mutex_lock(&st->merge->docs_lock);
	doc_entry_clear(e);
	e->path = copy;
	e->dev = sb.st_dev;
	e->ino = sb.st_ino;
	e->size = sb.st_size;
	e->mtime = sb.st_mtim;
	e->doc = doc;
	pthread_mutex_unlock(&st->merge->docs_lock);
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
int check_view_patch(struct stash_file *f, struct stash_error *err)
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
		r = backing_write_all(out.fd, dumped, dlen);
	if (r == 0) {
		struct commit c = { .op = COMMIT_MERGE, .st = f->st, .path = f->path, .curfd = cur,
				    .tmpfd = out.fd, .tmpname = out.tmp_name,
				    .create_mode = f->create_mode,
				    .who = who, .doc = doc, .patch = patch,
				    .validated = still_checked(f, cur, &sb), .err = err };

		r = commit_publish(&c);
		v = c.version;
	}
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
	if (backing_is_schema_path(f->path))
		return false;
	/* So do conditional merges: each checks the version the one before made. */
	for (struct merge_req *m = batch; m; m = m->next)
		if (m->f->expect)
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
	{
		/* One file for n merges: it counts n versions, validated as it was merged. */
		struct commit c = { .st = st, .path = f->path, .curfd = cur, .tmpfd = out.fd,
				    .tmpname = out.tmp_name, .create_mode = f->create_mode,
				    .who = batch->who, .doc = doc, .changes = n, .validated = true };

		r = commit_publish(&c);
		v = c.version;
	}
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
	pthread_mutex_lock(&st->merge->merge_lock);
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
	pthread_mutex_unlock(&st->merge->merge_lock);
	if (n == 1 || !merge_together(st, batch, n)) {
		for (struct merge_req *m = batch; m; m = m->next) {
			/* NAME@V.json: under the name lock, the commit's condition. */
			m->result = check_expected(m->f, m->err);
			if (m->result == 0)
				m->result = merge_one(m->f, m->patch, m->who, m->err);
			if (m->result == 0 && m->f->expect)
				m->f->expect = m->f->base_version;
		}
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
	struct merge_queue *q = &st->merge->merges[s];
	struct merge_req **pp, *done;

	pthread_mutex_lock(&st->merge->merge_lock);
	for (pp = &q->head; *pp; pp = &(*pp)->next)
		;
	*pp = req;
	while (!req->done) {
		if (q->busy) {
			pthread_cond_wait(&st->merge->merge_done, &st->merge->merge_lock);
			continue;
		}
		q->busy = true;
		pthread_mutex_unlock(&st->merge->merge_lock);
		/* The head stays while the stripe is busy: only a round removes. */
		done = merge_round(st, q, s, q->head->f->path);
		pthread_mutex_lock(&st->merge->merge_lock);
		for (; done; done = done->next)
			done->done = true;
		q->busy = false;
		pthread_cond_broadcast(&st->merge->merge_done);
	}
	pthread_mutex_unlock(&st->merge->merge_lock);
	return req->result;
}

/* Merge the handle's patch into the stash's document. */
int commit_merge(struct stash_file *f, const struct stash_caller *who,
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

int merge_init(struct stash_store *st)
{
	st->merge = calloc(1, sizeof(*st->merge));
	if (!st->merge)
		return -ENOMEM;
	pthread_mutex_init(&st->merge->docs_lock, NULL);
	pthread_mutex_init(&st->merge->merge_lock, NULL);
	pthread_cond_init(&st->merge->merge_done, NULL);
	return 0;
}

void merge_destroy(struct stash_store *st)
{
	if (!st->merge)
		return;
	for (int i = 0; i < DOC_CACHE_SLOTS; i++)
		doc_entry_clear(&st->merge->docs[i]);
	pthread_mutex_destroy(&st->merge->docs_lock);
	pthread_mutex_destroy(&st->merge->merge_lock);
	pthread_cond_destroy(&st->merge->merge_done);
	free(st->merge);
	st->merge = NULL;
}
