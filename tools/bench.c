// SPDX-License-Identifier: MIT
/*
 * bench.c - file-system micro-benchmark for stashfs and for the plain
 * directories it is compared with.
 *
 * Usage: bench --dir DIR --workload W [--threads T] [--seconds S | --ops N]
 *              [--json] [--label L] [--mode stashfs|plain]
 *              [--schema NAME] [--stream NAME]
 *
 * Runs one workload on DIR with T threads, either for S seconds or until N
 * operations (in total, over all threads) are done, and prints one line:
 * ops/s and p50/p90/p99 latency in microseconds, or one JSON object with
 * --json.  An operation is what a user of the file system does to get one
 * thing done, so on a plain directory it is what a careful client has to do
 * to get the same guarantee stashfs gives (a temp file renamed over the
 * target for an atomic replace, read-parse-set-write-rename for a merge).
 *
 * The mode comes from /proc/self/mountinfo (fstype fuse.stashfs means
 * stashfs mode), --mode overrides.  Each run prepares its own files first,
 * so runs are independent of each other; it does not clean the directory.
 * Latencies go into per-thread arrays (a reservoir sample once an array is
 * full, weighted by the ops it stands for when percentiles are computed).
 *
 * read-changed replaces the file (as replace does) before each read and
 * times only the read: its latencies are those of the first read after a
 * change; its ops/s counts the untimed replaces too.
 *
 * roundtrip (stashfs only) reads user.stash.requests on the mount root:
 * a request the daemon answers from memory and the kernel never caches, a
 * bare FUSE round trip.  read-big and replace-big read or replace a file of
 * --size bytes (100 MiB) in 1 MiB calls; the file is written once in setup
 * and reused while its size fits, so reads run from hot caches.
 *
 * On stashfs every run reads user.stash.requests before and after and
 * reports the daemon's requests per op by operation (untimed work, such as
 * read-changed's replace, included).
 *
 * It does not check performance against anything, compare runs, or repeat
 * itself: tools/compare.sh interleaves runs and takes medians.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define READ_SIZE 4096
#define REPLACE_SIZE 2048
#define APPEND_SIZE 100
#define CREATE_SIZE 100
#define MERGE_KEYS 5            /* keys per merge patch, ~100 bytes */
#define DOC_FIELDS 28           /* base document, ~2 KiB at indent 2 */
#define LAT_CAP (1u << 18)      /* latency samples kept per thread */
#define DEFAULT_SCHEMA "bench"
#define DEFAULT_STREAM "bench-link"
#define BIG_CHUNK (1u << 20)    /* read()/write() size of the big-file workloads */
#define BIG_DEFAULT (100u << 20)
#define REQUESTS_XATTR "user.stash.requests"

enum mode { MODE_AUTO, MODE_PLAIN, MODE_STASHFS };

enum workload {
	WL_READ, WL_STAT, WL_REPLACE, WL_REPLACE_FSYNC, WL_APPEND,
	WL_CREATE_UNLINK, WL_CREATE_NEW, WL_MERGE, WL_MERGE_SHARED, WL_MERGE_SCHEMA,
	WL_MERGE_STREAM, WL_READ_CHANGED, WL_ROUNDTRIP, WL_READ_BIG, WL_REPLACE_BIG,
};

static const char *const workload_names[] = {
	[WL_READ] = "read",
	[WL_STAT] = "stat",
	[WL_REPLACE] = "replace",
	[WL_REPLACE_FSYNC] = "replace-fsync",
	[WL_APPEND] = "append",
	[WL_CREATE_UNLINK] = "create-unlink",
	[WL_CREATE_NEW] = "create-new",
	[WL_MERGE] = "merge",
	[WL_MERGE_SHARED] = "merge-shared",
	[WL_MERGE_SCHEMA] = "merge-schema",
	[WL_MERGE_STREAM] = "merge-stream",
	[WL_READ_CHANGED] = "read-changed",
	[WL_ROUNDTRIP] = "roundtrip",
	[WL_READ_BIG] = "read-big",
	[WL_REPLACE_BIG] = "replace-big",
};
#define N_WORKLOADS (sizeof(workload_names) / sizeof(workload_names[0]))

struct config {
	const char *dir;
	enum workload wl;
	enum mode mode;
	char fstype[64];
	char mountpoint[PATH_MAX];      /* of the file system DIR is on */
	int threads;
	uint64_t big_size;       /* read-big, replace-big: bytes per file */
	double seconds;
	uint64_t ops_budget;     /* 0: run for `seconds` */
	bool json;
	const char *label;
	const char *schema;      /* NULL: no schema hook */
	bool schema_is_ours;     /* bench wrote schemas/<schema> itself */
	int schema_enforced;     /* -1 not probed, 0 a bad patch got in, 1 refused */
	const char *stream;      /* NULL: no stream hook */
};

struct worker {
	int id;
	pthread_t thread;
	uint64_t ops;
	uint64_t *lat;           /* ns per op, reservoir once ops > LAT_CAP */
	uint64_t rng;
	char path[PATH_MAX];     /* the file this thread works on */
	char tmp[PATH_MAX];      /* careful client's temp file, or the .json view */
	char stem[PATH_MAX - 32]; /* create-new: names are STEM<op> */
	char *buf;               /* data written / read */
	size_t bufcap;
	int err;                 /* errno of the failed op, 0 if none */
	char errwhat[PATH_MAX + 64];
};

static struct config cfg = {
	.schema_enforced = -1,
	.threads = 1,
	.seconds = 2.0,
	.mode = MODE_AUTO,
	.label = "",
};
static pthread_barrier_t start_barrier;
static atomic_bool stop_flag;
static atomic_uint_fast64_t ops_claimed;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static __attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Fail the op: remember errno and what failed, return -1. */
static __attribute__((format(printf, 2, 3))) int fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	int e = errno ? errno : EIO;

	if (!w->err) {
		w->err = e;
		va_start(ap, fmt);
		vsnprintf(w->errwhat, sizeof(w->errwhat), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void record(struct worker *w, uint64_t ns)
{
	uint64_t n = w->ops;

	if (n < LAT_CAP) {
		w->lat[n] = ns;
	} else {
		uint64_t j = xorshift(&w->rng) % (n + 1);

		if (j < LAT_CAP)
			w->lat[j] = ns;
	}
}

static void path_join(char *out, const char *name)
{
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", cfg.dir, name) >= PATH_MAX)
		die("path too long: %s/%s", cfg.dir, name);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read all of @path into w->buf (grown as needed); returns its length or -1. */
static ssize_t read_whole(struct worker *w, const char *path)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return fail(w, "open %s", path);
	for (;;) {
		ssize_t r;

		if (len + 1 >= w->bufcap) {
			size_t cap = w->bufcap * 2;
			char *nb = realloc(w->buf, cap);

			if (!nb) {
				close(fd);
				errno = ENOMEM;
				return fail(w, "read %s", path);
			}
			w->buf = nb;
			w->bufcap = cap;
		}
		r = read(fd, w->buf + len, w->bufcap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return fail(w, "read %s", path);
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	w->buf[len] = '\0';
	if (close(fd) < 0)
		return fail(w, "close %s", path);
	return (ssize_t)len;
}

/*
 * Write @len bytes of @data as the new content of @path.  stashfs: truncate
 * and write in place, the commit at close is atomic.  plain: the careful
 * client writes a temp file beside it and renames it over, because readers
 * must never see half a file.
 */
static int put_file_n(struct worker *w, const char *path, const char *data, size_t len,
		      uint64_t reps, bool sync)
{
	const char *target = cfg.mode == MODE_STASHFS ? path : w->tmp;
	int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return fail(w, "open %s", target);
	for (uint64_t i = 0; i < reps; i++) {
		if (write_all(fd, data, len) < 0) {
			close(fd);
			return fail(w, "write %s", target);
		}
	}
	if (sync && fsync(fd) < 0) {
		close(fd);
		return fail(w, "fsync %s", target);
	}
	/* On stashfs close is the commit: its error is the op's error. */
	if (close(fd) < 0)
		return fail(w, "close %s", target);
	if (cfg.mode == MODE_PLAIN && rename(w->tmp, path) < 0)
		return fail(w, "rename %s", path);
	return 0;
}

/* @len bytes of @data as the new content of @path, written once. */
static int put_file(struct worker *w, const char *path, const char *data, size_t len, bool sync)
{
	return put_file_n(w, path, data, len, 1, sync);
}

static int op_read(struct worker *w)
{
	size_t got = 0;
	int fd = open(w->path, O_RDONLY);

	if (fd < 0)
		return fail(w, "open %s", w->path);
	while (got < READ_SIZE) {
		ssize_t r = read(fd, w->buf + got, READ_SIZE - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			if (r == 0)
				errno = ENODATA;
			return fail(w, "read %s (%zu bytes)", w->path, got);
		}
		got += (size_t)r;
	}
	if (close(fd) < 0)
		return fail(w, "close %s", w->path);
	return 0;
}

/* A big file read whole in BIG_CHUNK read() calls (open + reads + close). */
static int op_read_big(struct worker *w)
{
	uint64_t got = 0;
	int fd = open(w->path, O_RDONLY);

	if (fd < 0)
		return fail(w, "open %s", w->path);
	for (;;) {
		ssize_t r = read(fd, w->buf, BIG_CHUNK);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return fail(w, "read %s", w->path);
		}
		if (r == 0)
			break;
		got += (uint64_t)r;
	}
	close(fd);
	if (got != cfg.big_size) {
		errno = EIO;
		return fail(w, "read %s: %llu bytes, expected %llu", w->path,
			    (unsigned long long)got, (unsigned long long)cfg.big_size);
	}
	return 0;
}

/* The bare round trip: a request the daemon answers from memory, never cached by the kernel. */
static int op_roundtrip(struct worker *w)
{
	if (getxattr(cfg.mountpoint, REQUESTS_XATTR, w->buf, w->bufcap) < 0)
		return fail(w, "getxattr %s %s", cfg.mountpoint, REQUESTS_XATTR);
	return 0;
}

static int op_stat(struct worker *w)
{
	struct stat st;

	if (stat(w->path, &st) < 0)
		return fail(w, "stat %s", w->path);
	return 0;
}

/* Stamp the op number into the data so no two writes are the same. */
static void stamp(struct worker *w, size_t len)
{
	char head[48];
	int n = snprintf(head, sizeof(head), "t%d op %llu\n", w->id, (unsigned long long)w->ops);

	memcpy(w->buf, head, (size_t)n < len ? (size_t)n : len);
}

static int op_replace(struct worker *w)
{
	stamp(w, REPLACE_SIZE);
	return put_file(w, w->path, w->buf, REPLACE_SIZE, cfg.wl == WL_REPLACE_FSYNC);
}

static int op_append(struct worker *w)
{
	int fd = open(w->path, O_WRONLY | O_APPEND | O_CREAT, 0644);

	if (fd < 0)
		return fail(w, "open %s", w->path);
	stamp(w, APPEND_SIZE);
	if (write_all(fd, w->buf, APPEND_SIZE) < 0) {
		close(fd);
		return fail(w, "append %s", w->path);
	}
	if (close(fd) < 0)
		return fail(w, "close %s", w->path);
	return 0;
}

static int op_create_unlink(struct worker *w)
{
	int fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL, 0644);

	if (fd < 0)
		return fail(w, "create %s", w->path);
	stamp(w, CREATE_SIZE);
	if (write_all(fd, w->buf, CREATE_SIZE) < 0) {
		close(fd);
		return fail(w, "write %s", w->path);
	}
	if (close(fd) < 0)
		return fail(w, "close %s", w->path);
	if (unlink(w->path) < 0)
		return fail(w, "unlink %s", w->path);
	return 0;
}

/*
 * `echo x > NAME` for a NAME nobody has used: a new file each op, left in
 * place (removed after the run, untimed).  stashfs: open(O_CREAT|O_TRUNC),
 * write, close; plain: the careful client's temp file renamed to NAME.
 */
static int op_create_new(struct worker *w)
{
	snprintf(w->path, sizeof(w->path), "%s%llu", w->stem, (unsigned long long)w->ops);
	stamp(w, CREATE_SIZE);
	return put_file(w, w->path, w->buf, CREATE_SIZE, false);
}

/* Removes what create-new made: not part of the measured run. */
static void remove_created(struct worker *ws)
{
	char path[PATH_MAX];

	for (int i = 0; i < cfg.threads; i++) {
		for (uint64_t n = 0; n < ws[i].ops; n++) {
			snprintf(path, sizeof(path), "%s%llu", ws[i].stem, (unsigned long long)n);
			if (unlink(path) < 0 && errno != ENOENT)
				die("unlink %s: %s", path, strerror(errno));
		}
	}
}

/*
 * The keys one merge sets: a unique "u<thread>_<op>" (merge-shared only,
 * it is what the lost-update count looks for) and MERGE_KEYS rotating
 * per-thread keys "t<thread>k<j>", so a plain merge keeps the document at
 * its size.  Calls @fn for each key.
 */
static void merge_keys(struct worker *w, void (*fn)(void *, const char *, long long), void *ctx)
{
	char key[64];
	long long v = 1000000000LL + (long long)w->ops;

	if (cfg.wl == WL_MERGE_SHARED) {
		snprintf(key, sizeof(key), "u%d_%llu", w->id, (unsigned long long)w->ops);
		fn(ctx, key, (long long)w->ops);
	}
	for (int j = 0; j < (cfg.wl == WL_MERGE_SHARED ? MERGE_KEYS - 1 : MERGE_KEYS); j++) {
		snprintf(key, sizeof(key), "t%dk%d", w->id, j);
		fn(ctx, key, v + j);
	}
}

struct patch_text {
	char *p;
	size_t len, cap;
};

static void patch_add(void *ctx, const char *key, long long v)
{
	struct patch_text *t = ctx;
	int n = snprintf(t->p + t->len, t->cap - t->len, "%s\"%s\": %lld",
			 t->len > 1 ? ", " : "", key, v);

	if (n > 0 && (size_t)n < t->cap - t->len)
		t->len += (size_t)n;
}

static void json_add(void *ctx, const char *key, long long v)
{
	json_object_set_new(ctx, key, json_integer(v));
}

static int op_merge(struct worker *w)
{
	if (cfg.mode == MODE_STASHFS) {
		char text[512];
		struct patch_text t = { text, 1, sizeof(text) - 2 };
		int fd;

		text[0] = '{';
		merge_keys(w, patch_add, &t);
		text[t.len++] = '}';
		text[t.len++] = '\n';
		fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			return fail(w, "open %s", w->tmp);
		if (write_all(fd, text, t.len) < 0) {
			close(fd);
			return fail(w, "write %s", w->tmp);
		}
		if (close(fd) < 0)
			return fail(w, "close %s (merge)", w->tmp);
		return 0;
	}

	/* The careful client: read, parse, set, write a temp file, rename over. */
	ssize_t len = read_whole(w, w->path);
	json_error_t jerr;
	json_t *doc;
	char *out;
	int r;

	if (len < 0)
		return -1;
	doc = json_loadb(w->buf, (size_t)len, 0, &jerr);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		errno = EINVAL;
		return fail(w, "parse %s: %s", w->path, jerr.text);
	}
	merge_keys(w, json_add, doc);
	out = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (!out) {
		errno = ENOMEM;
		return fail(w, "dump %s", w->path);
	}
	r = put_file(w, w->path, out, strlen(out), false);
	free(out);
	return r;
}

static int run_op(struct worker *w)
{
	switch (cfg.wl) {
	case WL_READ:
	case WL_READ_CHANGED:
		return op_read(w);
	case WL_STAT:
		return op_stat(w);
	case WL_ROUNDTRIP:
		return op_roundtrip(w);
	case WL_READ_BIG:
		return op_read_big(w);
	case WL_REPLACE_BIG:
		stamp(w, BIG_CHUNK);
		return put_file_n(w, w->path, w->buf, BIG_CHUNK, cfg.big_size / BIG_CHUNK, false);
	case WL_REPLACE:
	case WL_REPLACE_FSYNC:
		return op_replace(w);
	case WL_APPEND:
		return op_append(w);
	case WL_CREATE_UNLINK:
		return op_create_unlink(w);
	case WL_CREATE_NEW:
		return op_create_new(w);
	case WL_MERGE:
	case WL_MERGE_SHARED:
	case WL_MERGE_SCHEMA:
	case WL_MERGE_STREAM:
		return op_merge(w);
	}
	return -1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&start_barrier);
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		uint64_t t0, t1;

		if (cfg.ops_budget &&
		    atomic_fetch_add_explicit(&ops_claimed, 1, memory_order_relaxed) >= cfg.ops_budget)
			break;
		/* read-changed: the file changes before each read, untimed. */
		if (cfg.wl == WL_READ_CHANGED && put_file(w, w->path, w->buf, READ_SIZE, false) < 0) {
			atomic_store(&stop_flag, true);
			break;
		}
		t0 = now_ns();
		if (run_op(w) < 0) {
			atomic_store(&stop_flag, true);
			break;
		}
		t1 = now_ns();
		record(w, t1 - t0);
		w->ops++;
	}
	return NULL;
}

static bool is_merge(enum workload wl)
{
	return wl == WL_MERGE || wl == WL_MERGE_SHARED || wl == WL_MERGE_SCHEMA ||
	       wl == WL_MERGE_STREAM;
}

/* The ~2 KiB JSON object every merge run starts from; returns a new reference. */
static json_t *base_doc(void)
{
	json_t *doc = json_object();

	for (int i = 0; i < DOC_FIELDS; i++) {
		char key[32], val[64];

		snprintf(key, sizeof(key), "field%02d", i);
		snprintf(val, sizeof(val), "value %02d of the benchmark document", i);
		json_object_set_new(doc, key, json_string(val));
	}
	json_object_set_new(doc, "count", json_integer(0));
	return doc;
}

static void doc_name(int id, char *out, size_t n)
{
	/*
	 * Each merge workload has documents of its own: a schema binding or a
	 * stream link set up by one run must not weigh on another's.
	 * merge-shared: everybody on "shared"; merge: "doc", "doc-1", ...
	 */
	const char *base = cfg.wl == WL_MERGE_SCHEMA ? "sdoc" :
			   cfg.wl == WL_MERGE_STREAM ? "ldoc" : "doc";

	if (cfg.wl == WL_MERGE_SHARED)
		snprintf(out, n, "shared");
	else if (id == 0)
		snprintf(out, n, "%s", base);
	else
		snprintf(out, n, "%s-%d", base, id);
}

/* Create @path with @len bytes of @data directly (setup, not measured). */
static void setup_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write_all(fd, data, len) < 0 || close(fd) < 0)
		die("setup %s: %s", path, strerror(errno));
}

static void unsupported(const char *why)
{
	if (cfg.json) {
		json_t *o = json_object();
		char *s;

		json_object_set_new(o, "label", json_string(cfg.label));
		json_object_set_new(o, "workload", json_string(workload_names[cfg.wl]));
		json_object_set_new(o, "mode", json_string(cfg.mode == MODE_STASHFS ? "stashfs" : "plain"));
		json_object_set_new(o, "threads", json_integer(cfg.threads));
		json_object_set_new(o, "unsupported", json_true());
		json_object_set_new(o, "reason", json_string(why));
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		puts(s);
		free(s);
		json_decref(o);
	} else {
		printf("%s%s%s %s unsupported: %s\n", cfg.label, *cfg.label ? " " : "",
		       workload_names[cfg.wl], cfg.mode == MODE_STASHFS ? "stashfs" : "plain", why);
	}
	exit(0);
}

/* Write @text through @view; 0 if the write and the close (the commit) succeed. */
static int write_view(const char *view, const char *text)
{
	int fd = open(view, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int r;

	if (fd < 0)
		return -1;
	r = write_all(fd, text, strlen(text));
	if (close(fd) < 0)
		r = -1;
	return r;
}

/*
 * Does the binding validate?  A patch our schema refuses must fail; if it
 * gets in, put the document right again and say so: the run then measures
 * a merge without validation.
 */
static int probe_schema(struct worker *w)
{
	if (write_view(w->tmp, "{\"count\": \"not an integer\"}\n") < 0)
		return 1;
	if (write_view(w->tmp, "{\"count\": 0}\n") < 0)
		die("restoring %s after the schema probe: %s", w->path, strerror(errno));
	return 0;
}

/*
 * The schema and linked-stream hooks: stashfs features the merge runs
 * through once they exist.  A store without them refuses the xattr, and the
 * run reports "unsupported" instead of timing something else.
 */
static void setup_hooks(struct worker *ws)
{
	char why[PATH_MAX + 128];

	if (!cfg.schema && !cfg.stream)
		return;
	if (cfg.mode != MODE_STASHFS)
		unsupported("schema and stream hooks need a stashfs mount");
	if (cfg.schema) {
		char spath[PATH_MAX], sname[PATH_MAX];

		/*
		 * Our own schema: every key of the document and of the patches
		 * is checked, and a string "count" is refused so the probe
		 * below can tell a binding that validates from one that doesn't.
		 */
		if (cfg.schema_is_ours) {
			static const char schema[] =
				"{\"type\": \"object\", \"required\": [\"count\"],\n"
				" \"properties\": {\"count\": {\"type\": \"integer\", \"minimum\": 0}},\n"
				" \"patternProperties\": {\"^field\": {\"type\": \"string\", \"maxLength\": 200}},\n"
				" \"additionalProperties\": {\"type\": \"integer\"}}\n";
			int fd;

			snprintf(sname, sizeof(sname), "schemas/%s", cfg.schema);
			path_join(spath, sname);
			fd = open(spath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write_all(fd, schema, sizeof(schema) - 1) < 0 || close(fd) < 0) {
				snprintf(why, sizeof(why), "write %s: %s", spath, strerror(errno));
				unsupported(why);
			}
		}
		for (int i = 0; i < cfg.threads; i++) {
			if (i > 0 && cfg.wl == WL_MERGE_SHARED)
				break;
			if (setxattr(ws[i].path, "user.stash.schema", cfg.schema,
				     strlen(cfg.schema), 0) < 0) {
				snprintf(why, sizeof(why), "setxattr user.stash.schema on %s: %s",
					 ws[i].path, strerror(errno));
				unsupported(why);
			}
		}
		if (cfg.schema_is_ours)
			cfg.schema_enforced = probe_schema(&ws[0]);
	}
	if (cfg.stream) {
		for (int i = 0; i < cfg.threads; i++) {
			char name[PATH_MAX], spath[PATH_MAX], doc[32];
			int fd;

			if (i > 0 && cfg.wl == WL_MERGE_SHARED)
				break;
			if (i == 0)
				snprintf(name, sizeof(name), "streams/%s", cfg.stream);
			else
				snprintf(name, sizeof(name), "streams/%s-%d", cfg.stream, i);
			path_join(spath, name);
			if (unlink(spath) < 0 && errno != ENOENT)
				die("unlink %s: %s", spath, strerror(errno));
			fd = open(spath, O_WRONLY | O_APPEND | O_CREAT, 0644);
			if (fd < 0 || close(fd) < 0) {
				snprintf(why, sizeof(why), "create %s: %s", spath, strerror(errno));
				unsupported(why);
			}
			doc_name(i, doc, sizeof(doc));
			if (setxattr(spath, "user.stash.linked_stash", doc, strlen(doc), 0) < 0) {
				snprintf(why, sizeof(why), "setxattr user.stash.linked_stash on %s: %s",
					 spath, strerror(errno));
				unsupported(why);
			}
		}
	}
}

/* Prepare each worker's files so the first measured op finds its steady state. */
static void setup(struct worker *ws)
{
	char name[PATH_MAX];
	bool stash = cfg.mode == MODE_STASHFS;

	for (int i = 0; i < cfg.threads; i++) {
		struct worker *w = &ws[i];

		w->id = i;
		w->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
		w->bufcap = cfg.wl == WL_READ_BIG || cfg.wl == WL_REPLACE_BIG ? BIG_CHUNK : 1 << 16;
		w->buf = malloc(w->bufcap);
		w->lat = malloc(LAT_CAP * sizeof(*w->lat));
		if (!w->buf || !w->lat)
			die("out of memory");
		memset(w->buf, 'x', w->bufcap);
		for (size_t j = 63; j < w->bufcap; j += 64)
			w->buf[j] = '\n';
		snprintf(name, sizeof(name), ".bench-tmp-%d-%ld", i, (long)getpid());
		path_join(w->tmp, name);

		switch (cfg.wl) {
		case WL_READ:
		case WL_READ_CHANGED:
		case WL_STAT:
			snprintf(name, sizeof(name), "rd-%d", i);
			path_join(w->path, name);
			setup_file(w->path, w->buf, READ_SIZE);
			break;
		case WL_REPLACE:
		case WL_REPLACE_FSYNC:
			snprintf(name, sizeof(name), "rp-%d", i);
			path_join(w->path, name);
			setup_file(w->path, w->buf, REPLACE_SIZE);
			break;
		case WL_APPEND:
			/* Start every run from an empty file: cost may grow with size. */
			snprintf(name, sizeof(name), stash ? "streams/bench%d" : "log-%d", i);
			path_join(w->path, name);
			if (unlink(w->path) < 0 && errno != ENOENT)
				die("unlink %s: %s", w->path, strerror(errno));
			break;
		case WL_ROUNDTRIP:
			if (!stash)
				unsupported("a plain directory has no request counters");
			break;
		case WL_READ_BIG:
		case WL_REPLACE_BIG: {
			struct stat st;
			struct worker tmp = *w;

			snprintf(name, sizeof(name), "big-%d", i);
			path_join(w->path, name);
			tmp.tmp[0] = '\0';
			/* Written once (in BIG_CHUNK calls), then reused while its size fits. */
			if (stat(w->path, &st) == 0 && (uint64_t)st.st_size == cfg.big_size)
				break;
			snprintf(tmp.tmp, sizeof(tmp.tmp), "%s", w->tmp);
			if (put_file_n(&tmp, w->path, w->buf, BIG_CHUNK, cfg.big_size / BIG_CHUNK,
				       false) < 0)
				die("setup %s: %s", tmp.errwhat, strerror(tmp.err));
			break;
		}
		case WL_CREATE_UNLINK:
			snprintf(name, sizeof(name), "cu-%d", i);
			path_join(w->path, name);
			if (unlink(w->path) < 0 && errno != ENOENT)
				die("unlink %s: %s", w->path, strerror(errno));
			break;
		case WL_CREATE_NEW:
			snprintf(name, sizeof(name), "new-%ld-%d-", (long)getpid(), i);
			path_join(w->stem, name);
			break;
		case WL_MERGE:
		case WL_MERGE_SHARED:
		case WL_MERGE_SCHEMA:
		case WL_MERGE_STREAM: {
			char doc[32];

			doc_name(i, doc, sizeof(doc));
			path_join(w->path, doc);
			if (stash) {
				snprintf(name, sizeof(name), "%s.json", doc);
				path_join(w->tmp, name);
			}
			if (i == 0 || cfg.wl != WL_MERGE_SHARED) {
				json_t *base = base_doc();

				/* A new stash: no schema binding left from another run. */
				if (unlink(w->path) < 0 && errno != ENOENT)
					die("unlink %s: %s", w->path, strerror(errno));
				char *text = json_dumps(base, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

				if (!text)
					die("out of memory");
				setup_file(w->path, text, strlen(text));
				free(text);
				json_decref(base);
			}
			break;
		}
		}
	}
	if (cfg.wl == WL_MERGE_SCHEMA && !cfg.schema) {
		cfg.schema = DEFAULT_SCHEMA;
		cfg.schema_is_ours = true;
	}
	if (cfg.wl == WL_MERGE_STREAM && !cfg.stream)
		cfg.stream = DEFAULT_STREAM;
	if (is_merge(cfg.wl))
		setup_hooks(ws);
}

/*
 * merge-shared: count the unique keys the workers' merges set that the
 * final document lacks.  Returns the count, or -1 if the document does not
 * parse (which is worse than any count).
 */
static long long count_lost(struct worker *ws, uint64_t *written)
{
	json_error_t jerr;
	json_t *doc = json_load_file(ws[0].path, 0, &jerr);
	long long lost = 0;

	*written = 0;
	if (!doc || !json_is_object(doc)) {
		fprintf(stderr, "bench: %s does not parse: %s\n", ws[0].path, jerr.text);
		json_decref(doc);
		return -1;
	}
	for (int i = 0; i < cfg.threads; i++) {
		for (uint64_t k = 0; k < ws[i].ops; k++) {
			char key[64];

			snprintf(key, sizeof(key), "u%d_%llu", i, (unsigned long long)k);
			if (!json_object_get(doc, key))
				lost++;
		}
		*written += ws[i].ops;
	}
	json_decref(doc);
	return lost;
}

struct sample {
	uint64_t ns;
	double weight;
};

static int cmp_sample(const void *a, const void *b)
{
	const struct sample *x = a, *y = b;

	return (x->ns > y->ns) - (x->ns < y->ns);
}

/* Weighted nearest-rank percentile of sorted @s (total weight @total). */
static double percentile_us(const struct sample *s, size_t n, double total, double p)
{
	double want = p * total, acc = 0;

	for (size_t i = 0; i < n; i++) {
		acc += s[i].weight;
		if (acc >= want)
			return (double)s[i].ns / 1000.0;
	}
	return n ? (double)s[n - 1].ns / 1000.0 : 0.0;
}

static enum mode detect_mode(const char *dir, char *fstype, size_t fslen)
{
	char real[PATH_MAX], line[8192], best[PATH_MAX] = "";
	size_t bestlen = 0;
	FILE *f;

	snprintf(fstype, fslen, "unknown");
	if (!realpath(dir, real))
		die("%s: %s", dir, strerror(errno));
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return MODE_PLAIN;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], dec[PATH_MAX], *sep;
		char fs[64];
		size_t n = 0;

		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		sep = strstr(line, " - ");
		if (!sep || sscanf(sep + 3, "%63s", fs) != 1)
			continue;
		/* mountinfo escapes space, tab, newline and backslash as \ooo */
		for (const char *p = mp; *p && n + 1 < sizeof(dec); p++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
				dec[n++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				p += 3;
			} else {
				dec[n++] = *p;
			}
		}
		dec[n] = '\0';
		if (strncmp(real, dec, n) != 0 || (n > 1 && real[n] != '/' && real[n] != '\0'))
			continue;
		if (n >= bestlen) {
			bestlen = n;
			snprintf(best, sizeof(best), "%s", fs);
			snprintf(cfg.mountpoint, sizeof(cfg.mountpoint), "%s", dec);
		}
	}
	fclose(f);
	if (*best)
		snprintf(fstype, fslen, "%s", best);
	return strcmp(best, "fuse.stashfs") == 0 ? MODE_STASHFS : MODE_PLAIN;
}

/* The daemon's request counts by operation (stashfs only), or NULL.  Returns a new reference. */
static json_t *request_counts(void)
{
	char buf[4096];
	ssize_t n;

	if (cfg.mode != MODE_STASHFS || !*cfg.mountpoint)
		return NULL;
	n = getxattr(cfg.mountpoint, REQUESTS_XATTR, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return json_loads(buf, 0, NULL);
}

/*
 * Requests per op by operation between two readings of the counts, and
 * their sum in @total.  The second reading is a getxattr of its own: not
 * the workload's.  Returns a new reference, NULL without both readings.
 */
static json_t *requests_per_op(json_t *before, json_t *after, uint64_t ops, double *total)
{
	json_t *o, *v;
	const char *op;

	*total = 0;
	if (!before || !after || !ops)
		return NULL;
	o = json_object();
	json_object_foreach(after, op, v) {
		json_int_t d = json_integer_value(v) - json_integer_value(json_object_get(before, op));

		if (strcmp(op, "getxattr") == 0)
			d--;
		if (d <= 0)
			continue;
		json_object_set_new(o, op, json_real((double)d / (double)ops));
		*total += (double)d / (double)ops;
	}
	return o;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench --dir DIR --workload W [--threads T] [--seconds S | --ops N]\n"
		"             [--json] [--label L] [--mode stashfs|plain]\n"
		"             [--schema NAME] [--stream NAME] [--size BYTES]\n"
		"workloads:");
	for (size_t i = 0; i < N_WORKLOADS; i++)
		fprintf(out, " %s", workload_names[i]);
	fprintf(out, "\n"
		"  --seconds S   run for S seconds (default 2)\n"
		"  --ops N       run until N ops are done, over all threads\n"
		"  --mode M      stashfs or plain (default: from /proc/self/mountinfo)\n"
		"  --schema NAME set user.stash.schema=NAME on the merged documents\n"
		"  --stream NAME create streams/NAME linked (user.stash.linked_stash) to them\n"
		"  --size BYTES  read-big, replace-big: file size, a multiple of 1 MiB\n"
		"                (suffix M or G; default 100M)\n");
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "workload", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "ops", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "label", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ "schema", required_argument, NULL, 'S' },
		{ "stream", required_argument, NULL, 'T' },
		{ "size", required_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *wl = NULL;
	bool have_seconds = false;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			cfg.dir = optarg;
			break;
		case 'w':
			wl = optarg;
			break;
		case 't':
			cfg.threads = (int)strtol(optarg, &end, 10);
			if (*end || cfg.threads < 1 || cfg.threads > 1024)
				die("--threads: 1..1024");
			break;
		case 's':
			cfg.seconds = strtod(optarg, &end);
			if (*end || !(cfg.seconds > 0))
				die("--seconds: a positive number");
			have_seconds = true;
			break;
		case 'n':
			errno = 0;
			cfg.ops_budget = strtoull(optarg, &end, 10);
			if (*end || errno || cfg.ops_budget == 0)
				die("--ops: a positive integer");
			break;
		case 'j':
			cfg.json = true;
			break;
		case 'l':
			cfg.label = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "stashfs") == 0)
				cfg.mode = MODE_STASHFS;
			else if (strcmp(optarg, "plain") == 0)
				cfg.mode = MODE_PLAIN;
			else
				die("--mode: stashfs or plain");
			break;
		case 'S':
			cfg.schema = optarg;
			break;
		case 'T':
			cfg.stream = optarg;
			break;
		case 'z':
			errno = 0;
			cfg.big_size = strtoull(optarg, &end, 10);
			if (*end == 'M' || *end == 'G')
				cfg.big_size <<= *end++ == 'M' ? 20 : 30;
			if (*end || errno || !cfg.big_size || cfg.big_size % BIG_CHUNK)
				die("--size: a positive multiple of 1 MiB");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || !cfg.dir || !wl) {
		usage(stderr);
		exit(2);
	}
	if (!cfg.big_size)
		cfg.big_size = BIG_DEFAULT;
	if (have_seconds && cfg.ops_budget)
		die("--seconds and --ops exclude each other");
	for (size_t i = 0; i < N_WORKLOADS; i++) {
		if (strcmp(wl, workload_names[i]) == 0) {
			cfg.wl = (enum workload)i;
			return;
		}
	}
	die("unknown workload %s (try --help)", wl);
}

int main(int argc, char **argv)
{
	struct worker *ws;
	struct sample *samples;
	size_t nsamples = 0;
	uint64_t total_ops = 0, t_start, t_end, written = 0;
	double total_weight = 0, elapsed, p50, p90, p99, maxus;
	long long lost = 0, stream_bytes = 0;
	enum mode detected;
	int failed = 0;
	json_t *counts_before, *counts_after, *per_op;
	double requests = 0;

	parse_args(argc, argv);
	detected = detect_mode(cfg.dir, cfg.fstype, sizeof(cfg.fstype));
	if (cfg.mode == MODE_AUTO)
		cfg.mode = detected;

	ws = calloc((size_t)cfg.threads, sizeof(*ws));
	if (!ws)
		die("out of memory");
	setup(ws);

	if (pthread_barrier_init(&start_barrier, NULL, (unsigned)cfg.threads + 1) != 0)
		die("pthread_barrier_init failed");
	for (int i = 0; i < cfg.threads; i++)
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0)
			die("pthread_create failed");
	counts_before = request_counts();
	pthread_barrier_wait(&start_barrier);
	t_start = now_ns();
	if (!cfg.ops_budget) {
		struct timespec until;
		uint64_t end_ns = t_start + (uint64_t)(cfg.seconds * 1e9);

		until.tv_sec = (time_t)(end_ns / 1000000000u);
		until.tv_nsec = (long)(end_ns % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
			;
		atomic_store(&stop_flag, true);
	}
	for (int i = 0; i < cfg.threads; i++)
		pthread_join(ws[i].thread, NULL);
	t_end = now_ns();
	elapsed = (double)(t_end - t_start) / 1e9;
	counts_after = request_counts();
	if (cfg.wl == WL_CREATE_NEW)
		remove_created(ws);

	for (int i = 0; i < cfg.threads; i++) {
		if (ws[i].err) {
			fprintf(stderr, "bench: thread %d: %s: %s\n", i, ws[i].errwhat,
				strerror(ws[i].err));
			failed = 1;
		}
		total_ops += ws[i].ops;
		nsamples += ws[i].ops < LAT_CAP ? ws[i].ops : LAT_CAP;
	}

	samples = malloc((nsamples ? nsamples : 1) * sizeof(*samples));
	if (!samples)
		die("out of memory");
	nsamples = 0;
	for (int i = 0; i < cfg.threads; i++) {
		size_t kept = ws[i].ops < LAT_CAP ? ws[i].ops : LAT_CAP;
		double weight = kept ? (double)ws[i].ops / (double)kept : 0;

		for (size_t k = 0; k < kept; k++)
			samples[nsamples++] = (struct sample){ ws[i].lat[k], weight };
		total_weight += weight * (double)kept;
	}
	qsort(samples, nsamples, sizeof(*samples), cmp_sample);
	p50 = percentile_us(samples, nsamples, total_weight, 0.50);
	p90 = percentile_us(samples, nsamples, total_weight, 0.90);
	p99 = percentile_us(samples, nsamples, total_weight, 0.99);
	maxus = nsamples ? (double)samples[nsamples - 1].ns / 1000.0 : 0;

	if (cfg.wl == WL_MERGE_SHARED) {
		lost = count_lost(ws, &written);
		if (lost < 0)
			failed = 1;
	}

	/* What the linked stream got: 0 means the link did nothing (yet). */
	if (cfg.stream) {
		char name[PATH_MAX], spath[PATH_MAX];
		struct stat st;

		snprintf(name, sizeof(name), "streams/%s", cfg.stream);
		path_join(spath, name);
		stream_bytes = stat(spath, &st) == 0 ? (long long)st.st_size : -1;
	}

	const char *mode = cfg.mode == MODE_STASHFS ? "stashfs" : "plain";
	double ops_per_s = elapsed > 0 ? (double)total_ops / elapsed : 0;
	bool big = cfg.wl == WL_READ_BIG || cfg.wl == WL_REPLACE_BIG;

	per_op = requests_per_op(counts_before, counts_after, total_ops, &requests);

	if (cfg.json) {
		json_t *o = json_object();
		char *s;

		json_object_set_new(o, "label", json_string(cfg.label));
		json_object_set_new(o, "workload", json_string(workload_names[cfg.wl]));
		json_object_set_new(o, "mode", json_string(mode));
		json_object_set_new(o, "fstype", json_string(cfg.fstype));
		json_object_set_new(o, "threads", json_integer(cfg.threads));
		if (cfg.ops_budget)
			json_object_set_new(o, "ops_budget", json_integer((json_int_t)cfg.ops_budget));
		else
			json_object_set_new(o, "seconds", json_real(cfg.seconds));
		json_object_set_new(o, "ops", json_integer((json_int_t)total_ops));
		json_object_set_new(o, "elapsed_s", json_real(elapsed));
		json_object_set_new(o, "ops_per_s", json_real(ops_per_s));
		json_object_set_new(o, "p50_us", json_real(p50));
		json_object_set_new(o, "p90_us", json_real(p90));
		json_object_set_new(o, "p99_us", json_real(p99));
		json_object_set_new(o, "max_us", json_real(maxus));
		if (big) {
			json_object_set_new(o, "bytes", json_integer((json_int_t)cfg.big_size));
			json_object_set_new(o, "mib_per_s",
					    json_real(ops_per_s * (double)cfg.big_size / (1 << 20)));
		}
		if (per_op) {
			json_object_set_new(o, "requests_per_op", json_real(requests));
			json_object_set(o, "requests", per_op);
		}
		if (cfg.wl == WL_MERGE_SHARED) {
			json_object_set_new(o, "keys", json_integer((json_int_t)written));
			json_object_set_new(o, "lost", json_integer(lost));
		}
		if (cfg.schema)
			json_object_set_new(o, "schema", json_string(cfg.schema));
		if (cfg.schema_enforced >= 0)
			json_object_set_new(o, "schema_enforced", json_boolean(cfg.schema_enforced));
		if (cfg.stream) {
			json_object_set_new(o, "stream", json_string(cfg.stream));
			json_object_set_new(o, "stream_bytes", json_integer(stream_bytes));
		}
		json_object_set_new(o, "ok", json_boolean(!failed));
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
		puts(s);
		free(s);
		json_decref(o);
	} else {
		printf("%s%s%s %s threads=%d ops=%llu time=%.2fs ops/s=%.1f "
		       "p50=%.1fus p90=%.1fus p99=%.1fus max=%.1fus",
		       cfg.label, *cfg.label ? " " : "", workload_names[cfg.wl], mode,
		       cfg.threads, (unsigned long long)total_ops, elapsed, ops_per_s,
		       p50, p90, p99, maxus);
		if (cfg.wl == WL_MERGE_SHARED)
			printf(" keys=%llu lost=%lld", (unsigned long long)written, lost);
		if (cfg.stream)
			printf(" stream_bytes=%lld", stream_bytes);
		if (cfg.schema_enforced >= 0)
			printf(" schema_enforced=%s", cfg.schema_enforced ? "yes" : "no");
		if (big)
			printf(" MiB/s=%.0f", ops_per_s * (double)cfg.big_size / (1 << 20));
		if (per_op) {
			const char *op;
			json_t *v;

			printf(" requests/op=%.2f (", requests);
			json_object_foreach(per_op, op, v)
				printf("%s%s %.2f", op == json_object_iter_key(json_object_iter(per_op)) ?
				       "" : ", ", op, json_real_value(v));
			putchar(')');
		}
		putchar('\n');
	}

	for (int i = 0; i < cfg.threads; i++) {
		free(ws[i].buf);
		free(ws[i].lat);
	}
	free(ws);
	free(samples);
	json_decref(per_op);
	json_decref(counts_before);
	json_decref(counts_after);
	pthread_barrier_destroy(&start_barrier);
	return failed;
}
