// SPDX-License-Identifier: MIT
/*
 * test_dir.c - directory listings: stashes and directories only; no views
 * (NAME.json), no past versions (NAME@V), no .stashfs* names, no symlinks
 * or fifos planted in the backing directory; a listing resumes at the
 * offset it gave, and is a snapshot of the directory at open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "store_util.h"

static struct stash_store *st;

/* The names of @path from offset @from, sorted, comma-separated ("!" when it can't open). */
static const char *listing(const char *path, off_t from)
{
	static char out[1024];
	const char *names[64], *name;
	struct stash_dir *d;
	unsigned char type;
	size_t n = 0;
	ino_t ino;
	off_t off = from, next;

	out[0] = '\0';
	if (stash_dir_open(st, path, &d) < 0)
		return "!";
	while (n < 64 && stash_dir_next(d, off, &name, &type, &ino, &next) == 0) {
		names[n++] = name;
		off = next;
	}
	for (size_t i = 1; i < n; i++)          /* insertion sort: a few names */
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			const char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, names[i]);
	}
	stash_dir_close(d);
	return out;
}

static int lists_as(const char *path, const char *want)
{
	const char *got = listing(path, 0);

	if (strcmp(got, want) != 0) {
		fprintf(stderr, "%s lists as \"%s\", not \"%s\"\n", path, got, want);
		return 0;
	}
	return 1;
}

int main(void)
{
	char backing[] = "/tmp/stashfs-dir-XXXXXX", cmd[300], p[400];
	struct stash_error err;
	struct stash_dir *d;
	const char *name;
	unsigned char type;
	ino_t ino;
	off_t next, second;
	int n;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	/* The store's own directories schemas/ and streams/ are there from the start. */
	CHECK(lists_as("", "schemas,streams"));
	/* Stashes with versions, a merge through a view, a directory. */
	CHECK(put(st, "a", "{\"v\":1}", O_TRUNC) == 0);
	CHECK(put(st, "a", "{\"v\":2}", O_TRUNC) == 0);
	CHECK(put(st, "b.json", "{\"k\":1}", O_TRUNC) == 0);
	CHECK(stash_store_mkdir(st, "sub", 0755, &who) == 0);
	CHECK(put(st, "sub/c", "x", O_TRUNC) == 0);
	CHECK(put(st, "sub/c", "y", O_TRUNC) == 0);
	CHECK(reads_as(st, "a@1", "{\"v\":1}"));    /* the version is there, just not listed */
	CHECK(lists_as("", "a,b,schemas,streams,sub"));
	CHECK(lists_as("sub", "c"));
	/* Planted behind the store: internal-looking names, a symlink, a fifo. */
	snprintf(p, sizeof(p), "%s/.stashfs-planted", backing);
	CHECK(close(open(p, O_WRONLY | O_CREAT, 0644)) == 0);
	snprintf(p, sizeof(p), "%s/link", backing);
	CHECK(symlink("a", p) == 0);
	snprintf(p, sizeof(p), "%s/sub/fifo", backing);
	CHECK(mkfifo(p, 0644) == 0);
	CHECK(lists_as("", "a,b,schemas,streams,sub"));
	CHECK(lists_as("sub", "c"));
	/* Types: stashes are files, directories directories. */
	CHECK(stash_dir_open(st, "sub", &d) == 0);
	CHECK(stash_dir_next(d, 0, &name, &type, &ino, &next) == 0);
	CHECK(strcmp(name, "c") == 0 && type == DT_REG && ino != 0);
	CHECK(stash_dir_next(d, next, &name, &type, &ino, &next) == 1);
	stash_dir_close(d);
	/* Resuming at an offset gives what comes after; a snapshot ignores later changes. */
	CHECK(stash_dir_open(st, "", &d) == 0);
	CHECK(stash_dir_next(d, 0, &name, &type, &ino, &second) == 0);
	CHECK(put(st, "later", "{}", O_TRUNC) == 0);
	n = 0;
	for (off_t off = second; stash_dir_next(d, off, &name, &type, &ino, &next) == 0; off = next)
		n++;
	CHECK(n == 4);      /* a, b, schemas, streams, sub: not later */
	stash_dir_close(d);
	CHECK(lists_as("", "a,b,later,schemas,streams,sub"));
	/* What is no directory does not list. */
	CHECK(stash_dir_open(st, "a", &d) < 0);
	CHECK(stash_dir_open(st, "missing", &d) == -ENOENT);
	CHECK(stash_dir_open(st, "a.json", &d) < 0);
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
