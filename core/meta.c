// SPDX-License-Identifier: MIT
/*
 * meta.c - the metadata view, for tools without xattr support.
 *
 * MOUNT/.stashfs-meta/ mirrors the store.  For a stash or stream at PATH,
 * .stashfs-meta/PATH is a JSON document of all its metadata; a directory
 * is a directory there, and its own metadata is in
 * .stashfs-meta/PATH/.stashfs-dir (.stashfs-meta/.stashfs-dir for the root).
 * Writing a document takes a merge patch: "persistent", "ttl", "schema",
 * "linked_stash" and the plain attributes under "xattrs" can be set, null
 * removes; read-only fields may be sent back unchanged (so a document read,
 * edited and written back works), changing them is refused.  Every change
 * goes through the same checks as setfattr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "stashfs/json.h"
#include "defaults.h"
#include "lifecycle.h"
#include "file.h"
#include "meta.h"
#include "pending.h"
#include "guide.h"
#include "store_priv.h"
#include "versions.h"

#define META_DIR_FILE ".stashfs-dir"

int meta_target(const char *path, char *out, size_t size, bool *dir_file)
{
	const char *rest = path + strlen(STASH_META_DIR);
	const char *leaf;
	size_t n;

	if (*rest == '/')
		rest++;
	leaf = strrchr(rest, '/');
	leaf = leaf ? leaf + 1 : rest;
	*dir_file = strcmp(leaf, META_DIR_FILE) == 0;
	n = *dir_file ? (size_t)(leaf - rest) : strlen(rest);
	if (n && rest[n - 1] == '/')
		n--;
	if (n >= size)
		return -ENAMETOOLONG;
	memcpy(out, rest, n);
	out[n] = '\0';
	return 0;
}

/* Set @key of @doc from xattr @name of @fd (a string, or a number if @num). */
static void put_xattr(json_t *doc, const char *key, int fd, const char *name, bool num)
{
	char buf[STASH_XATTR_MAX + 1];
	ssize_t n = fgetxattr(fd, name, buf, sizeof(buf) - 1);

	if (n < 0) {
		json_object_set_new(doc, key, json_null());
		return;
	}
	buf[n] = '\0';
	json_object_set_new(doc, key, num ? json_integer(strtoll(buf, NULL, 10)) :
			    json_stringn(buf, (size_t)n));
}

/* The metadata document of @target (an open @fd, stat @sb). */
static json_t *meta_doc(struct stash_store *st, const char *target, int fd,
			const struct stat *sb)
{
	json_t *doc = json_object(), *plain = json_object();
	bool stream = stash_store_classify(target) == STASH_KIND_STREAM;
	char list[8192], buf[STASH_XATTR_MAX + 1];
	ssize_t n;
	int r;

	json_object_set_new(doc, "path", json_string(target));
	json_object_set_new(doc, "kind", json_string(S_ISDIR(sb->st_mode) ? "directory" :
						       stream ? "stream" : "stash"));
	if (!S_ISDIR(sb->st_mode)) {
		json_object_set_new(doc, "size", json_integer(sb->st_size));
		json_object_set_new(doc, "version", json_integer((json_int_t)backing_read_version(fd)));
		r = life_virtual_xattr(fd, sb, XATTR_SHA256, buf, sizeof(buf) - 1);
		json_object_set_new(doc, "sha256", r > 0 ? json_stringn(buf, (size_t)r) : json_null());
	}
	/* Effective values, as getfattr -n gives them. */
	n = fgetxattr(fd, XATTR_PERSISTENT, buf, sizeof(buf));
	if (n < 0)
		n = store_effective_xattr(st, target, sb, XATTR_PERSISTENT, buf, sizeof(buf));
	json_object_set_new(doc, "persistent", json_integer(n == 1 && buf[0] == '0' ? 0 : 1));
	put_xattr(doc, "ttl", fd, XATTR_TTL, true);
	if (json_is_null(json_object_get(doc, "ttl")) &&
	    store_effective_xattr(st, target, sb, XATTR_TTL, buf, sizeof(buf)) > 0)
		json_object_set_new(doc, "ttl", json_integer(strtoll(buf, NULL, 10)));
	if (!S_ISDIR(sb->st_mode)) {
		r = life_virtual_xattr(fd, sb, XATTR_EXPIRES, buf, sizeof(buf) - 1);
		json_object_set_new(doc, "expires", r > 0 ? json_stringn(buf, (size_t)r) : json_null());
	}
	if (!stream)
		put_xattr(doc, "schema", fd, XATTR_SCHEMA, false);
	if (stream) {
		put_xattr(doc, "linked_stash", fd, XATTR_LINKED, false);
		put_xattr(doc, "seq", fd, XATTR_SEQ, true);
	}
	if (!S_ISDIR(sb->st_mode))
		put_xattr(doc, "error", fd, XATTR_ERROR, false);
	if (!stream) {
		json_object_set_new(doc, "versions",
				    json_integer(versions_retention(st, target, fd)));
		if (!S_ISDIR(sb->st_mode))
			json_object_set_new(doc, "history", versions_list(st, target));
	}
	n = flistxattr(fd, list, sizeof(list));
	for (char *name = list; n > 0 && name < list + n; name += strlen(name) + 1) {
		ssize_t v;

		if (strncmp(name, "user.", 5) != 0 || strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
			continue;
		v = fgetxattr(fd, name, buf, sizeof(buf) - 1);
		if (v >= 0)
			json_object_set_new(plain, name, json_stringn(buf, (size_t)v));
	}
	json_object_set_new(doc, "xattrs", plain);
	return doc;
}

static int open_target(struct stash_store *st, const char *target, struct stat *sb)
{
	int fd = store_open_object(st, target, O_RDONLY | O_NONBLOCK, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, sb) < 0 || (!S_ISREG(sb->st_mode) && !S_ISDIR(sb->st_mode)) ||
	    life_check(st, fd, sb, NULL) < 0) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

char *meta_render(struct stash_store *st, const char *target, size_t *len, int *err)
{
	struct stat sb;
	json_t *doc;
	char *text;
	int fd = open_target(st, target, &sb);

	if (fd == -ENOENT) {
		/*
		 * A removed stash whose versions are kept: its document says so and
		 * lists them, so that an rm can be undone without knowing the number.
		 */
		json_t *hist = versions_list(st, target);

		if (!hist || json_array_size(hist) == 0) {
			json_decref(hist);
			*err = -ENOENT;
			return NULL;
		}
		doc = json_pack("{s:s, s:s, s:o}", "path", target, "kind", "removed",
				"history", hist);
	} else if (fd < 0) {
		*err = fd;
		return NULL;
	} else {
		doc = meta_doc(st, target, fd, &sb);
		close(fd);
	}
	text = doc ? stash_json_dump(doc, 2, len) : NULL;
	json_decref(doc);
	*err = text ? 0 : -ENOMEM;
	return text;
}

int meta_stat(struct stash_store *st, const char *path, struct stat *out)
{
	char target[PATH_MAX];
	bool dir_file;
	size_t len;
	char *text;
	int fd, r;

	if (guide_path(path)) {
		/* Read-only, the root's owner and times; its size is the text's now. */
		text = guide_render(st, &len, &r);
		free(text);
		if (r < 0)
			return r;
		if (fstat(st->root_fd, out) < 0)
			return -errno;
		out->st_mode = S_IFREG | 0444;
		out->st_nlink = 1;
		out->st_size = (off_t)len;
		out->st_blocks = ((off_t)len + 511) / 512;
		return 0;
	}
	r = meta_target(path, target, sizeof(target), &dir_file);
	if (r < 0)
		return r;
	fd = open_target(st, target, out);
	if (fd == -ENOENT && !dir_file) {
		text = meta_render(st, target, &len, &r);
		free(text);
		if (r < 0)
			return r;
		/* The document of a removed stash: read-only, owned by the daemon. */
		memset(out, 0, sizeof(*out));
		out->st_mode = S_IFREG | 0444;
		out->st_nlink = 1;
		out->st_uid = geteuid();
		out->st_gid = getegid();
		out->st_size = (off_t)len;
		return 0;
	}
	if (fd < 0)
		return fd;
	close(fd);
	if (S_ISDIR(out->st_mode) && !dir_file)
		return 0;       /* a directory of the view */
	if (!S_ISDIR(out->st_mode) && dir_file)
		return -ENOTDIR;
	text = meta_render(st, target, &len, &r);
	free(text);
	if (r < 0)
		return r;
	/* A sticky directory's own attributes are its owner's to change, as with setxattr(2). */
	if (dir_file && (out->st_mode & S_ISVTX))
		out->st_mode &= ~(mode_t)(S_IWGRP | S_IWOTH);
	out->st_mode = S_IFREG | (out->st_mode & 0666);
	out->st_nlink = 1;
	out->st_size = (off_t)len;
	return 0;
}

static int set_one(struct stash_store *st, const char *target, const char *name, json_t *v,
		   const struct stash_caller *who, struct stash_error *err)
{
	char buf[64];
	const char *text;
	size_t len;

	if (json_is_null(v)) {
		int r = stash_store_removexattr(st, target, name);

		return r == -ENODATA ? 0 : r;
	}
	if (json_is_integer(v)) {
		len = (size_t)snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		text = buf;
	} else if (json_is_boolean(v)) {
		text = json_is_true(v) ? "1" : "0";
		len = 1;
	} else if (json_is_string(v)) {
		text = json_string_value(v);
		len = json_string_length(v);
	} else {
		return stash_error_set(err, EINVAL, "%s: give a string, a number or null", name);
	}
	return stash_store_setxattr(st, target, name, text, len, 0, who, err);
}

int meta_apply(struct stash_store *st, const char *target, const char *text, size_t len,
	       const struct stash_caller *who, struct stash_error *err)
{
	static const struct { const char *key, *xattr; } settable[] = {
		{ "persistent", XATTR_PERSISTENT }, { "ttl", XATTR_TTL },
		{ "schema", XATTR_SCHEMA }, { "linked_stash", XATTR_LINKED },
		{ "versions", XATTR_VERSIONS },
	};
	json_t *patch = stash_json_parse(text, len, err), *cur = NULL, *v;
	const char *key;
	struct stat sb;
	char *now;
	size_t nlen;
	int r = 0, fd;

	if (!patch)
		return -EINVAL;
	if (!json_is_object(patch)) {
		r = stash_error_set(err, EINVAL, "metadata: the patch must be one JSON object");
		goto out;
	}
	fd = open_target(st, target, &sb);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	cur = meta_doc(st, target, fd, &sb);
	close(fd);
	/* Check every key before changing anything. */
	json_object_foreach(patch, key, v) {
		bool ok = strcmp(key, "xattrs") == 0 ? json_is_object(v) || json_is_null(v) : false;

		for (size_t i = 0; i < sizeof(settable) / sizeof(settable[0]); i++)
			ok = ok || strcmp(key, settable[i].key) == 0;
		if (ok)
			continue;
		if (json_object_get(cur, key) && json_equal(json_object_get(cur, key), v))
			continue;       /* a read-only field sent back unchanged */
		r = json_object_get(cur, key) ?
			stash_error_set(err, EPERM, "metadata: %s is read-only", key) :
			stash_error_set(err, EINVAL, "metadata: unknown field \"%s\"", key);
		goto out;
	}
	for (size_t i = 0; r == 0 && i < sizeof(settable) / sizeof(settable[0]); i++) {
		v = json_object_get(patch, settable[i].key);
		if (v && !json_equal(v, json_object_get(cur, settable[i].key)))
			r = set_one(st, target, settable[i].xattr, v, who, err);
	}
	json_object_foreach(json_object_get(patch, "xattrs"), key, v) {
		if (r < 0)
			break;
		if (strncmp(key, "user.", 5) != 0 || strncmp(key, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
			r = stash_error_set(err, EINVAL,
				"metadata: xattrs holds plain user.* attributes, not %s", key);
		else
			r = set_one(st, target, key, v, who, err);
	}
	now = r == 0 ? meta_render(st, target, &nlen, &r) : NULL;
	free(now);
out:
	json_decref(cur);
	json_decref(patch);
	return r;
}

/* Open a document of the metadata view: the handle holds it as rendered now. */
static int meta_file_open(struct stash_file *f, const char *path, int flags, mode_t mode,
			  const struct stash_caller *who, struct stash_error *err)
{
	char target[PATH_MAX];
	struct stat sb;
	bool dir_file, guide = guide_path(path);
	int r = guide ? 0 : meta_target(path, target, sizeof(target), &dir_file);

	(void)mode;
	(void)err;
	/* The guide is only read. */
	if (guide && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EACCES;
	if (r == 0)
		r = meta_stat(f->st, path, &sb);
	if (r == 0 && S_ISDIR(sb.st_mode))
		r = -EISDIR;
	if (r < 0)
		return r == -ENOENT && (flags & O_CREAT) ? -EPERM : r;
	f->kind = STASH_KIND_META;
	if (who)
		f->meta_who = *who;
	else
		f->meta_who.uid = 0;    /* the daemon's own: no check */
	free(f->path);
	f->path = strdup(guide ? "" : target);
	if (!f->path)
		return -ENOMEM;
	f->meta = guide ? guide_render(f->st, &f->meta_len, &r) :
		meta_render(f->st, target, &f->meta_len, &r);
	return f->meta ? 0 : r < 0 ? r : -ENOMEM;
}

/* Apply a complete metadata patch at once, so errors reach write(). */
/* A metadata patch, applied as soon as it is a complete document. */
static ssize_t meta_file_write(struct stash_file *f, const void *buf, size_t size, off_t off,
			       struct stash_error *err)
{
	int r;

	(void)off;
	r = pending_pwrite(f->st, &f->p, buf, size, (off_t)f->p.len);

	if (r == 0 && f->p.fd < 0) {
		r = stash_json_progress(f->p.mem, f->p.len, err);
		if (r > 0)
			r = meta_apply(f->st, f->path, f->p.mem, f->p.len, &f->meta_who, err);
		if (r == 0 && stash_json_progress(f->p.mem, f->p.len, NULL) > 0)
			pending_reset(f->st, &f->p);    /* applied */
	} else if (r == 0) {
		r = stash_error_set(err, EFBIG, "metadata patch too large");
	}
	return r;
}

const struct file_kind meta_file_kind = {
	.open = meta_file_open,
	.write = meta_file_write,
};
