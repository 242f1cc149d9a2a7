// SPDX-License-Identifier: MIT
/*
 * stream.c - append-only streams and the audit trail of linked stashes.
 *
 * A stream under streams/ is appended in place (O_APPEND on the backing
 * file) under a stream lock, so each write lands whole and in order.  A
 * stream whose user.stash.linked_stash names a stash receives one JSON line
 * per committed change of that stash.
 *
 * Finding the streams of a stash must be cheap on every commit, so links
 * are indexed in BACKING/.stashfs/links/<hash of the stash path>, one
 * "stash<TAB>stream" line per link.  The index is only a hint: before
 * appending, the stream's own xattr is checked, so a stale line (a stream
 * deleted, renamed or relinked) is skipped.
 *
 * Audit and commit are one unit through a journal: before the stash is
 * renamed into place, the records to append are written (and fsynced) to
 * tmp/<instance>/j<n>; after the rename they are appended and the journal
 * removed.  At start-up, journals left by a dead instance are replayed:
 * when the change did commit, every record not yet in its stream is
 * appended; when it did not, the journal is dropped.  So a committed change
 * is in each linked stream exactly once, and a change that did not commit
 * is in none.
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

#include "stashfs/json.h"
#include "stashfs/sha256.h"
#include "access.h"
#include "locks.h"
#include "commit.h"
#include "file.h"
#include "stream.h"
#include "store_priv.h"

#define INLINE_JSON_MAX (64 * 1024)
#define INLINE_TEXT_MAX 4096
/*
 * A record's data as size and hash, for streams some of whose readers may
 * not read the stash (access_open_to).  Kept beside the record, also in
 * the journal, and never appended itself.
 */
#define WITHHELD_KEY "withheld:"

static uint64_t fnv64(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void index_name(const char *stash, char out[32])
{
	snprintf(out, 32, "%016" PRIx64, fnv64(stash));
}

bool stream_path_ok(const char *stash)
{
	return backing_name_ok(stash) && strncmp(stash, STASH_STREAMS_DIR "/",
						 strlen(STASH_STREAMS_DIR) + 1) != 0;
}

/* ---- the link index --------------------------------------------------- */

/* Read the index lines of @stash's hash into a new buffer ("" if none). */
static char *index_read(struct stash_store *st, const char *stash)
{
	char name[32], *text = NULL;
	struct stat sb;
	size_t len;
	int fd;

	index_name(stash, name);
	fd = openat(st->links_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) < 0 || backing_slurp(fd, sb.st_size, &text, &len) < 0)
		text = NULL;
	close(fd);
	return text;
}

/*
 * Add (@add) or remove the line "@stash TAB @stream" in the index.  Takes the
 * stash's name lock; the caller holds no name lock.
 */
int stream_index_update(struct stash_store *st, const char *stash, const char *stream, bool add)
{
	char name[32], tmp[64], *text;
	unsigned s = store_lock_name(st, stash);
	size_t want = strlen(stash) + strlen(stream) + 2;
	FILE *out;
	int fd, r = 0;
	bool found = false;

	index_name(stash, name);
	text = index_read(st, stash);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(st->links_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	out = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!out) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	for (char *line = text, *nl; line && *line; line = nl + 1) {
		char *tab = strchr(line, '\t');

		nl = strchr(line, '\n');
		if (!nl || !tab || tab > nl)
			break;
		if ((size_t)(nl - line + 1) == want && strncmp(line, stash, (size_t)(tab - line)) == 0 &&
		    strlen(stash) == (size_t)(tab - line) &&
		    strncmp(tab + 1, stream, (size_t)(nl - tab - 1)) == 0) {
			found = true;
			if (!add)
				continue;
		}
		fwrite(line, 1, (size_t)(nl - line + 1), out);
	}
	if (add && !found)
		fprintf(out, "%s\t%s\n", stash, stream);
	if (fflush(out) != 0 || (st->opts.sync == STASH_SYNC_ALWAYS && fsync(fd) < 0))
		r = errno ? -errno : -EIO;      /* stdio sets errno when a write fails */
	fclose(out);
	if (r == 0 && renameat(st->links_fd, tmp, st->links_fd, name) < 0)
		r = -errno;
out:
	free(text);
	store_unlock_name(st, s);
	return r;
}

/*
 * The streams linked to @stash: a NULL-terminated array of paths (caller
 * frees with stream_list_free), or NULL when there are none.
 */
static char **linked_streams(struct stash_store *st, const char *stash)
{
	char *text = index_read(st, stash);
	char **list = NULL;
	size_t n = 0;

	for (char *line = text, *nl; line && *line; line = nl + 1) {
		char *tab = strchr(line, '\t');
		char **grown;

		nl = strchr(line, '\n');
		if (!nl || !tab || tab > nl)
			break;
		*nl = '\0';
		*tab = '\0';
		if (strcmp(line, stash) != 0)
			continue;       /* another stash with the same hash */
		grown = realloc(list, (n + 2) * sizeof(*list));
		if (!grown)
			break;
		list = grown;
		list[n] = strdup(tab + 1);
		if (list[n])
			n++;
		list[n] = NULL;
	}
	free(text);
	return list;
}

static void stream_list_free(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}

bool stream_linked(struct stash_store *st, const char *stash)
{
	char **list = linked_streams(st, stash);
	bool linked = list != NULL;

	stream_list_free(list);
	return linked;
}

/* ---- records ---------------------------------------------------------- */

static void now_iso(char out[64])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	backing_iso_time(&ts, true, out);
}

static void process_name(pid_t pid, char out[32])
{
	char path[64];
	ssize_t n = 0;
	int fd;

	out[0] = '\0';
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, 31);
		close(fd);
	}
	if (n > 0 && out[n - 1] == '\n')
		n--;
	out[n > 0 ? n : 0] = '\0';
}

static bool printable_text(const char *s, size_t len)
{
	json_t *j;

	if (memchr(s, '\0', len))
		return false;
	/* jansson checks UTF-8 for us. */
	j = json_stringn(s, len);
	if (!j)
		return false;
	json_decref(j);
	return true;
}

static json_t *digest(const char *bytes, size_t len)
{
	struct stash_sha256 c;
	char hex[65];

	stash_sha256_init(&c);
	stash_sha256_update(&c, bytes, len);
	stash_sha256_hex(&c, hex);
	return json_pack("{s:I,s:s}", "size", (json_int_t)len, "sha256", hex);
}

/*
 * What a put records: the document if JSON, short text as is, else size and
 * hash.  *@withheld gets the size and hash when the data shows the content.
 */
static json_t *content_data(int fd, json_t **withheld)
{
	char *text = NULL, hex[65];
	struct stat sb;
	size_t len = 0;
	json_t *data = NULL;

	*withheld = NULL;
	if (fstat(fd, &sb) < 0)
		return json_null();
	if (sb.st_size <= INLINE_JSON_MAX && backing_slurp(fd, sb.st_size, &text, &len) == 0) {
		if (len)
			data = stash_json_parse(text, len, NULL);
		if (!data && len <= INLINE_TEXT_MAX && printable_text(text, len))
			data = json_stringn(text, len);
		if (data)
			*withheld = digest(text, len);
	}
	if (!data) {
		if (stash_sha256_fd(fd, hex) < 0)
			hex[0] = '\0';
		data = json_pack("{s:I,s:s}", "size", (json_int_t)sb.st_size, "sha256", hex);
	}
	free(text);
	return data;
}

/* A merge's patch as size and hash of its compact text. */
static json_t *patch_digest(json_t *patch)
{
	size_t len = 0;
	char *text = stash_json_dump(patch, 0, &len);
	json_t *d;

	if (text && len && text[len - 1] == '\n')
		len--;  /* the patch as one would write it */
	d = text ? digest(text, len) : NULL;

	free(text);
	return d;
}

/* ---- appending -------------------------------------------------------- */

/* Is the stream at @fd still linked to @stash (the index is only a hint)? */
static bool still_linked(int fd, const char *stash)
{
	char buf[PATH_MAX];
	ssize_t n = fgetxattr(fd, XATTR_LINKED, buf, sizeof(buf) - 1);

	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strcmp(buf, stash) == 0;
}

enum {
	SEEN_OURS = 1,          /* the journal's own record */
	SEEN_THEIRS = 2,        /* another record with the same version */
	SEEN_LATER = 4,         /* a record of a later version of the stash */
};

static bool same_field(json_t *a, json_t *b, const char *key)
{
	return json_equal(json_object_get(a, key), json_object_get(b, key));
}

/*
 * What @fd holds, at or after byte @from, of the records of @rec's stash:
 * @rec itself (same version, op, time and writer), another record of that
 * version, a later version.  Recovery only, so a plain scan is fine.
 */
static int scan_records(int fd, off_t from, json_t *rec)
{
	const char *stash = json_string_value(json_object_get(rec, "stash"));
	json_int_t v = json_integer_value(json_object_get(rec, "version"));
	struct stat sb;
	char *text = NULL;
	ssize_t len;
	int seen = 0;

	if (!stash || fstat(fd, &sb) < 0 || sb.st_size <= from)
		return 0;
	text = malloc((size_t)(sb.st_size - from) + 1);
	if (!text)
		return 0;
	len = pread(fd, text, (size_t)(sb.st_size - from), from);
	text[len > 0 ? len : 0] = '\0';
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		json_t *r;
		json_int_t rv;

		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		r = json_loads(line, 0, NULL);
		if (r && json_is_string(json_object_get(r, "stash")) &&
		    strcmp(json_string_value(json_object_get(r, "stash")), stash) == 0) {
			rv = json_integer_value(json_object_get(r, "version"));
			if (rv > v)
				seen |= SEEN_LATER;
			else if (rv == v)
				seen |= same_field(r, rec, "op") && same_field(r, rec, "time") &&
					same_field(r, rec, "pid") ? SEEN_OURS : SEEN_THEIRS;
		}
		json_decref(r);
	}
	free(text);
	return seen;
}

/*
 * Append @rec (without seq) to stream @stream if it is still linked to
 * @stash.  With @from >= 0 (recovery), skip it if already there.
 */
static int append_record(struct stash_store *st, const char *stream, const char *stash,
			 json_t *rec, off_t from)
{
	unsigned s = store_lock_stream(st, stream);
	json_t *line = NULL, *withheld;
	struct stat sb;
	char *text = NULL, buf[32];
	size_t len = 0;
	uint64_t seq;
	int fd, r = 0;

	fd = store_open_beneath(st, stream, O_RDWR | O_APPEND | O_NONBLOCK, 0);
	if (fd < 0 || !still_linked(fd, stash))
		goto out;
	if (from >= 0 && (scan_records(fd, from, rec) & SEEN_OURS))
		goto out;
	seq = (uint64_t)backing_xattr_number(fd, XATTR_SEQ, 0) + 1;
	line = json_pack("{s:I}", "seq", (json_int_t)seq);
	if (!line || json_object_update(line, rec) < 0) {
		r = -ENOMEM;
		goto out;
	}
	/* Judged now, not at link time: modes change, stashes move. */
	withheld = json_object_get(rec, WITHHELD_KEY);
	if (withheld && (fstat(fd, &sb) < 0 || !access_open_to(st, &sb, stash)))
		json_object_set(line, "data", withheld);
	json_object_del(line, WITHHELD_KEY);
	text = stash_json_dump(line, 0, &len);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	/* Seq first: a crash between the two never reuses a number. */
	snprintf(buf, sizeof(buf), "%" PRIu64, seq);
	if (fsetxattr(fd, XATTR_SEQ, buf, strlen(buf), 0) < 0)
		r = -errno;
	else
		r = backing_write_all(fd, text, len);
	if (r == 0 && st->opts.sync == STASH_SYNC_ALWAYS && fdatasync(fd) < 0)
		r = -errno;
out:
	if (fd >= 0)
		close(fd);
	store_unlock_stream(st, s);
	free(text);
	json_decref(line);
	return r;
}

/* ---- the audit of one change ------------------------------------------ */

struct stream_audit {
	char **streams;
	json_t *rec;            /* the record without seq */
	json_t *journal;        /* what recovery needs */
	char jname[48];
};

/*
 * Write @a's journal (the record, each linked stream's size now, the new
 * content's inode) to tmp/<instance>/j<n>, synced: what recovery replays
 * if this instance dies before the records are appended.
 */
static int journal_write(struct stash_store *st, struct stream_audit *a, const char *stash,
			 int content_fd)
{
	struct stat cs = { .st_ino = 0 };
	char *text;
	size_t len = 0;
	int fd, r = 0;

	/* The new content's inode tells recovery whether the rename happened. */
	if (content_fd >= 0 && fstat(content_fd, &cs) < 0)
		return -errno;
	a->journal = json_pack("{s:s,s:O,s:[],s:I}", "stash", stash, "record", a->rec,
			       "streams", "ino", (json_int_t)cs.st_ino);
	if (!a->rec || !a->journal)
		return -ENOMEM;
	for (size_t i = 0; a->streams[i]; i++) {
		struct stat sb;
		int sfd = store_open_beneath(st, a->streams[i], O_PATH, 0);
		off_t size = 0;         /* a stream removed meanwhile has nothing to keep */

		/* Where recovery cuts the stream back to if the change never landed. */
		if (sfd >= 0 && fstat(sfd, &sb) < 0)
			r = -errno;
		else if (sfd >= 0)
			size = sb.st_size;
		if (sfd >= 0)
			close(sfd);
		if (r < 0)
			return r;
		json_array_append_new(json_object_get(a->journal, "streams"),
				      json_pack("{s:s,s:I}", "path", a->streams[i], "from",
						(json_int_t)size));
	}
	text = stash_json_dump(a->journal, 0, &len);
	snprintf(a->jname, sizeof(a->jname), "j%" PRIu64, (uint64_t)atomic_fetch_add(&st->tmp_seq, 1));
	fd = openat(st->tmp_fd, a->jname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	r = !text ? -ENOMEM : fd < 0 ? -errno : backing_write_all(fd, text, len);
	if (r == 0 && st->opts.sync == STASH_SYNC_ALWAYS && fdatasync(fd) < 0)
		r = -errno;
	if (r < 0) {
		if (fd >= 0) {
			close(fd);
			unlinkat(st->tmp_fd, a->jname, 0);
		}
		free(text);
		return r;
	}
	close(fd);
	free(text);
	return 0;
}

int stream_audit_begin(struct stash_store *st, const char *stash, const char *op,
		       uint64_t version, json_t *data, int content_fd,
		       const struct stash_caller *who, struct stream_audit **out)
{
	struct stream_audit *a;
	json_t *withheld = NULL;
	char when[64], comm[32];
	int r;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->streams = linked_streams(st, stash);
	if (!a->streams) {
		free(a);
		return 0;       /* not linked: nothing to record */
	}
	now_iso(when);
	process_name(who ? who->pid : 0, comm);
	if (!data) {
		data = content_fd >= 0 ? content_data(content_fd, &withheld) : json_null();
	} else {
		json_incref(data);
		if (strcmp(op, "merge") == 0)
			withheld = patch_digest(data);
	}
	a->rec = json_pack("{s:s,s:s,s:s,s:I,s:o,s:i,s:i,s:s}", "time", when, "stash", stash,
			   "op", op, "version", (json_int_t)version, "data", data,
			   "uid", who ? (int)who->uid : -1, "pid", who ? (int)who->pid : 0,
			   "comm", comm);
	if (a->rec && withheld)
		json_object_set(a->rec, WITHHELD_KEY, withheld);
	json_decref(withheld);
	r = journal_write(st, a, stash, content_fd);
	if (r < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	stream_audit_abort(st, a);
	return r;
}

void stream_audit_commit(struct stash_store *st, struct stream_audit *a)
{
	const char *stash;

	if (!a)
		return;
	stash = json_string_value(json_object_get(a->rec, "stash"));
	for (size_t i = 0; a->streams[i]; i++)
		append_record(st, a->streams[i], stash, a->rec, -1);
	stream_audit_abort(st, a);
}

void stream_audit_abort(struct stash_store *st, struct stream_audit *a)
{
	if (!a)
		return;
	if (a->jname[0])
		unlinkat(st->tmp_fd, a->jname, 0);
	stream_list_free(a->streams);
	json_decref(a->rec);
	json_decref(a->journal);
	free(a);
}

/*
 * Did the change of journal @j commit?  Other daemons may have changed the
 * stash since, so the streams are asked first: our record already there
 * (partly appended) says yes, another record of our version says another
 * daemon made that version and ours never landed, a record of a later
 * version says the history went on from ours.  Without records, the stash
 * itself tells: gone after a delete or rename away, or still our file.
 */
static bool committed(struct stash_store *st, json_t *j)
{
	json_t *rec = json_object_get(j, "record"), *s;
	const char *stash = json_string_value(json_object_get(rec, "stash"));
	const char *op = json_string_value(json_object_get(rec, "op"));
	json_int_t ino = json_integer_value(json_object_get(j, "ino"));
	struct stat sb;
	int seen = 0, fd;
	size_t i;

	if (!stash || !op)
		return false;
	json_array_foreach(json_object_get(j, "streams"), i, s) {
		const char *path = json_string_value(json_object_get(s, "path"));

		fd = path ? store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0) : -1;
		if (fd >= 0) {
			seen |= scan_records(fd, (off_t)json_integer_value(json_object_get(s, "from")),
					     rec);
			close(fd);
		}
	}
	if (seen & SEEN_OURS)
		return true;
	if (seen & SEEN_THEIRS)
		return false;
	if (seen & SEEN_LATER)
		return true;
	fd = store_open_beneath(st, stash, O_RDONLY | O_NONBLOCK, 0);
	if (strcmp(op, "delete") == 0 || strcmp(op, "expire") == 0 ||
	    json_object_get(json_object_get(rec, "data"), "to")) {
		/* Gone from this name: a delete, an expiry, a rename away. */
		if (fd >= 0)
			close(fd);
		return fd < 0;
	}
	if (fd < 0)
		return false;
	/* A put or merge: the name still holds the very file we renamed in. */
	i = fstat(fd, &sb) == 0 && (ino == 0 || (json_int_t)sb.st_ino == ino) &&
	    backing_read_version(fd) == (uint64_t)json_integer_value(json_object_get(rec, "version"));
	close(fd);
	return i;
}

void stream_recover_journal(struct stash_store *st, int dirfd, const char *name)
{
	json_t *j = NULL, *rec, *streams, *s;
	char *text = NULL;
	struct stat sb;
	size_t len, i;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && backing_slurp(fd, sb.st_size, &text, &len) == 0)
		j = json_loadb(text, len, 0, NULL);
	close(fd);
	rec = json_object_get(j, "record");
	streams = json_object_get(j, "streams");
	if (rec && json_is_array(streams) && committed(st, j)) {
		json_array_foreach(streams, i, s) {
			const char *path = json_string_value(json_object_get(s, "path"));

			if (path)
				append_record(st, path, json_string_value(json_object_get(rec, "stash")),
					      rec, (off_t)json_integer_value(json_object_get(s, "from")));
		}
	}
	json_decref(j);
	free(text);
}

/* The stash a stream links to, into @buf (size PATH_MAX); 0 or -errno. */
int stream_read_link(struct stash_store *st, const char *stream, char *buf)
{
	int fd = store_open_beneath(st, stream, O_RDONLY | O_NONBLOCK, 0);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = fgetxattr(fd, XATTR_LINKED, buf, PATH_MAX - 1);
	close(fd);
	if (n <= 0)
		return -ENODATA;
	buf[n] = '\0';
	return 0;
}

/*
 * A rename of a stash changes two names: journal one record for each (the
 * moved file's version, where it came from, where it went).
 */
static int audit_rename(struct commit *c, struct stream_audit ***state)
{
	struct stream_audit **a = calloc(2, sizeof(*a));
	json_t *d;
	int r;

	if (!a)
		return -ENOMEM;
	*state = a;
	d = json_pack("{s:s}", "from", c->from);
	r = stream_audit_begin(c->st, c->path, "rename", c->version, d, -1, c->who, &a[0]);
	json_decref(d);
	if (r == 0) {
		d = json_pack("{s:s}", "to", c->path);
		r = stream_audit_begin(c->st, c->from, "rename", c->version, d, -1, c->who, &a[1]);
		json_decref(d);
	}
	if (r < 0) {
		/* A refusing prepare is not aborted: drop what it began. */
		stream_audit_abort(c->st, a[0]);
		free(a);
		*state = NULL;
	}
	return r;
}

/*
 * Commit hooks: before the rename, journal the record of the change for
 * every stream linked to the stash; after it, append them; if the rename
 * did not happen, drop the journal.
 */
static int stream_commit_prepare(struct commit *c, void **state)
{
	static const char *const ops[] = {
		[COMMIT_PUT] = "put", [COMMIT_MERGE] = "merge",
		[COMMIT_DELETE] = "delete", [COMMIT_EXPIRE] = "expire",
	};
	bool removal = c->op == COMMIT_DELETE || c->op == COMMIT_EXPIRE;

	if (c->op == COMMIT_RENAME)
		return c->from_kind == STASH_KIND_STASH && c->srcfd >= 0 ?
			audit_rename(c, (struct stream_audit ***)state) : 0;
	/* A stream's own changes are not audited (it is the audit). */
	if (strncmp(c->path, STASH_STREAMS_DIR "/", strlen(STASH_STREAMS_DIR) + 1) == 0)
		return 0;
	return stream_audit_begin(c->st, c->path, ops[c->op], c->version,
				  removal ? json_null() : c->patch, c->tmpfd, c->who,
				  (struct stream_audit **)state);
}

/* End the audit records of @state: appended (@commit) or dropped. */
static void audit_end(struct commit *c, void *state, bool commit)
{
	struct stream_audit **a = c->op == COMMIT_RENAME ? state : (struct stream_audit **)&state;

	for (int i = 0; a && i < (c->op == COMMIT_RENAME ? 2 : 1); i++) {
		if (commit)
			stream_audit_commit(c->st, a[i]);
		else
			stream_audit_abort(c->st, a[i]);
	}
	if (c->op == COMMIT_RENAME)
		free(state);
}

static void stream_commit_published(struct commit *c, void *state)
{
	audit_end(c, state, true);
}

static void stream_commit_aborted(struct commit *c, void *state)
{
	audit_end(c, state, false);
}

/* The link moves with a renamed stream: index it under its new name. */
static void stream_commit_unlocked(struct commit *c)
{
	char target[PATH_MAX];

	if (c->op == COMMIT_RENAME && c->from_kind == STASH_KIND_STREAM &&
	    stream_read_link(c->st, c->path, target) == 0)
		stream_index_update(c->st, target, c->path, true);
}

const struct commit_hook stream_commit_hook = {
	.prepare = stream_commit_prepare,
	.published = stream_commit_published,
	.aborted = stream_commit_aborted,
	.unlocked = stream_commit_unlocked,
};

/* Streams are appended in place: the handle holds the backing file, O_APPEND. */
static int stream_file_open(struct stash_file *f, const char *path, int flags, mode_t mode,
			    const struct stash_caller *who, struct stash_error *err)
{
	bool writable = (flags & O_ACCMODE) != O_RDONLY;
	int oflags = (writable ? O_RDWR | O_APPEND : O_RDONLY) | O_NONBLOCK;
	struct stat sb;

	if (flags & O_CREAT)
		oflags |= O_CREAT | (flags & O_EXCL);
	f->base_fd = store_open_object(f->st, f->path, oflags, mode & 07777);
	if (f->base_fd < 0)
		return f->base_fd;
	if (fstat(f->base_fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return S_ISDIR(sb.st_mode) ? -EISDIR : -ENOENT;
	if ((flags & O_TRUNC) && sb.st_size > 0)
		return stash_error_set(err, EPERM,
			"%s is an append-only stream: use >> to add to it", path);
	if ((flags & O_CREAT) && who && sb.st_size == 0 && sb.st_uid != who->uid)
		(void)!fchown(f->base_fd, who->uid, who->gid);
	f->base_size = sb.st_size;
	return 0;
}

/* One write() appends one record to a stream. */
static ssize_t stream_file_write(struct stash_file *f, const void *buf, size_t size, off_t off,
				 struct stash_error *err)
{
	unsigned s = store_lock_stream(f->st, f->path);
	struct stat sb;
	ssize_t n = 0;

	(void)off;      /* O_APPEND: a stream only grows */

	/*
	 * The size limit holds for what writers append, refused whole; audit
	 * records are appended whatever the size (a committed change is always
	 * recorded), so they may take a stream past it.
	 */
	if (fstat(f->base_fd, &sb) < 0) {
		n = -errno;
		goto out;
	}
	n = check_size(f, (uint64_t)sb.st_size + size, err);
	if (n < 0) {
		if (err)
			fsetxattr(f->base_fd, XATTR_ERROR, err->text, strlen(err->text), 0);
		goto out;
	}
	/* One write() is one record: under the lock it lands whole, in order. */
	while ((size_t)n < size) {
		ssize_t w = write(f->base_fd, (const char *)buf + n, size - (size_t)n);

		if (w < 0) {
			n = stash_error_set(err, errno, "%s: append failed: %s", f->path,
					    strerror(errno));
			break;
		}
		n += w;
	}
	if (n > 0 && want_sync(f->st, f->base_fd) && fdatasync(f->base_fd) < 0)
		n = stash_error_set(err, errno, "%s: append not synced: %s", f->path, strerror(errno));
out:
	store_unlock_stream(f->st, s);
	return n;
}

const struct file_kind stream_file_kind = {
	.open = stream_file_open,
	.write = stream_file_write,
};
