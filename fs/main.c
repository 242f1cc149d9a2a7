// SPDX-License-Identifier: MIT
/*
 * main.c - the stashfs daemon: options, start-up and the FUSE session.
 *
 *   stashfs [options] [BACKING] MOUNTPOINT
 *
 * BACKING defaults to $XDG_DATA_HOME/stashfs (~/.local/share/stashfs).
 * Works as a mount helper too: `mount -t fuse.stashfs BACKING MNT -o ...`
 * runs `stashfs BACKING MNT -o ...` through mount.fuse3.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"

struct cmdline {
	char *backing;
	char *mountpoint;
	int nonopts;
	int show_help;
	int show_version;
	int allow_other;
	int default_permissions;
	int no_auto_unmount;
	int shared;
	char *persistent;
	char *sync;
	char *max_size;
	char *json_indent;
	char *cache_timeout;
	char *ttl;
	char *versions;
	char *sweep_interval;
	char *uid;
	char *gid;
	char *umask;
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_ALLOW_OTHER,
	KEY_DEFAULT_PERMISSIONS,
	KEY_DROP,
};

#define OPT(t, p) { t, offsetof(struct cmdline, p), 1 }
static const struct fuse_opt stashfs_opts[] = {
	OPT("persistent=%s", persistent),
	OPT("sync=%s", sync),
	OPT("max_size=%s", max_size),
	OPT("json_indent=%s", json_indent),
	OPT("cache_timeout=%s", cache_timeout),
	OPT("ttl=%s", ttl),
	OPT("versions=%s", versions),
	OPT("sweep_interval=%s", sweep_interval),
	OPT("uid=%s", uid),
	OPT("gid=%s", gid),
	OPT("umask=%s", umask),
	OPT("noauto_unmount", no_auto_unmount),
	OPT("shared", shared),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("default_permissions", KEY_DEFAULT_PERMISSIONS),
	/* Mount-helper and fstab conventions that mean nothing to FUSE. */
	FUSE_OPT_KEY("nofail", KEY_DROP),
	FUSE_OPT_KEY("_netdev", KEY_DROP),
	FUSE_OPT_KEY("auto", KEY_DROP),
	FUSE_OPT_KEY("noauto", KEY_DROP),
	FUSE_OPT_KEY("user", KEY_DROP),
	FUSE_OPT_KEY("nouser", KEY_DROP),
	FUSE_OPT_KEY("users", KEY_DROP),
	FUSE_OPT_KEY("defaults", KEY_DROP),
	FUSE_OPT_KEY("x-", KEY_DROP),
	FUSE_OPT_KEY("comment=", KEY_DROP),
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cmdline *c = data;

	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (c->nonopts == 0)
			c->mountpoint = strdup(arg);
		else if (c->nonopts == 1) {
			c->backing = c->mountpoint;
			c->mountpoint = strdup(arg);
		} else {
			fprintf(stderr, "stashfs: too many arguments: %s\n", arg);
			return -1;
		}
		c->nonopts++;
		return 0;
	case KEY_HELP:
		c->show_help = 1;
		return 0;
	case KEY_VERSION:
		c->show_version = 1;
		return 0;
	case KEY_ALLOW_OTHER:
		c->allow_other = 1;
		return 1;
	case KEY_DEFAULT_PERMISSIONS:
		c->default_permissions = 1;
		return 1;
	case KEY_DROP:
		return 0;
	default:
		return strncmp(arg, "x-", 2) == 0 ? 0 : 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s [options] [BACKING] MOUNTPOINT\n\n", prog);
	printf("Mount the stash store kept in BACKING (default: $XDG_DATA_HOME/stashfs,\n"
	       "or ~/.local/share/stashfs) on MOUNTPOINT.\n\n"
	       "stashfs options:\n"
	       "    -o persistent=1|0      default persistence of new objects (1)\n"
	       "    -o sync=always|never   fsync persistent commits (always)\n"
	       "    -o max_size=BYTES      largest stash, suffixes k, M, G (64M)\n"
	       "    -o json_indent=N       indent of merged JSON documents, 0 = compact (2)\n"
	       "    -o ttl=SECS            default ttl of new objects, 0 = never expire (0)\n"
	       "    -o versions=N          past versions kept per stash (NAME@V), 0 = none (16)\n"
	       "    -o sweep_interval=SECS longest pause of the expiry sweeper (1)\n"
	       "    -o cache_timeout=SECS  kernel entry/attr cache timeout (3600)\n"
	       "    -o uid=N,gid=N         show every object as owned by N (containers whose\n"
	       "                           uids differ from the host's); stored owners stay\n"
	       "    -o umask=M             mask the shown modes with octal M\n"
	       "    -o shared              the backing directory is shared with other daemons:\n"
	       "                           the kernel caches names and attributes for\n"
	       "                           1 second at most (cache_timeout=1)\n"
	       "    -o noauto_unmount      keep the mount if the daemon dies\n"
	       "                           (auto_unmount is the default)\n"
	       "    -o allow_other         needs default_permissions as well\n\n");
	printf("FUSE options:\n");
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s < '0' || *s > '9')
		return -1;
	*out = v;
	return 0;
}

static int parse_id(const char *s, int base, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, base);
	if (errno || end == s || *end || v < 0 || v > 0x7fffffff)
		return -1;
	*out = v;
	return 0;
}

static int apply_options(struct cmdline *c, struct stash_store_options *so,
			 struct stashfs_config *cfg)
{
	char *end;

	stash_store_options_init(so);
	/* Other daemons change a shared backing directory behind our kernel. */
	cfg->cache_timeout = c->shared ? 1.0 : 3600.0;
	so->shared = c->shared;
	if (c->persistent) {
		if (strcmp(c->persistent, "0") && strcmp(c->persistent, "1")) {
			fprintf(stderr, "stashfs: persistent must be 0 or 1\n");
			return -1;
		}
		so->default_persistent = c->persistent[0] == '1';
	}
	if (c->sync) {
		if (strcmp(c->sync, "always") == 0)
			so->sync = STASH_SYNC_ALWAYS;
		else if (strcmp(c->sync, "never") == 0)
			so->sync = STASH_SYNC_NEVER;
		else {
			fprintf(stderr, "stashfs: sync must be always or never\n");
			return -1;
		}
	}
	if (c->max_size && parse_size(c->max_size, &so->max_size) < 0) {
		fprintf(stderr, "stashfs: bad max_size: %s\n", c->max_size);
		return -1;
	}
	if (c->json_indent) {
		long v = strtol(c->json_indent, &end, 10);

		if (*end || end == c->json_indent || v < 0 || v > 16) {
			fprintf(stderr, "stashfs: json_indent must be 0..16\n");
			return -1;
		}
		so->json_indent = (int)v;
	}
	/* Seconds only: the size suffixes (1k = 1024) mean nothing for a time. */
	if (c->ttl && (parse_seconds(c->ttl, &so->default_ttl) < 0 ||
		       so->default_ttl > STASH_TTL_MAX)) {
		fprintf(stderr, "stashfs: ttl must be a whole number of seconds (at most %llu), "
			"got \"%s\"\n", (unsigned long long)STASH_TTL_MAX, c->ttl);
		return -1;
	}
	if (c->versions) {
		unsigned long v = strtoul(c->versions, &end, 10);

		if (*end || end == c->versions || c->versions[0] == '-' || v > STASH_VERSIONS_MAX) {
			fprintf(stderr, "stashfs: versions must be 0..%d (past versions kept per "
				"stash), got \"%s\"\n", STASH_VERSIONS_MAX, c->versions);
			return -1;
		}
		so->versions = (unsigned)v;
	}
	cfg->sweep_interval = 1.0;
	if (c->sweep_interval) {
		double v = strtod(c->sweep_interval, &end);

		if (*end || end == c->sweep_interval || v <= 0) {
			fprintf(stderr, "stashfs: bad sweep_interval: %s\n", c->sweep_interval);
			return -1;
		}
		cfg->sweep_interval = v;
	}
	cfg->uid = cfg->gid = cfg->umask = -1;
	if (c->uid && parse_id(c->uid, 10, &cfg->uid) < 0) {
		fprintf(stderr, "stashfs: bad uid: %s\n", c->uid);
		return -1;
	}
	if (c->gid && parse_id(c->gid, 10, &cfg->gid) < 0) {
		fprintf(stderr, "stashfs: bad gid: %s\n", c->gid);
		return -1;
	}
	if (c->umask && (parse_id(c->umask, 8, &cfg->umask) < 0 || cfg->umask > 0777)) {
		fprintf(stderr, "stashfs: bad umask (octal, at most 777): %s\n", c->umask);
		return -1;
	}
	if (c->cache_timeout) {
		double v = strtod(c->cache_timeout, &end);

		if (*end || end == c->cache_timeout || v < 0) {
			fprintf(stderr, "stashfs: bad cache_timeout: %s\n", c->cache_timeout);
			return -1;
		}
		cfg->cache_timeout = v;
	}
	return 0;
}

static char *default_backing(void)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	char buf[PATH_MAX];

	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/stashfs", xdg);
	else if (home && *home)
		snprintf(buf, sizeof(buf), "%s/.local/share/stashfs", home);
	else
		return NULL;
	/* ~/.local/share may not exist yet on a fresh account. */
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(buf, 0700);
		*s = '/';
	}
	return strdup(buf);
}

static int use_syslog;

/*
 * A client that repeats a refused operation must not flood the log: the
 * first line of each text is written, repeats of it within LOG_WINDOW
 * seconds are only counted, and one line says how many there were when the
 * window is over (written with the next message, or at exit).  Debug
 * traces (-d) pass untouched.
 */
#define LOG_SLOTS 256
#define LOG_WINDOW 10

struct log_slot {
	uint64_t hash;          /* of the text; 0 = free */
	time_t start;           /* when the text was last written */
	unsigned long repeats;  /* lines held back since */
	int level;
	char text[200];         /* its beginning, for the summary line */
};

static struct log_slot log_slots[LOG_SLOTS];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_line(int level, const char *text)
{
	if (use_syslog)
		syslog(level, "%s", text);
	else
		fputs(text, stderr);
}

static void log_summary(struct log_slot *s, time_t now)
{
	const char *text = s->text;
	char line[320];

	if (!s->repeats)
		return;
	if (strncmp(text, "stashfs: ", 9) == 0)
		text += 9;
	snprintf(line, sizeof(line), "stashfs: repeated %lu more times in %lld s: %.*s\n",
		 s->repeats, (long long)(now - s->start), (int)strcspn(text, "\n"), text);
	log_line(s->level, line);
	s->repeats = 0;
}

/* Write the counts of windows that are over (all of them when @all). */
static void log_flush(time_t now, bool all)
{
	for (size_t i = 0; i < LOG_SLOTS; i++) {
		struct log_slot *s = &log_slots[i];

		if (s->hash && (all || now - s->start >= LOG_WINDOW)) {
			log_summary(s, now);
			s->hash = 0;
		}
	}
}

/*
 * Copy @in to @out (of @size bytes) with its control characters written as
 * \xHH, all but a newline that ends it: names come from users, and a name
 * holding a newline must not start a forged line of its own in the log.
 */
static void log_escape(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *)in; *c && o + 5 < size; c++) {
		if ((*c < 0x20 || *c == 0x7f) && !(*c == '\n' && c[1] == '\0'))
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *c);
		else
			out[o++] = (char)*c;
	}
	out[o] = '\0';
}

static void log_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char raw[1024], text[4096];
	uint64_t h = 1469598103934665603ull;
	time_t now = time(NULL);
	struct log_slot *s;
	size_t len;

	if (level >= FUSE_LOG_DEBUG) {
		if (use_syslog)
			vsyslog((int)level, fmt, ap);
		else
			vfprintf(stderr, fmt, ap);
		return;
	}
	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_escape(raw, text, sizeof(text));
	for (const char *c = text; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ull;
	h |= 1;
	pthread_mutex_lock(&log_lock);
	log_flush(now, false);
	s = &log_slots[h % LOG_SLOTS];
	if (s->hash == h) {
		s->repeats++;
	} else {
		log_summary(s, now);    /* another text took the slot */
		s->hash = h;
		s->start = now;
		s->level = (int)level;
		len = strnlen(text, sizeof(s->text) - 1);
		memcpy(s->text, text, len);
		s->text[len] = '\0';
		log_line((int)level, text);
	}
	pthread_mutex_unlock(&log_lock);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts fo = { 0 };
	struct stash_store_options so;
	struct stashfs fs = { 0 };
	struct stash_error err;
	struct cmdline c = { 0 };
	struct fuse_loop_config *lc = NULL;
	char *backing = NULL;
	int ret = 1;

	if (fuse_opt_parse(&args, &c, stashfs_opts, opt_proc) < 0)
		return 1;
	if (c.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (c.show_version) {
		printf("stashfs %s (FUSE library %s)\n", STASHFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!c.mountpoint) {
		fprintf(stderr, "usage: %s [options] [BACKING] MOUNTPOINT (--help for more)\n",
			argv[0]);
		goto out;
	}
	if (c.allow_other && !c.default_permissions) {
		fprintf(stderr, "stashfs: allow_other needs default_permissions too, "
			"or other users would bypass the mode bits\n");
		goto out;
	}
	if (apply_options(&c, &so, &fs.cfg) < 0)
		goto out;
	backing = c.backing ? realpath(c.backing, NULL) : NULL;
	if (c.backing && !backing) {
		/* A backing directory that doesn't exist yet is created by the store. */
		backing = strdup(c.backing);
	}
	if (!backing)
		backing = default_backing();
	if (!backing) {
		fprintf(stderr, "stashfs: no BACKING given and neither XDG_DATA_HOME nor HOME set\n");
		goto out;
	}
	fuse_opt_add_arg(&args, c.mountpoint);
	if (!c.no_auto_unmount)
		fuse_opt_add_arg(&args, "-oauto_unmount");
	fuse_opt_add_arg(&args, "-osubtype=stashfs");
	fuse_opt_add_arg(&args, "-ofsname=stashfs");
	if (fuse_parse_cmdline(&args, &fo) != 0)
		goto out;
	fs.cfg.debug = fo.debug;

	stash_error_clear(&err);
	if (stash_store_open(backing, &so, &fs.store, &err) < 0) {
		fprintf(stderr, "stashfs: %s\n", err.text);
		goto out;
	}
	if (stashfs_nodes_init(&fs) < 0) {
		fprintf(stderr, "stashfs: out of memory\n");
		goto out_store;
	}
	fuse_set_log_func(log_func);
	fs.se = fuse_session_new(&args, stashfs_counted_ops(&stashfs_ops), sizeof(stashfs_ops), &fs);
	if (!fs.se)
		goto out_nodes;
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_session;
	if (fuse_session_mount(fs.se, fo.mountpoint) != 0)
		goto out_signals;
	fs.mountpoint = fo.mountpoint;
	stashfs_mount_learned(&fs);
	if (!fo.foreground) {
		openlog("stashfs", LOG_PID, LOG_DAEMON);
		use_syslog = 1;
	}
	fuse_daemonize(fo.foreground);
	if (stashfs_sweeper_start(&fs) < 0) {
		LOG(FUSE_LOG_ERR, "cannot start the sweeper thread\n");
		goto out_unmount;
	}
	if (stashfs_waits_start(&fs) < 0) {
		LOG(FUSE_LOG_ERR, "cannot start the waits thread\n");
		stashfs_sweeper_stop(&fs);
		goto out_unmount;
	}
	LOG(FUSE_LOG_INFO, "serving %s on %s\n", backing, fo.mountpoint);
	if (fo.singlethread) {
		ret = fuse_session_loop(fs.se);
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, fo.clone_fd);
		/* libfuse leaves max_threads at -1 unless -o max_threads= was given. */
		if (fo.max_threads > 0 && fo.max_threads < 100000)
			fuse_loop_cfg_set_max_threads(lc, fo.max_threads);
		/*
		 * Likewise max_idle_threads is UINT_MAX when not given, and
		 * libfuse logs an error for every value above its limit.
		 */
		if (fo.max_idle_threads <= 100000)
			fuse_loop_cfg_set_idle_threads(lc, fo.max_idle_threads);
		ret = fuse_session_loop_mt(fs.se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* A signal (SIGTERM, SIGINT, SIGHUP) ends the loop with its number: a clean stop. */
	ret = ret < 0 ? 1 : 0;
	/* The sweeper first: its expiries still tell the waits. */
	stashfs_sweeper_stop(&fs);
	stashfs_waits_stop(&fs);
out_unmount:
	fuse_session_unmount(fs.se);
	stash_store_shutdown(fs.store);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_nodes:
	stashfs_nodes_destroy(&fs);
out_store:
	stash_store_close(fs.store);
out:
	pthread_mutex_lock(&log_lock);
	log_flush(time(NULL), true);
	pthread_mutex_unlock(&log_lock);
	free(fo.mountpoint);
	free(backing);
	free(c.backing);
	free(c.mountpoint);
	free(c.persistent);
	free(c.sync);
	free(c.max_size);
	free(c.json_indent);
	free(c.cache_timeout);
	free(c.ttl);
	free(c.versions);
	free(c.sweep_interval);
	free(c.uid);
	free(c.gid);
	free(c.umask);
	fuse_opt_free_args(&args);
	return ret;
}
