// SPDX-License-Identifier: MIT
/*
 * guide.c - the agent's guide, read at the mount root as .stashfs-guide.
 *
 * The text is core/guide.md, the same file the repository offers, built
 * into the daemon (embed.py makes a C string of it); the test suite runs
 * every command in it.  A mount only fills in the marked part with its own
 * settings as they are when the guide is opened: default persistence and
 * ttl of the root, the size limit, versions kept, sharing, the schemas
 * stored.  Everything else is the file, byte for byte.
 *
 * What this file does not do: serve reads (the metadata view's open file
 * does, from the rendered text) or list the name (it is found by name only).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guide.h"
#include "backing.h"
#include "defaults.h"
#include "versions.h"

extern const char stash_guide_text[];
extern const size_t stash_guide_text_len;

bool guide_path(const char *path)
{
	return strcmp(path, GUIDE_NAME) == 0;
}

/* The root's own default @name, else @dflt (what new objects at the top get). */
static long long root_default(struct stash_store *st, const char *name, long long dflt)
{
	char buf[64];
	ssize_t n = store_nearest_default(st, "", name, buf, sizeof(buf) - 1);

	if (n <= 0)
		return dflt;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The schemas stored at the top of schemas/, sorted, as "`a`, `b`" (or "none yet"). */
static void put_schemas(struct stash_store *st, FILE *out)
{
	int fd = store_open_beneath(st, STASH_SCHEMAS_DIR, O_RDONLY | O_DIRECTORY, 0);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;

	if (!dir && fd >= 0)
		close(fd);
	while (dir && (e = readdir(dir))) {
		struct stat sb;

		/* Dot-names are the store's own or temporary; @V names are versions. */
		if (e->d_name[0] == '.' || strchr(e->d_name, '@') ||
		    fstatat(dirfd(dir), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (n == cap) {
			char **more = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*names));

			if (!more)
				break;
			names = more;
		}
		if (!(names[n] = strdup(e->d_name)))
			break;
		n++;
	}
	if (dir)
		closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);   /* qsort(NULL, 0) is undefined */
	else
		fputs("none yet", out);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "%s`%s`", i ? ", " : "", names[i]);
		free(names[i]);
	}
	free(names);
}

/* This mount's settings, as the lines between the markers. */
static void put_settings(struct stash_store *st, FILE *out)
{
	long long persistent = root_default(st, XATTR_PERSISTENT, st->opts.default_persistent);
	long long ttl = root_default(st, XATTR_TTL, (long long)st->opts.default_ttl);
	long long versions = root_default(st, XATTR_VERSIONS, st->opts.versions);

	fprintf(out, "- New stashes made at the top are %s (`user.stash.persistent` %lld).\n",
		persistent ? "persistent: they survive restarts" :
		"ephemeral: they go when this mount's daemon stops", persistent ? 1LL : 0LL);
	if (ttl > 0)
		fprintf(out, "- Default ttl at the top: %lld seconds after the last change "
			"(`user.stash.ttl` %lld).\n", ttl, ttl);
	else
		fputs("- Default ttl at the top: none, nothing expires unless given a ttl "
		      "(`user.stash.ttl` 0).\n", out);
	if (st->opts.max_size)
		fprintf(out, "- Largest stash: %" PRIu64 " bytes; a bigger write is refused "
			"with `File too large`.\n", st->opts.max_size);
	else
		fputs("- Largest stash: no limit but the disk's.\n", out);
	fprintf(out, "- Past versions kept per stash: %lld (`user.stash.versions`).\n", versions);
	fprintf(out, "- Other daemons share this store: %s.\n",
		st->opts.shared ? "yes (`-o shared`): their commits wake waits within a second" :
		"no");
	fputs("- Schemas stored: ", out);
	put_schemas(st, out);
	fputs(".\n", out);
}

char *guide_render(struct stash_store *st, size_t *len, int *err)
{
	const char *text = stash_guide_text, *begin, *end;
	char *buf = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&buf, &size);

	if (!out) {
		*err = -ENOMEM;
		return NULL;
	}
	begin = strstr(text, GUIDE_BEGIN);
	end = begin ? strstr(begin, GUIDE_END) : NULL;
	if (end) {
		begin += strlen(GUIDE_BEGIN);
		fwrite(text, 1, (size_t)(begin - text), out);
		put_settings(st, out);
		fwrite(end, 1, stash_guide_text_len - (size_t)(end - text), out);
	} else {
		fwrite(text, 1, stash_guide_text_len, out);
	}
	if (fclose(out) != 0) {
		free(buf);
		*err = -ENOMEM;
		return NULL;
	}
	*len = size;
	*err = 0;
	return buf;
}
