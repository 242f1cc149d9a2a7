// SPDX-License-Identifier: MIT
/*
 * access.c - who may read what: the mode-bit judgement behind links and
 * bindings.
 *
 * The kernel checks permissions on the file a process opens
 * (default_permissions), but a link or a binding names *another* object:
 * a stream linked to a stash would show that stash's changes to whoever
 * reads the stream, a binding would reveal a schema through the refusals
 * it causes.  So core judges those names itself, as the kernel would judge
 * an open for reading by the same caller: search permission on every
 * directory from the store's root down, read permission on the object.
 *
 * Judged on the owners and modes stored in the backing directory (the
 * uid=, gid= and umask= mount options only change what is shown).  Nothing
 * here holds a lock: a mode can change right after the judgement, which is
 * why streams judge again at every record (access_open_to).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "store_priv.h"

/* The permission bits of @sb that apply to @who (owner, group or others). */
static mode_t bits_for(const struct stat *sb, const struct stash_caller *who)
{
	if (sb->st_uid == who->uid)
		return (sb->st_mode >> 6) & 7;
	if (sb->st_gid == who->gid)
		return (sb->st_mode >> 3) & 7;
	for (int i = 0; i < who->ngroups && i < STASH_CALLER_GROUPS; i++) {
		if (sb->st_gid == who->groups[i])
			return (sb->st_mode >> 3) & 7;
	}
	return sb->st_mode & 7;
}

/*
 * Call @fn on every directory above @path (the root first) and then on
 * @path itself, with its stat and its name; stop at the first nonzero
 * answer and return it.  A component that does not exist ends the walk
 * with 0: nothing below it can be read by anyone yet.
 */
static int walk(struct stash_store *st, const char *path,
		int (*fn)(const struct stat *sb, const char *name, bool last, void *ctx), void *ctx)
{
	char prefix[PATH_MAX];
	struct stat sb;
	size_t len = strlen(path);
	int r;

	if (len >= sizeof(prefix))
		return -ENAMETOOLONG;
	if (fstat(st->root_fd, &sb) < 0)
		return -errno;
	r = fn(&sb, "/", len == 0, ctx);
	for (size_t i = 0; r == 0 && i < len; i++) {
		int fd;

		if (path[i + 1] != '/' && path[i + 1] != '\0')
			continue;
		memcpy(prefix, path, i + 1);
		prefix[i + 1] = '\0';
		fd = store_open_beneath(st, prefix, O_PATH, 0);
		if (fd < 0)
			return 0;
		r = fstat(fd, &sb) < 0 ? -errno : fn(&sb, prefix, path[i + 1] == '\0', ctx);
		close(fd);
	}
	return r;
}

struct reader {
	const struct stash_caller *who;
	char name[PATH_MAX];    /* where the walk stopped */
	bool search;            /* stopped for want of search permission */
};

static int caller_step(const struct stat *sb, const char *name, bool last, void *ctx)
{
	struct reader *rd = ctx;
	bool dir = S_ISDIR(sb->st_mode);
	mode_t want = last && !dir ? 4 : 1;

	/* A directory named last is searched into, as an open of it reads. */
	if (last && dir)
		want = 4 | 1;
	if ((bits_for(sb, rd->who) & want) == want)
		return 0;
	snprintf(rd->name, sizeof(rd->name), "%s", name);
	rd->search = !last;
	return -EACCES;
}

int access_may_read(struct stash_store *st, const char *path, const struct stash_caller *who,
		    struct stash_error *err)
{
	struct reader rd = { .who = who };
	int r;

	if (!who || who->uid == 0)
		return 0;       /* the daemon itself, or root (CAP_DAC_OVERRIDE) */
	r = walk(st, path, caller_step, &rd);
	if (r != -EACCES)
		return r;
	if (rd.search)
		return stash_error_set(err, EACCES,
			"uid %u may not read %s: no search permission on directory %s",
			(unsigned)who->uid, path, rd.name);
	return stash_error_set(err, EACCES, "uid %u may not read %s: no read permission on it",
			       (unsigned)who->uid, path);
}

/*
 * Can every user of one class of the stream's readers pass @sb for @want
 * (4 read, 1 search)?  Their supplementary groups are unknown, so each
 * class must pass every set of bits that could apply to one of them.
 */
enum reader_class { READER_OWNER, READER_GROUP, READER_OTHER };

struct audience {
	const struct stat *stream;
	bool group, other;      /* which classes besides the owner read the stream */
};

static bool class_passes(const struct stat *sb, const struct stat *stream,
			 enum reader_class cls, mode_t want)
{
	mode_t u = (sb->st_mode >> 6) & want, g = (sb->st_mode >> 3) & want, o = sb->st_mode & want;

	switch (cls) {
	case READER_OWNER:
		if (stream->st_uid == 0)
			return true;
		if (sb->st_uid == stream->st_uid)
			return u == want;
		return g == want && o == want;
	case READER_GROUP:
		/* A member may own the object, share its group, or neither. */
		if (sb->st_gid == stream->st_gid)
			return u == want && g == want;
		return u == want && g == want && o == want;
	default:
		return u == want && g == want && o == want;
	}
}

static int audience_step(const struct stat *sb, const char *name, bool last, void *ctx)
{
	const struct audience *a = ctx;
	mode_t want = last && !S_ISDIR(sb->st_mode) ? 4 : 1;

	(void)name;
	if (!class_passes(sb, a->stream, READER_OWNER, want) ||
	    (a->group && !class_passes(sb, a->stream, READER_GROUP, want)) ||
	    (a->other && !class_passes(sb, a->stream, READER_OTHER, want)))
		return -EACCES;
	return 0;
}

bool access_open_to(struct stash_store *st, const struct stat *stream, const char *path)
{
	/* The owner counts even without a read bit: a chmod away. */
	struct audience a = { .stream = stream, .group = (stream->st_mode & 0040) != 0,
			      .other = (stream->st_mode & 0004) != 0 };

	return walk(st, path, audience_step, &a) == 0;
}
