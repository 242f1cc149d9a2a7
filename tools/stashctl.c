// SPDX-License-Identifier: MIT
/*
 * stashctl.c - what plain files cannot say comfortably, for machines
 * without the attr package.
 *
 *   stashctl show [--json] PATH          every piece of an object's metadata
 *   stashctl set PATH KEY=VALUE...       ttl, persistent, schema, link
 *   stashctl validate SCHEMA DOC         offline validation with core's validator
 *   stashctl follow [-n N] [--raw] STREAM
 *   stashctl fsck [--repair] BACKING     offline check of a stopped store
 *
 * show, set and follow speak to a mount with ordinary syscalls (stat,
 * getxattr, setxattr, read): stashctl is a client like `cat` and never
 * touches the backing directory behind a running daemon.  validate and fsck
 * work without a mount and use core's JSON parser and schema validator, so
 * they judge a document exactly as the daemon would.  No FUSE in here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/json.h"
#include "stashfs/schema.h"
#include "stashfs/sha256.h"
#include "stashfs/store.h"
#include "backing.h"

#define SCHEMA_URI "stashfs:///schemas/"
#define MAX_XATTR 65536

/* Exit statuses shared by every command. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_ERROR = 2 };

static const char *prog = "stashctl";

static void usage(FILE *out)
{
	fprintf(out,
		"usage: stashctl COMMAND [options] ...\n"
		"\n"
		"  show [--json] PATH             metadata of a stash, view, stream or directory\n"
		"  set PATH KEY=VALUE...          ttl=SECS, persistent=0|1, schema=NAME, link=STASH\n"
		"                                 (an empty value removes ttl, schema or link)\n"
		"  validate SCHEMA_FILE DOC_FILE  validate a document offline (DOC_FILE - = stdin)\n"
		"  follow [-n N] [--raw] [--timeout SECS] STREAM\n"
		"                                 print a stream's records, then follow new ones\n"
		"  log PATH                       a stash's current and past versions (PATH@V):\n"
		"                                 version, time, size, sha256, newest first\n"
		"  fsck [--repair] BACKING        check a backing directory while no daemon serves it\n"
		"\n"
		"  -h, --help                     this text\n"
		"  -V, --version                  version\n"
		"\n"
		"Exit status: 0 success, 1 refused / invalid / problems found, 2 usage or error.\n");
}

static int fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(stashctl --help for usage)\n");
	return EXIT_ERROR;
}

/* ---- small helpers ---------------------------------------------------- */

/* Read all of @fd into a new NUL-terminated buffer (caller frees). */
static char *slurp_fd(int fd, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap + 1);

	if (!buf)
		return NULL;
	for (;;) {
		ssize_t got;

		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = errno;

			free(buf);
			errno = e;
			return NULL;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* A JSON string for bytes that may not be UTF-8: invalid bytes become U+FFFD. */
static json_t *json_bytes(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	char *buf;
	size_t n = 0;

	if (j)
		return j;
	buf = malloc(len * 3 + 1);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c != 0 && c < 0x80) {
			buf[n++] = (char)c;
		} else {
			memcpy(buf + n, "\xef\xbf\xbd", 3);
			n += 3;
		}
	}
	j = json_stringn(buf, n);
	free(buf);
	return j;
}

/* ---- where a path lives: which stashfs mount, which name -------------- */

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Absolute path of @path without resolving its last component (a view is
 * a name of its own), or NULL.  Caller frees.
 */
static char *abs_path(const char *path)
{
	char *copy = strdup(path), *slash, *dir, *res = NULL;
	const char *leaf;
	size_t n;

	if (!copy)
		return NULL;
	n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	slash = strrchr(copy, '/');
	if (!slash) {
		dir = realpath(".", NULL);
		leaf = copy;
	} else if (slash == copy) {
		dir = strdup("/");
		leaf = copy + 1;
	} else {
		*slash = '\0';
		dir = realpath(copy, NULL);
		leaf = slash + 1;
	}
	if (dir) {
		if (strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0 || !*leaf) {
			char *both;

			if (asprintf(&both, "%s/%s", dir, leaf) >= 0) {
				res = realpath(both, NULL);
				free(both);
			}
		} else if (asprintf(&res, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", leaf) < 0) {
			res = NULL;
		}
	}
	free(dir);
	free(copy);
	return res;
}

/*
 * If @abs is on a stashfs mount, store the mount point in @mnt and the
 * name in the store ("" for the root) in @name; return true.  A bind
 * mount of a directory of the store counts, with names from the store root.
 */
static bool find_mount(const char *abs, char *mnt, size_t mntsz, char *name, size_t namesz)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, root[PATH_MAX] = "";
	size_t cap = 0, best = 0;
	bool found = false;

	if (!f)
		return false;
	while (getline(&line, &cap, f) > 0) {
		char *fields[12], *save = NULL, *tok, *fstype = NULL;
		int nf = 0;
		size_t len;

		for (tok = strtok_r(line, " \n", &save); tok && nf < 12;
		     tok = strtok_r(NULL, " \n", &save)) {
			if (strcmp(tok, "-") == 0) {
				fstype = strtok_r(NULL, " \n", &save);
				break;
			}
			fields[nf++] = tok;
		}
		if (nf < 5 || !fstype)
			continue;
		unescape_mountinfo(fields[3]);
		unescape_mountinfo(fields[4]);
		len = strcmp(fields[4], "/") == 0 ? 0 : strlen(fields[4]);
		if (strncmp(abs, fields[4], len) != 0 || (abs[len] != '/' && abs[len] != '\0'))
			continue;
		/* The deepest mount wins (a later one on the same point hides the earlier). */
		if (len < best)
			continue;
		best = len;
		found = strcmp(fstype, "fuse.stashfs") == 0;
		if (found) {
			snprintf(mnt, mntsz, "%s", fields[4]);
			snprintf(root, sizeof(root), "%s", fields[3]);
		}
	}
	free(line);
	fclose(f);
	if (found) {
		const char *rest = abs + best, *r = root;

		while (*rest == '/')
			rest++;
		while (*r == '/')
			r++;
		snprintf(name, namesz, "%s%s%s", r, *r && *rest ? "/" : "", rest);
	}
	return found;
}

static const char *kind_of(const struct stat *sb, bool on_mount, const char *name)
{
	size_t n = strlen(name);

	if (S_ISDIR(sb->st_mode))
		return "directory";
	if (!S_ISREG(sb->st_mode))
		return "other";
	if (!on_mount)
		return "file";
	if (strncmp(name, "streams/", 8) == 0)
		return "stream";
	if (n > 5 && strcmp(name + n - 5, ".json") == 0)
		return "view";
	if (strncmp(name, "schemas/", 8) == 0)
		return "schema";
	return "stash";
}

/* ---- show ------------------------------------------------------------- */

/* The user.stash.* attributes of DESIGN 2.5, in the order show prints them. */
static const struct {
	const char *name;
	bool number;
} known[] = {
	{ XATTR_VERSION, true },
	{ XATTR_SHA256, false },
	{ XATTR_SCHEMA, false },
	{ XATTR_TTL, true },
	{ XATTR_PERSISTENT, true },
	{ XATTR_EXPIRES, false },
	{ XATTR_LINKED, false },
	{ XATTR_SEQ, true },
	{ XATTR_ERROR, false },
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))
/* The key show prints for known attribute @i: its name without "user.stash.". */
#define KNOWN_KEY(i) (known[i].name + strlen(XATTR_PREFIX))

struct xattr {
	char *name;
	char *value;
	size_t len;
};

static void free_xattrs(struct xattr *xs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(xs[i].name);
		free(xs[i].value);
	}
	free(xs);
}

/* All user.* xattrs of @path (not following a final symlink); caller frees. */
static int read_xattrs(const char *path, struct xattr **out, size_t *count)
{
	char *list = NULL;
	ssize_t n;
	struct xattr *xs = NULL, *more;
	size_t cnt = 0;

	*out = NULL;
	*count = 0;
	do {
		/* The list may grow between the two calls: then ask again. */
		free(list);
		list = NULL;
		n = llistxattr(path, NULL, 0);
		if (n < 0)
			return errno == ENOTSUP ? 0 : -errno;
		list = malloc((size_t)n + 1);
		if (!list)
			return -ENOMEM;
		n = llistxattr(path, list, (size_t)n);
	} while (n < 0 && errno == ERANGE);
	if (n < 0) {
		free(list);
		return -errno;
	}
	for (char *nm = list; nm < list + n; nm += strlen(nm) + 1) {
		char *value;
		ssize_t v;

		if (strncmp(nm, "user.", 5) != 0)
			continue;
		value = malloc(MAX_XATTR + 1);
		v = value ? lgetxattr(path, nm, value, MAX_XATTR) : -1;
		if (v < 0) {
			free(value);
			continue;       /* gone since the listing */
		}
		value[v] = '\0';
		more = realloc(xs, (cnt + 1) * sizeof(*xs));
		if (!more) {
			free(value);
			free(list);
			free_xattrs(xs, cnt);
			return -ENOMEM;
		}
		xs = more;
		xs[cnt].name = strdup(nm);
		xs[cnt].value = value;
		xs[cnt].len = (size_t)v;
		cnt++;
		if (!xs[cnt - 1].name) {
			free(list);
			free_xattrs(xs, cnt);
			return -ENOMEM;
		}
	}
	free(list);
	*out = xs;
	*count = cnt;
	return 0;
}

static const struct xattr *find_xattr(const struct xattr *xs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(xs[i].name, name) == 0)
			return &xs[i];
	}
	return NULL;
}

/* Print @len bytes with control characters escaped, for aligned text output. */
static void print_value(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static int cmd_show(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool as_json = false, on_mount;
	struct xattr *xs = NULL;
	size_t nx = 0;
	struct stat sb;
	char mnt[PATH_MAX] = "", name[PATH_MAX] = "", mtime[64], modestr[16];
	const char *path, *kind;
	char *abs;
	int c, r;

	while ((c = getopt_long(argc, argv, "jh", lopts, NULL)) != -1) {
		if (c == 'j')
			as_json = true;
		else if (c == 'h')
			return usage(stdout), EXIT_OK;
		else
			return fail_usage("show: bad option");
	}
	if (argc - optind != 1)
		return fail_usage("show takes one PATH");
	path = argv[optind];
	if (lstat(path, &sb) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return EXIT_FAIL;
	}
	abs = abs_path(path);
	on_mount = abs && find_mount(abs, mnt, sizeof(mnt), name, sizeof(name));
	if (!on_mount) {
		/* Metadata of a file elsewhere would look like a store's answer. */
		fprintf(stderr, "%s: %s: not on a stashfs mount (show reads a mounted store; "
			"for a backing directory with no daemon, use %s fsck BACKING)\n",
			prog, path, prog);
		free(abs);
		return EXIT_FAIL;
	}
	kind = S_ISLNK(sb.st_mode) ? "symlink" : kind_of(&sb, on_mount, on_mount ? name : "");
	r = read_xattrs(path, &xs, &nx);
	if (r < 0) {
		fprintf(stderr, "%s: %s: cannot list xattrs: %s\n", prog, path, strerror(-r));
		free(abs);
		return EXIT_FAIL;
	}
	backing_iso_time(&sb.st_mtim, true, mtime);
	snprintf(modestr, sizeof(modestr), "%04o", (unsigned)(sb.st_mode & 07777));

	if (as_json) {
		json_t *o = json_object(), *all = json_object();
		char *text;

		json_object_set_new(o, "path", json_string(abs ? abs : path));
		json_object_set_new(o, "mount", on_mount ? json_string(mnt) : json_null());
		json_object_set_new(o, "name", on_mount ? json_bytes(name, strlen(name)) : json_null());
		json_object_set_new(o, "kind", json_string(kind));
		json_object_set_new(o, "size", json_integer((json_int_t)sb.st_size));
		json_object_set_new(o, "mode", json_string(modestr));
		json_object_set_new(o, "uid", json_integer((json_int_t)sb.st_uid));
		json_object_set_new(o, "gid", json_integer((json_int_t)sb.st_gid));
		json_object_set_new(o, "mtime", json_string(mtime));
		for (size_t i = 0; i < NKNOWN; i++) {
			const struct xattr *x = find_xattr(xs, nx, known[i].name);
			uint64_t v;

			if (!x)
				json_object_set_new(o, KNOWN_KEY(i), json_null());
			else if (known[i].number && backing_parse_u64(x->value, x->len, &v) && v <= INT64_MAX)
				json_object_set_new(o, KNOWN_KEY(i), json_integer((json_int_t)v));
			else
				json_object_set_new(o, KNOWN_KEY(i), json_bytes(x->value, x->len));
		}
		for (size_t i = 0; i < nx; i++)
			json_object_set_new(all, xs[i].name, json_bytes(xs[i].value, xs[i].len));
		json_object_set_new(o, "xattrs", all);
		text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(o);
	} else {
		char perms[11];
		static const char rwx[] = "rwxrwxrwx";

		perms[0] = S_ISDIR(sb.st_mode) ? 'd' : S_ISLNK(sb.st_mode) ? 'l' :
			   S_ISREG(sb.st_mode) ? '-' : '?';
		for (int i = 0; i < 9; i++)
			perms[i + 1] = (sb.st_mode & (0400u >> i)) ? rwx[i] : '-';
		perms[10] = '\0';
		printf("%-13s %s\n", "path", abs ? abs : path);
		if (on_mount)
			printf("%-13s %s\n%-13s %s\n", "mount", mnt, "name", *name ? name : "(root)");
		printf("%-13s %s\n", "kind", kind);
		printf("%-13s %jd\n", "size", (intmax_t)sb.st_size);
		printf("%-13s %s %s\n", "mode", modestr, perms);
		printf("%-13s %u:%u\n", "owner", (unsigned)sb.st_uid, (unsigned)sb.st_gid);
		printf("%-13s %s\n", "mtime", mtime);
		for (size_t i = 0; i < NKNOWN; i++) {
			const struct xattr *x = find_xattr(xs, nx, known[i].name);

			printf("%-13s ", KNOWN_KEY(i));
			if (x)
				print_value(x->value, x->len);
			else
				putchar('-');
			putchar('\n');
		}
		/* Other user.* xattrs are stored as given: show them by full name. */
		for (size_t i = 0; i < nx; i++) {
			bool is_known = false;

			for (size_t k = 0; k < NKNOWN; k++) {
				if (strcmp(xs[i].name, known[k].name) == 0)
					is_known = true;
			}
			if (is_known)
				continue;
			printf("%-13s ", xs[i].name);
			print_value(xs[i].value, xs[i].len);
			putchar('\n');
		}
	}
	free_xattrs(xs, nx);
	free(abs);
	return EXIT_OK;
}

/* ---- set -------------------------------------------------------------- */

/* Current user.stash.error of @path into @buf ("" if none). */
static void read_error(const char *path, char *buf, size_t size)
{
	ssize_t n = getxattr(path, XATTR_ERROR, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
}

/* What an errno from setxattr most likely means for @key. */
static const char *set_hint(const char *key, int e)
{
	if (e == ENOTSUP)
		return "not a stashfs mount, or a filesystem without user xattrs";
	if (e == EPERM)
		return "read-only attribute, or not allowed on this object";
	if (e == EACCES)
		return "you may not change this object's metadata";
	if (e == ENOENT)
		return "no such stash (or it expired)";
	if (e != EINVAL)
		return NULL;
	if (strcmp(key, "schema") == 0)
		return "the schema is missing or not a valid JSON Schema, or the current "
		       "content does not validate against it";
	if (strcmp(key, "link") == 0)
		return "only streams under streams/ take a link, to a stash path relative "
		       "to the mount root without \"..\"";
	return "bad value";
}

/* Is the key (@klen bytes of @key) one of the store's own read-only attributes? */
static bool read_only_key(const char *key, size_t klen)
{
	static const char *const names[] = { "version", "sha256", "expires", "error", "seq" };

	if (klen > strlen(XATTR_PREFIX) && strncmp(key, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		key += strlen(XATTR_PREFIX);
		klen -= strlen(XATTR_PREFIX);
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (klen == strlen(names[i]) && strncmp(key, names[i], klen) == 0)
			return true;
	return false;
}

static int cmd_set(int argc, char **argv)
{
	const char *path;
	int status = EXIT_OK;

	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
		return usage(stdout), EXIT_OK;
	if (argc < 3)
		return fail_usage("set takes PATH and at least one KEY=VALUE");
	path = argv[1];
	/* Check every assignment before changing anything. */
	for (int i = 2; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		size_t klen = eq ? (size_t)(eq - argv[i]) : 0;
		const char *v = eq ? eq + 1 : NULL;

		if (!eq || klen == 0)
			return fail_usage("set: expected KEY=VALUE, got \"%s\"", argv[i]);
		if (klen == 3 && strncmp(argv[i], "ttl", 3) == 0) {
			if (*v && !backing_parse_u64(v, strlen(v), NULL))
				return fail_usage("set: ttl must be a whole number of seconds, got \"%s\"", v);
		} else if (klen == 10 && strncmp(argv[i], "persistent", 10) == 0) {
			if (strcmp(v, "0") && strcmp(v, "1"))
				return fail_usage("set: persistent must be 0 or 1, got \"%s\"", v);
		} else if ((klen == 6 && strncmp(argv[i], "schema", 6) == 0) ||
			   (klen == 4 && strncmp(argv[i], "link", 4) == 0) ||
			   (klen == 12 && strncmp(argv[i], "linked_stash", 12) == 0)) {
			/* The daemon judges names; it knows which schemas exist. */
		} else if (read_only_key(argv[i], klen)) {
			/* The daemon takes and ignores them (copies carry them): say so here. */
			return fail_usage("set: %.*s is read-only: only commits change it",
					  (int)klen, argv[i]);
		} else if (!(klen > 5 && strncmp(argv[i], "user.", 5) == 0)) {
			return fail_usage("set: unknown key \"%.*s\" (ttl, persistent, schema, link, "
					  "or a user.* xattr name)", (int)klen, argv[i]);
		}
	}
	for (int i = 2; i < argc && status == EXIT_OK; i++) {
		char key[256], xname[300], before[4096], after[4096];
		const char *eq = strchr(argv[i], '='), *v = eq + 1;
		bool remove;
		int r;

		snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
		if (strcmp(key, "link") == 0 || strcmp(key, "linked_stash") == 0) {
			snprintf(key, sizeof(key), "link");
			snprintf(xname, sizeof(xname), XATTR_LINKED);
		} else if (strncmp(key, "user.", 5) == 0) {
			snprintf(xname, sizeof(xname), "%s", key);
		} else {
			snprintf(xname, sizeof(xname), XATTR_PREFIX "%s", key);
		}
		remove = *v == '\0' && strcmp(key, "persistent") != 0;
		read_error(path, before, sizeof(before));
		if (remove) {
			r = removexattr(path, xname);
			if (r < 0 && errno == ENODATA)
				r = 0;  /* already unset: the wanted state */
		} else {
			r = setxattr(path, xname, v, strlen(v), 0);
		}
		if (r == 0)
			continue;
		r = errno;
		fprintf(stderr, "%s: %s: %s %s: %s\n", prog, path, remove ? "removing" : "setting",
			xname, strerror(r));
		read_error(path, after, sizeof(after));
		/*
		 * A refused link or binding to what the caller cannot read
		 * repeats the same reason; the kernel's own EACCES (no write
		 * permission on the object) leaves none.
		 */
		if (after[0] && (strcmp(before, after) != 0 ||
				 (r == EACCES && access(path, W_OK) == 0)))
			fprintf(stderr, "  reason: %s\n", after);
		else if (set_hint(key, r))
			fprintf(stderr, "  hint: %s\n", set_hint(key, r));
		status = EXIT_FAIL;
	}
	return status;
}

/* ---- schemas from a directory (validate and fsck) --------------------- */

/* Resolves "stashfs:///schemas/NAME" to the file NAME under a directory. */
struct schema_dir {
	int dirfd;
	bool in_store;          /* names follow the store's rules (no NAME.json) */
	char failed[PATH_MAX];  /* first reference that could not be loaded */
};

static json_t *load_named(int dirfd, const char *name, bool in_store, struct stash_error *err)
{
	char *text;
	size_t len;
	json_t *doc;
	int fd;
	struct stat sb;

	if (!(in_store ? backing_name_ok(name) : backing_relpath_ok(name))) {
		stash_error_set(err, EINVAL, "bad schema name \"%s\"", name);
		return NULL;
	}
	fd = backing_openat2(dirfd, name, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0 || fstat((int)fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		stash_error_set(err, ENOENT, "schema %s is missing", name);
		if (fd >= 0)
			close((int)fd);
		return NULL;
	}
	text = slurp_fd((int)fd, &len);
	close((int)fd);
	if (!text) {
		stash_error_set(err, EIO, "cannot read schema %s", name);
		return NULL;
	}
	doc = stash_json_parse(text, len, err);
	free(text);
	return doc;
}

static json_t *dir_loader(void *data, const char *uri)
{
	struct schema_dir *sd = data;
	const char *name;
	json_t *doc;

	if (strncmp(uri, SCHEMA_URI, strlen(SCHEMA_URI)) != 0)
		goto fail;
	name = uri + strlen(SCHEMA_URI);
	doc = load_named(sd->dirfd, name, sd->in_store, NULL);
	if (doc)
		return doc;
fail:
	if (!sd->failed[0])
		snprintf(sd->failed, sizeof(sd->failed), "%s", uri);
	return NULL;
}

/*
 * Compile schema @name whose document is @doc (borrowed), resolving other
 * schemas by name in @dirfd.  Returns 0 or a negative errno with @err set.
 */
static int compile_named(int dirfd, bool in_store, const char *name, const json_t *doc,
			 struct stash_schema **out, struct stash_error *err)
{
	/* As the daemon does: a schema not there refuses only what reaches it. */
	const struct stash_schema_options opts = { .defer_missing = 1 };
	struct schema_dir sd = { .dirfd = dirfd, .in_store = in_store };
	char uri[PATH_MAX + 32];
	int r;

	snprintf(uri, sizeof(uri), SCHEMA_URI "%s", name);
	r = stash_schema_compile(doc, name, uri, dir_loader, &sd, &opts, out, err);
	if (r < 0 && sd.failed[0] && err && !strstr(err->text, sd.failed)) {
		size_t n = strlen(err->text);

		snprintf(err->text + n, sizeof(err->text) - n, " (could not load %s)", sd.failed);
	}
	return r;
}

/* ---- validate --------------------------------------------------------- */

static int cmd_validate(int argc, char **argv)
{
	struct stash_schema *schema = NULL;
	struct stash_error err;
	json_t *sdoc = NULL, *doc = NULL;
	char *sabs = NULL, *dirpath = NULL, *text = NULL;
	const char *name, *docpath;
	size_t len;
	int dirfd = -1, fd, r, status = EXIT_ERROR;

	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
		return usage(stdout), EXIT_OK;
	if (argc != 3)
		return fail_usage("validate takes SCHEMA_FILE and DOC_FILE");
	docpath = argv[2];
	stash_error_clear(&err);

	/*
	 * Names resolve as on the mount: under the nearest ".../schemas/"
	 * directory of the schema file if there is one (so a schema in
	 * BACKING/schemas/a/b is "a/b"), else in the schema file's directory.
	 */
	sabs = realpath(argv[1], NULL);
	if (!sabs) {
		fprintf(stderr, "%s: %s: %s\n", prog, argv[1], strerror(errno));
		goto out;
	}
	{
		char *cut = NULL;

		for (char *p = strstr(sabs, "/schemas/"); p; p = strstr(p + 1, "/schemas/"))
			cut = p;
		if (cut) {
			dirpath = strndup(sabs, (size_t)(cut - sabs) + strlen("/schemas"));
			name = cut + strlen("/schemas/");
		} else {
			char *slash = strrchr(sabs, '/');

			dirpath = slash == sabs ? strdup("/") : strndup(sabs, (size_t)(slash - sabs));
			name = slash + 1;
		}
	}
	dirfd = dirpath ? open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dirfd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, dirpath ? dirpath : argv[1], strerror(errno));
		goto out;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	text = fd >= 0 ? slurp_fd(fd, &len) : NULL;
	if (fd >= 0)
		close(fd);
	if (!text) {
		fprintf(stderr, "%s: %s: %s\n", prog, argv[1], strerror(errno));
		goto out;
	}
	sdoc = stash_json_parse(text, len, &err);
	free(text);
	text = NULL;
	if (!sdoc) {
		fprintf(stderr, "%s: schema %s is not JSON: %s\n", prog, argv[1], err.text);
		goto out;
	}
	r = compile_named(dirfd, false, name, sdoc, &schema, &err);
	if (r < 0) {
		fprintf(stderr, "%s: schema %s does not compile: %s\n", prog, argv[1], err.text);
		goto out;
	}

	fd = strcmp(docpath, "-") == 0 ? dup(0) : open(docpath, O_RDONLY | O_CLOEXEC);
	text = fd >= 0 ? slurp_fd(fd, &len) : NULL;
	if (fd >= 0)
		close(fd);
	if (!text) {
		fprintf(stderr, "%s: %s: %s\n", prog, docpath, strerror(errno));
		goto out;
	}
	stash_error_clear(&err);
	doc = stash_json_parse(text, len, &err);
	if (!doc) {
		printf("%s: invalid: not JSON: %s\n", docpath, err.text);
		status = EXIT_FAIL;
		goto out;
	}
	r = stash_schema_validate(schema, doc, &err);
	if (r == 0) {
		printf("%s: valid (schema %s)\n", docpath, name);
		status = EXIT_OK;
	} else if (!strcmp(err.keyword, "$ref") && strstr(err.text, "unresolved reference")) {
		/* No verdict: the schema that would decide is not there. */
		fprintf(stderr, "%s: %s cannot be judged, a schema it refers to is missing: %s\n",
			prog, docpath, err.text);
	} else {
		printf("%s: invalid: %s\n", docpath, err.text);
		status = EXIT_FAIL;
	}
out:
	stash_schema_free(schema);
	json_decref(sdoc);
	json_decref(doc);
	free(text);
	free(dirpath);
	free(sabs);
	if (dirfd >= 0)
		close(dirfd);
	return status;
}

/* ---- follow ----------------------------------------------------------- */

static volatile sig_atomic_t stop_following;

static void on_signal(int sig)
{
	(void)sig;
	stop_following = 1;
}

/* @v on one line, numbers as the record wrote them. */
static void print_compact(const json_t *v)
{
	size_t n;
	char *d = stash_json_dump(v, 0, &n);

	if (d)
		fwrite(d, 1, n - 1, stdout);    /* without its newline */
	else
		fputs("?", stdout);
	free(d);
}

/* One audit record, readable: "#3 2026-...Z merge p v5 uid 0 pid 446 (sh) {...}". */
static void print_pretty(const char *line, size_t len)
{
	static const char *const shown[] = { "seq", "time", "op", "stash", "version", "uid",
					     "pid", "comm", "data" };
	json_t *rec = len ? stash_json_parse(line, len, NULL) : NULL;
	const char *key;
	json_t *v;

	if (!json_is_object(rec) || !json_object_get(rec, "op")) {
		fwrite(line, 1, len, stdout);
		putchar('\n');
		json_decref(rec);
		return;
	}
	if (json_is_integer(json_object_get(rec, "seq")))
		printf("#%" JSON_INTEGER_FORMAT " ", json_integer_value(json_object_get(rec, "seq")));
	if (json_is_string(json_object_get(rec, "time")))
		printf("%s ", json_string_value(json_object_get(rec, "time")));
	printf("%-6s ", json_is_string(json_object_get(rec, "op")) ?
	       json_string_value(json_object_get(rec, "op")) : "?");
	if (json_is_string(json_object_get(rec, "stash")))
		printf("%s ", json_string_value(json_object_get(rec, "stash")));
	if (json_is_integer(json_object_get(rec, "version")))
		printf("v%" JSON_INTEGER_FORMAT " ", json_integer_value(json_object_get(rec, "version")));
	if (json_is_integer(json_object_get(rec, "uid")))
		printf("uid %" JSON_INTEGER_FORMAT " ", json_integer_value(json_object_get(rec, "uid")));
	if (json_is_integer(json_object_get(rec, "pid")))
		printf("pid %" JSON_INTEGER_FORMAT " ", json_integer_value(json_object_get(rec, "pid")));
	if (json_is_string(json_object_get(rec, "comm")) &&
	    *json_string_value(json_object_get(rec, "comm")))
		printf("(%s) ", json_string_value(json_object_get(rec, "comm")));
	v = json_object_get(rec, "data");
	if (v && !json_is_null(v))
		print_compact(v);
	/* Fields a later release adds are shown, not dropped. */
	json_object_foreach(rec, key, v) {
		bool is_shown = false;

		for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
			is_shown |= strcmp(key, shown[i]) == 0;
		if (is_shown)
			continue;
		printf(" %s=", key);
		print_compact(v);
	}
	putchar('\n');
	json_decref(rec);
}

struct line_buf {
	char *buf;
	size_t len, cap;
};

/* Output @len bytes: raw as they come, pretty one complete line at a time. */
static int emit(struct line_buf *lb, const char *data, size_t len, bool raw)
{
	size_t start = 0;

	if (raw) {
		if (fwrite(data, 1, len, stdout) != len)
			return -1;
		return fflush(stdout) == 0 ? 0 : -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		if (lb->len) {
			if (lb->len + (i - start) > lb->cap) {
				size_t ncap = lb->len + (i - start) + 4096;
				char *nb = realloc(lb->buf, ncap);

				if (!nb)
					return -1;
				lb->buf = nb;
				lb->cap = ncap;
			}
			memcpy(lb->buf + lb->len, data + start, i - start);
			print_pretty(lb->buf, lb->len + (i - start));
			lb->len = 0;
		} else {
			print_pretty(data + start, i - start);
		}
		start = i + 1;
	}
	if (start < len) {
		size_t rest = len - start;

		if (lb->len + rest > lb->cap) {
			size_t ncap = lb->len + rest + 4096;
			char *nb = realloc(lb->buf, ncap);

			if (!nb)
				return -1;
			lb->buf = nb;
			lb->cap = ncap;
		}
		memcpy(lb->buf + lb->len, data + start, rest);
		lb->len += rest;
	}
	return fflush(stdout) == 0 ? 0 : -1;
}

/* Offset where the last @n lines of the first @size bytes of @fd start. */
static off_t last_lines(int fd, off_t size, long n)
{
	char buf[65536];
	off_t pos = size;
	long seen = 0;

	if (n <= 0)
		return size;
	while (pos > 0) {
		size_t chunk = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
		ssize_t got = pread(fd, buf, chunk, pos - (off_t)chunk);

		if (got != (ssize_t)chunk)
			return 0;
		for (ssize_t i = got - 1; i >= 0; i--) {
			off_t at = pos - (off_t)chunk + i;

			/* The newline that ends the file does not start a line. */
			if (buf[i] != '\n' || at == size - 1)
				continue;
			if (++seen == n)
				return at + 1;
		}
		pos -= (off_t)chunk;
	}
	return 0;
}

static int cmd_follow(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "lines", required_argument, NULL, 'n' },
		{ "raw", no_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct line_buf lb = { 0 };
	struct timespec start, now;
	struct sigaction sa = { .sa_handler = on_signal };
	double timeout = -1;
	long lines = -1;
	bool raw = false;
	char buf[65536], *end;
	struct stat sb;
	off_t pos;
	int c, fd, status = EXIT_OK;

	while ((c = getopt_long(argc, argv, "n:rt:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			lines = strtol(optarg, &end, 10);
			if (*end || end == optarg || lines < 0)
				return fail_usage("follow: -n takes a number of lines");
			break;
		case 'r':
			raw = true;
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || end == optarg || timeout < 0)
				return fail_usage("follow: --timeout takes seconds");
			break;
		case 'h':
			return usage(stdout), EXIT_OK;
		default:
			return fail_usage("follow: bad option");
		}
	}
	if (argc - optind != 1)
		return fail_usage("follow takes one STREAM");
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, argv[optind], strerror(errno));
		return EXIT_FAIL;
	}
	if (!S_ISREG(sb.st_mode)) {
		fprintf(stderr, "%s: %s: not a stream\n", prog, argv[optind]);
		close(fd);
		return EXIT_FAIL;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	pos = lines >= 0 ? last_lines(fd, sb.st_size, lines) : 0;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!stop_following) {
		ssize_t got;

		if (fstat(fd, &sb) < 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, argv[optind], strerror(errno));
			status = EXIT_FAIL;
			break;
		}
		if (sb.st_size < pos) {
			/* Streams never shrink; a plain file given to us may. */
			fprintf(stderr, "%s: %s: file shrank, reading from the start\n", prog,
				argv[optind]);
			pos = 0;
			lb.len = 0;
		}
		while (pos < sb.st_size && !stop_following) {
			size_t want = sb.st_size - pos > (off_t)sizeof(buf) ? sizeof(buf) :
				      (size_t)(sb.st_size - pos);

			got = pread(fd, buf, want, pos);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break;
			if (emit(&lb, buf, (size_t)got, raw) < 0) {
				stop_following = 1;     /* reader went away */
				break;
			}
			pos += got;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timeout >= 0 && (double)(now.tv_sec - start.tv_sec) +
				    (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= timeout)
			break;
		/* 200 ms: quick enough for a person, nothing for the daemon. */
		nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000 * 1000 }, NULL);
	}
	if (lb.len)
		print_pretty(lb.buf, lb.len);
	fflush(stdout);
	free(lb.buf);
	close(fd);
	return status;
}

/* ---- fsck ------------------------------------------------------------- */

struct compiled {
	char *name;
	struct stash_schema *schema;    /* NULL: does not compile */
	char why[STASH_ERROR_TEXT];
	struct compiled *next;
};

struct fsck {
	int root;               /* BACKING */
	int schemas;            /* BACKING/schemas, or -1 */
	int tmp;                /* BACKING/.stashfs/tmp, or -1 */
	bool repair;
	unsigned problems;      /* found */
	unsigned repaired;
	unsigned notes;
	bool error;             /* could not check something: exit 2 */
	struct compiled *cache;
};

/* One line of the report: "problem   PATH: what", aligned on the tag. */
static void report(const char *tag, unsigned *counter, const char *path, const char *fmt,
		   va_list ap)
{
	(*counter)++;
	printf("%-9s %s: ", tag, *path ? path : ".");
	vprintf(fmt, ap);
	putchar('\n');
}

static void problem(struct fsck *f, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem(struct fsck *f, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report("problem", &f->problems, path, fmt, ap);
	va_end(ap);
}

static void repaired(struct fsck *f, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void repaired(struct fsck *f, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report("repaired", &f->repaired, path, fmt, ap);
	va_end(ap);
}

static void note(struct fsck *f, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct fsck *f, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report("note", &f->notes, path, fmt, ap);
	va_end(ap);
}

static void fsck_error(struct fsck *f, const char *path, const char *what, int e)
{
	f->error = true;
	fprintf(stderr, "%s: fsck: %s: %s: %s\n", prog, *path ? path : ".", what, strerror(e));
}

/* The compiled schema @name, or NULL with @why set (cached per run). */
static struct compiled *schema_get(struct fsck *f, const char *name)
{
	struct compiled *c;
	struct stash_error err;
	json_t *doc;

	for (c = f->cache; c; c = c->next) {
		if (strcmp(c->name, name) == 0)
			return c;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->name = strdup(name);
	stash_error_clear(&err);
	if (f->schemas < 0) {
		snprintf(c->why, sizeof(c->why), "there is no schemas/ directory");
	} else if (!(doc = load_named(f->schemas, name, true, &err))) {
		snprintf(c->why, sizeof(c->why), "%s", err.text);
	} else {
		if (compile_named(f->schemas, true, name, doc, &c->schema, &err) < 0)
			snprintf(c->why, sizeof(c->why), "%s", err.text);
		json_decref(doc);
	}
	c->next = f->cache;
	f->cache = c;
	return c;
}

/* @buf holds the value of xattr @name of @fd; NUL-terminated, length returned. */
static ssize_t get_x(int fd, const char *name, char *buf, size_t size)
{
	ssize_t n = fgetxattr(fd, name, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* The highest "seq" among the JSON lines of stream @fd (0 if none). */
static uint64_t stream_last_seq(int fd)
{
	size_t len;
	char *text, *line, *nl;
	uint64_t best = 0;

	if (lseek(fd, 0, SEEK_SET) < 0 || !(text = slurp_fd(fd, &len)))
		return 0;
	for (line = text; line < text + len; line = nl + 1) {
		json_t *rec, *seq;

		nl = memchr(line, '\n', (size_t)(text + len - line));
		if (!nl)
			nl = text + len;
		rec = json_loadb(line, (size_t)(nl - line), 0, NULL);
		seq = json_object_get(rec, "seq");
		if (json_is_integer(seq) && json_integer_value(seq) > 0 &&
		    (uint64_t)json_integer_value(seq) > best)
			best = (uint64_t)json_integer_value(seq);
		json_decref(rec);
	}
	free(text);
	return best;
}

static void set_x(struct fsck *f, int fd, const char *path, const char *name, const char *value,
		  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void set_x(struct fsck *f, int fd, const char *path, const char *name, const char *value,
		  const char *fmt, ...)
{
	char what[512];
	va_list ap;
	int r = value ? fsetxattr(fd, name, value, strlen(value), 0) : fremovexattr(fd, name);

	if (r < 0) {
		fsck_error(f, path, name, errno);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	repaired(f, path, "%s", what);
}

enum obj { OBJ_DIR, OBJ_STASH, OBJ_STREAM, OBJ_SCHEMA };

/* The metadata of one object (@fd open on it, @path relative to BACKING). */
static void check_meta(struct fsck *f, int fd, const char *path, enum obj kind,
		       const struct stat *sb)
{
	char v[4096];
	ssize_t n;
	uint64_t num;

	n = get_x(fd, XATTR_VERSION, v, sizeof(v));
	if (n >= 0 && !backing_parse_u64(v, (size_t)n, NULL)) {
		problem(f, path, XATTR_VERSION " \"%.60s\" is not a decimal number", v);
		if (f->repair) {
			/* Keep the number the daemon already reads from it: versions never go back. */
			unsigned long long prefix = strtoull(v, NULL, 10);
			char nv[32];

			snprintf(nv, sizeof(nv), "%llu", prefix ? prefix : 1ULL);
			set_x(f, fd, path, XATTR_VERSION, nv, XATTR_VERSION " set to %s", nv);
		}
	}
	n = get_x(fd, XATTR_TTL, v, sizeof(v));
	if (n >= 0 && (!backing_parse_u64(v, (size_t)n, &num) || num > STASH_TTL_MAX)) {
		problem(f, path, XATTR_TTL " \"%.60s\" is not a number of seconds "
			"(0 to 100 years)", v);
		if (f->repair)
			set_x(f, fd, path, XATTR_TTL, NULL,
			      "removed the bad user.stash.ttl: the object no longer expires");
	}
	n = get_x(fd, XATTR_PERSISTENT, v, sizeof(v));
	if (n >= 0 && strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
		problem(f, path, XATTR_PERSISTENT " \"%.60s\" is not 0 or 1", v);
		if (f->repair)
			set_x(f, fd, path, XATTR_PERSISTENT, "1",
			      XATTR_PERSISTENT " set to 1 (keeps the object)");
	}
	n = get_x(fd, XATTR_PERSISTENT, v, sizeof(v));
	if (n == 1 && v[0] == '0' && kind != OBJ_DIR) {
		char lockname[80];

		n = get_x(fd, XATTR_SESSION, v, sizeof(v));
		snprintf(lockname, sizeof(lockname), "%.60s.lock", v);
		if (n <= 0 || strchr(v, '/') || f->tmp < 0 || !backing_instance_alive(f->tmp, lockname))
			note(f, path, "ephemeral (persistent=0) and its daemon instance %s is gone: "
			     "invisible on the mount, the daemon removes it at its next start",
			     n > 0 ? v : "(none)");
	}
	n = get_x(fd, XATTR_SEQ, v, sizeof(v));
	if (n >= 0 && !backing_parse_u64(v, (size_t)n, NULL)) {
		problem(f, path, XATTR_SEQ " \"%.60s\" is not a decimal number", v);
		if (f->repair && kind == OBJ_STREAM) {
			char nv[32];

			snprintf(nv, sizeof(nv), "%" PRIu64, stream_last_seq(fd));
			set_x(f, fd, path, XATTR_SEQ, nv,
			      XATTR_SEQ " set to %s, the last record's seq", nv);
		}
	}
	n = get_x(fd, XATTR_SHA256, v, sizeof(v));
	if (n >= 0 && kind != OBJ_DIR) {
		bool hex = n == 64;
		char sum[65];

		for (ssize_t i = 0; hex && i < n; i++)
			hex = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
		if (!hex)
			problem(f, path, XATTR_SHA256 " \"%.70s\" is not a SHA-256 in hex", v);
		else if (stash_sha256_fd(fd, sum) == 0 && strcmp(sum, v) != 0)
			problem(f, path, "content does not match user.stash.sha256 (changed "
				"outside the daemon?)");
	}
	n = get_x(fd, XATTR_LINKED, v, sizeof(v));
	if (n >= 0) {
		if (kind != OBJ_STREAM)
			problem(f, path, XATTR_LINKED " on something that is not a "
				"stream under streams/");
		else if (memchr(v, '\0', (size_t)n) || !backing_name_ok(v) ||
			 strncmp(v, "streams/", 8) == 0)
			problem(f, path, XATTR_LINKED " \"%.100s\" is not a stash path "
				"(relative to the mount root, no \"..\", not a stream)", v);
	}
	n = get_x(fd, XATTR_SCHEMA, v, sizeof(v));
	if (n >= 0) {
		struct compiled *c;

		if (memchr(v, '\0', (size_t)n) || !backing_name_ok(v)) {
			problem(f, path, XATTR_SCHEMA " \"%.100s\" is not a schema name", v);
			return;
		}
		c = schema_get(f, v);
		if (!c) {
			fsck_error(f, path, "schema", ENOMEM);
		} else if (!c->schema) {
			problem(f, path, "bound to schema %s, which is unusable (writes are refused): %s",
				v, c->why);
		} else if (kind != OBJ_DIR && sb->st_size > 0) {
			struct stash_error err;
			size_t len;
			char *text;
			json_t *doc;

			stash_error_clear(&err);
			if (lseek(fd, 0, SEEK_SET) < 0 || !(text = slurp_fd(fd, &len))) {
				fsck_error(f, path, "read", errno);
				return;
			}
			doc = stash_json_parse(text, len, &err);
			free(text);
			if (!doc)
				problem(f, path, "bound to schema %s but not JSON: %s", v, err.text);
			else if (stash_schema_validate(c->schema, doc, &err) < 0)
				problem(f, path, "no longer validates against schema %s: %s", v,
					err.text);
			json_decref(doc);
		}
	}
}

/* A schema file under schemas/ must be JSON and compile. */
static void check_schema_file(struct fsck *f, const char *path)
{
	const char *name = path + strlen("schemas/");
	struct compiled *c = schema_get(f, name);

	if (c && !c->schema)
		problem(f, path, "not a valid schema: %s", c->why);
}

static bool has_json_suffix(const char *s)
{
	size_t n = strlen(s);

	return n > 5 && strcmp(s + n - 5, ".json") == 0;
}

/* Walk directory @dfd (@path relative to BACKING, "" for the root). */
static void walk(struct fsck *f, int dfd, const char *path, int depth)
{
	struct dirent **list = NULL;
	/* Sorted, so that two runs print the same report. */
	int count = scandirat(dfd, ".", &list, NULL, alphasort);

	if (count < 0) {
		fsck_error(f, path, "opendir", errno);
		return;
	}
	for (int i = 0; i < count; i++) {
		struct dirent *e = list[i];
		char sub[PATH_MAX];
		struct stat sb;
		enum obj kind;
		int fd;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (depth == 0 && strcmp(e->d_name, ".stashfs") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "/" : "", e->d_name);
		if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			fsck_error(f, sub, "stat", errno);
			continue;
		}
		if (S_ISLNK(sb.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(dfd, e->d_name, target, sizeof(target) - 1);

			target[n > 0 ? n : 0] = '\0';
			problem(f, sub, "planted symlink (-> %s): the daemon never follows or lists "
				"it; remove it by hand", target);
			continue;
		}
		if (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
			problem(f, sub, "planted %s: not a stash, the daemon does not serve it; "
				"remove it by hand",
				S_ISFIFO(sb.st_mode) ? "fifo" : S_ISSOCK(sb.st_mode) ? "socket" :
				"device node");
			continue;
		}
		if (strncmp(e->d_name, ".stashfs", 8) == 0) {
			problem(f, sub, "reserved name: invisible on the mount");
			continue;
		}
		if (S_ISREG(sb.st_mode) && has_json_suffix(e->d_name))
			problem(f, sub, "name ends in .json: hidden on the mount behind the JSON "
				"view of \"%.*s\"", (int)(strlen(sub) - 5), sub);
		fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
			    (S_ISDIR(sb.st_mode) ? O_DIRECTORY : 0));
		if (fd < 0) {
			fsck_error(f, sub, "open", errno);
			continue;
		}
		if (S_ISDIR(sb.st_mode)) {
			check_meta(f, fd, sub, OBJ_DIR, &sb);
			if (depth < 200)
				walk(f, fd, sub, depth + 1);
			close(fd);
			continue;
		}
		if (strncmp(sub, "streams/", 8) == 0)
			kind = OBJ_STREAM;
		else if (strncmp(sub, "schemas/", 8) == 0)
			kind = OBJ_SCHEMA;
		else
			kind = OBJ_STASH;
		if (kind == OBJ_SCHEMA)
			check_schema_file(f, sub);
		check_meta(f, fd, sub, kind, &sb);
		close(fd);
	}
	for (int i = 0; i < count; i++)
		free(list[i]);
	free(list);
}

/* The temp directory of dead instance @name: temp files go, journals stay. */
static void check_dead_instance(struct fsck *f, int tmpfd, const char *name, bool has_lock)
{
	char path[PATH_MAX], lockname[NAME_MAX + 8];
	unsigned temps = 0, journals = 0, odd = 0, removed = 0;
	bool leftover, gone = false;
	struct dirent *e;
	DIR *d;
	int dfd;

	snprintf(path, sizeof(path), ".stashfs/tmp/%s", name);
	snprintf(lockname, sizeof(lockname), "%s.lock", name);
	dfd = openat(tmpfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || !(d = fdopendir(dfd))) {
		if (dfd >= 0)
			close(dfd);
		fsck_error(f, path, "opendir", errno);
		return;
	}
	for (int pass = 0; pass < 2; pass++) {
		rewinddir(d);
		while ((e = readdir(d))) {
			struct stat sb;

			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
			    fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			/*
			 * j<n> is a commit's audit journal: the daemon replays it
			 * into the linked streams at its next start.  Removing it
			 * would lose records, so it stays.
			 */
			if (pass == 0 && !S_ISREG(sb.st_mode))
				odd++;
			else if (pass == 0 && e->d_name[0] == BACKING_JOURNAL_PREFIX)
				journals++;
			else if (pass == 0)
				temps++;
			else if (S_ISREG(sb.st_mode) && e->d_name[0] != 'j' &&
				 unlinkat(dfd, e->d_name, 0) == 0)
				removed++;
		}
		if (pass == 0) {
			leftover = temps || (!journals && !odd);
			if (leftover)
				problem(f, path, "leftover temp directory of dead instance %s "
					"(%u temp file%s)", name, temps, temps == 1 ? "" : "s");
			if (odd)
				problem(f, path, "%u entr%s that %s not temp files (left in place)",
					odd, odd == 1 ? "y" : "ies", odd == 1 ? "is" : "are");
			if (journals)
				note(f, path, "%u stream journal%s of dead instance %s: the daemon "
				     "appends the records at its next start (left in place)",
				     journals, journals == 1 ? "" : "s", name);
			if (!f->repair || !leftover)
				break;
		}
	}
	closedir(d);
	if (f->repair && leftover) {
		if (!journals && !odd && unlinkat(tmpfd, name, AT_REMOVEDIR) == 0) {
			gone = true;
			if (has_lock)
				unlinkat(tmpfd, lockname, 0);
		}
		repaired(f, path, "removed %u temp file%s%s", removed, removed == 1 ? "" : "s",
			 gone ? " and the directory" : "");
	}
	if (journals && !has_lock) {
		/* The daemon finds dead instances by their lock files. */
		problem(f, path, "no %s: the daemon would never replay the journal%s", lockname,
			journals == 1 ? "" : "s");
		if (f->repair) {
			int lfd = openat(tmpfd, lockname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

			if (lfd >= 0) {
				close(lfd);
				repaired(f, path, "created %s so that the daemon replays the journal%s",
					 lockname, journals == 1 ? "" : "s");
			} else {
				fsck_error(f, path, lockname, errno);
			}
		}
	}
}

/* .stashfs/tmp: which instances are alive, what the dead ones left. */
static void check_tmp(struct fsck *f, int internal, unsigned *alive)
{
	struct dirent *e;
	DIR *d;
	int tmpfd = openat(internal, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int dfd;

	*alive = 0;
	if (tmpfd < 0) {
		if (errno != ENOENT)
			fsck_error(f, ".stashfs/tmp", "open", errno);
		return;
	}
	/* First pass: count live instances, so --repair can refuse early. */
	dfd = dup(tmpfd);
	if (dfd < 0 || !(d = fdopendir(dfd))) {
		if (dfd >= 0)
			close(dfd);
		fsck_error(f, ".stashfs/tmp", "opendir", errno);
		close(tmpfd);
		return;
	}
	while ((e = readdir(d))) {
		if (backing_has_suffix(e->d_name, BACKING_LOCK_SUFFIX) && backing_instance_alive(tmpfd, e->d_name))
			(*alive)++;
	}
	if (*alive && f->repair) {
		closedir(d);
		close(tmpfd);
		return;
	}
	rewinddir(d);
	while ((e = readdir(d))) {
		char path[PATH_MAX], other[NAME_MAX + 8];
		struct stat sb;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), ".stashfs/tmp/%s", e->d_name);
		if (fstatat(tmpfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			snprintf(other, sizeof(other), "%s.lock", e->d_name);
			if (backing_instance_alive(tmpfd, other)) {
				note(f, path, "instance %s is alive: a daemon is serving this backing "
				     "directory; its temp files are left alone", e->d_name);
				continue;
			}
			check_dead_instance(f, tmpfd, e->d_name,
					    faccessat(tmpfd, other, F_OK, AT_SYMLINK_NOFOLLOW) == 0);
		} else if (S_ISREG(sb.st_mode) && backing_has_suffix(e->d_name, BACKING_LOCK_SUFFIX)) {
			struct stat dsb;

			snprintf(other, sizeof(other), "%.*s", (int)(strlen(e->d_name) - 5), e->d_name);
			if (fstatat(tmpfd, other, &dsb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(dsb.st_mode))
				continue;       /* judged with its directory */
			if (backing_instance_alive(tmpfd, e->d_name))
				continue;
			problem(f, path, "lock file of a dead instance without its directory");
			if (f->repair && unlinkat(tmpfd, e->d_name, 0) == 0)
				repaired(f, path, "removed");
		} else if (S_ISLNK(sb.st_mode)) {
			problem(f, path, "planted symlink; remove it by hand");
		} else {
			problem(f, path, "unexpected entry in the temp area");
			if (f->repair && S_ISREG(sb.st_mode) && unlinkat(tmpfd, e->d_name, 0) == 0)
				repaired(f, path, "removed");
		}
	}
	closedir(d);
	close(tmpfd);
}

/* .stashfs itself: the format marker, leftovers, the temp area. */
static void check_internal(struct fsck *f, unsigned *alive)
{
	char want[BACKING_FORMAT_MARKER_MAX], buf[128] = "";
	struct stat sb;
	int internal, fd;

	*alive = 0;
	backing_format_marker(want);
	if (fstatat(f->root, ".stashfs", &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		problem(f, ".stashfs", "missing: not a stashfs backing directory, or one that was "
			"never mounted (the daemon creates it at the first mount)");
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		problem(f, ".stashfs", "not a directory; the daemon cannot start");
		return;
	}
	internal = openat(f->root, ".stashfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (internal < 0) {
		fsck_error(f, ".stashfs", "open", errno);
		return;
	}
	check_tmp(f, internal, alive);
	if (*alive && f->repair) {
		close(internal);
		return;
	}
	fd = openat(internal, BACKING_FORMAT_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		problem(f, ".stashfs/format", "missing");
		if (f->repair) {
			/* What the daemon does at start-up: a temp file renamed in place. */
			int r = backing_check_format(internal, NULL);

			if (r == 0)
				repaired(f, ".stashfs/format", "written (%.*s)",
					 (int)strcspn(want, "\n"), want);
			else
				fsck_error(f, ".stashfs/format", "write", -r);
		}
	} else if (fd < 0) {
		problem(f, ".stashfs/format", "cannot be read: %s", strerror(errno));
	} else {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = '\0';
		close(fd);
		if (strcmp(buf, want) != 0) {
			buf[strcspn(buf, "\n")] = '\0';
			problem(f, ".stashfs/format", "unknown format marker \"%.60s\" (expected "
				"\"%.*s\"); left alone: another release may own it", buf,
				(int)strcspn(want, "\n"), want);
		}
	}
	if (fstatat(internal, BACKING_FORMAT_TMP, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		problem(f, ".stashfs/format.tmp", "leftover of an interrupted start-up");
		if (f->repair && S_ISREG(sb.st_mode) && unlinkat(internal, BACKING_FORMAT_TMP, 0) == 0)
			repaired(f, ".stashfs/format.tmp", "removed");
	}
	close(internal);
}

static int cmd_fsck(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct fsck f = { .root = -1, .schemas = -1, .tmp = -1 };
	unsigned alive = 0, left;
	char mnt[PATH_MAX], name[PATH_MAX], *abs;
	struct stat sb;
	int c, status;

	while ((c = getopt_long(argc, argv, "rh", lopts, NULL)) != -1) {
		if (c == 'r')
			f.repair = true;
		else if (c == 'h')
			return usage(stdout), EXIT_OK;
		else
			return fail_usage("fsck: bad option");
	}
	if (argc - optind != 1)
		return fail_usage("fsck takes one BACKING directory");
	f.root = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f.root < 0) {
		fprintf(stderr, "%s: fsck: %s: %s\n", prog, argv[optind], strerror(errno));
		return EXIT_ERROR;
	}
	abs = abs_path(argv[optind]);
	if (abs && find_mount(abs, mnt, sizeof(mnt), name, sizeof(name))) {
		fprintf(stderr, "%s: fsck: %s is a stashfs mount; give the backing directory\n",
			prog, argv[optind]);
		free(abs);
		close(f.root);
		return EXIT_ERROR;
	}
	free(abs);
	check_internal(&f, &alive);
	if (alive && f.repair) {
		fprintf(stderr, "%s: fsck: a daemon is serving %s (%u live instance%s): stop it "
			"before --repair\n", prog, argv[optind], alive, alive == 1 ? "" : "s");
		close(f.root);
		return EXIT_ERROR;
	}
	f.tmp = backing_openat2(f.root, BACKING_TMP_DIR, O_RDONLY | O_DIRECTORY, 0);
	if (fstatat(f.root, "schemas", &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
		f.schemas = openat(f.root, "schemas", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	for (const char *top = "streams"; top; top = strcmp(top, "streams") ? NULL : "schemas") {
		if (fstatat(f.root, top, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(sb.st_mode) &&
		    !S_ISLNK(sb.st_mode))
			problem(&f, top, "must be a directory; the mount cannot show it");
	}
	walk(&f, f.root, "", 0);

	left = f.problems - f.repaired;
	printf("%s: %u problem%s found, %u repaired, %u left", argv[optind], f.problems,
	       f.problems == 1 ? "" : "s", f.repaired, left);
	if (f.notes)
		printf(" (%u note%s)", f.notes, f.notes == 1 ? "" : "s");
	putchar('\n');
	if (f.error)
		status = EXIT_ERROR;
	else
		status = left ? EXIT_FAIL : EXIT_OK;
	for (struct compiled *n, *k = f.cache; k; k = n) {
		n = k->next;
		stash_schema_free(k->schema);
		free(k->name);
		free(k);
	}
	if (f.schemas >= 0)
		close(f.schemas);
	if (f.tmp >= 0)
		close(f.tmp);
	close(f.root);
	return status;
}

/* ---- log ---------------------------------------------------------------- */

static void log_row(json_t *o, const char *mark)
{
	printf("%-8" JSON_INTEGER_FORMAT "  %-24s  %10" JSON_INTEGER_FORMAT "  %s%s\n",
	       json_integer_value(json_object_get(o, "version")),
	       json_string_value(json_object_get(o, "time")) ?: "-",
	       json_integer_value(json_object_get(o, "size")),
	       json_string_value(json_object_get(o, "sha256")) ?: "-", mark);
}

/* The versions of a stash, read from the mount's metadata view. */
static int cmd_log(int argc, char **argv)
{
	char mnt[PATH_MAX], name[PATH_MAX], *abs, *meta = NULL, *text;
	json_t *doc, *hist, *o;
	struct stat sb;
	size_t len, i;
	int fd;

	if (argc != 2 || argv[1][0] == '-')
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? (usage(stdout), EXIT_OK) :
			fail_usage("log takes one PATH");
	abs = abs_path(argv[1]);
	if (!abs || !find_mount(abs, mnt, sizeof(mnt), name, sizeof(name)) || !*name) {
		fprintf(stderr, "%s: %s: not a stash on a stashfs mount\n", prog, argv[1]);
		free(abs);
		return EXIT_FAIL;
	}
	free(abs);
	if (asprintf(&meta, "%s/%s/%s", mnt, STASH_META_DIR, name) < 0)
		return EXIT_ERROR;
	fd = open(meta, O_RDONLY | O_CLOEXEC);
	free(meta);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, argv[1], strerror(errno));
		return EXIT_FAIL;
	}
	text = slurp_fd(fd, &len);
	close(fd);
	doc = text ? json_loadb(text, len, 0, NULL) : NULL;
	free(text);
	hist = json_object_get(doc, "history");
	if (!json_is_array(hist)) {
		fprintf(stderr, "%s: %s: not a stash (no versions)\n", prog, argv[1]);
		json_decref(doc);
		return EXIT_FAIL;
	}
	printf("%-8s  %-24s  %10s  %s\n", "VERSION", "TIME", "SIZE", "SHA256");
	/* The current version first: the stash itself, unless it was removed. */
	if (json_is_integer(json_object_get(doc, "version")) && stat(argv[1], &sb) == 0) {
		char when[64];

		backing_iso_time(&sb.st_mtim, true, when);
		o = json_pack("{s:O, s:s, s:O, s:O}", "version", json_object_get(doc, "version"),
			      "time", when, "size", json_object_get(doc, "size"),
			      "sha256", json_object_get(doc, "sha256"));
		if (o)
			log_row(o, "  (current)");
		json_decref(o);
	}
	json_array_foreach(hist, i, o)
		log_row(o, "");
	json_decref(doc);
	return EXIT_OK;
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "show", cmd_show },
		{ "set", cmd_set },
		{ "validate", cmd_validate },
		{ "follow", cmd_follow },
		{ "fsck", cmd_fsck },
		{ "log", cmd_log },
	};

	if (argc < 2)
		return usage(stderr), EXIT_ERROR;
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0)
		return usage(stdout), EXIT_OK;
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("stashctl %s\n", STASHFS_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	}
	return fail_usage("unknown command \"%s\"", argv[1]);
}
