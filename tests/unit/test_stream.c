// SPDX-License-Identifier: MIT
/*
 * test_stream.c - the audit journal of a dead instance, replayed when the
 * next one opens the store: a change that committed is appended to its
 * linked streams once, one that did not is in none, a torn journal is
 * dropped; and an rm is recorded like any other change.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "backing.h"
#include "store_util.h"

static char backing[256];

static off_t file_size(const char *name, ino_t *ino)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", backing, name);
	if (stat(path, &sb) < 0)
		return -1;
	if (ino)
		*ino = sb.st_ino;
	return sb.st_size;
}

/* Create @path empty: open(O_CREAT) and close, as touch does. */
static int create(struct stash_store *st, const char *path)
{
	struct stash_file *f;
	struct stash_error err;
	int r = stash_file_open(st, path, O_WRONLY | O_CREAT, 0644, &who, &f, &err);

	if (r < 0)
		return r;
	r = stash_file_commit(f, STASH_COMMIT_LAST, &who, &err);
	stash_file_close(f);
	return r;
}

static struct stash_store *open_store(void)
{
	struct stash_store *st = NULL;
	struct stash_error err;

	if (stash_store_open(backing, NULL, &st, &err) < 0)
		fprintf(stderr, "open: %s\n", err.text);
	return st;
}

/* Lines of the backing file @name, and the last one in @last. */
static int count_lines(const char *name, char *last, size_t size)
{
	char path[512], line[4096];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", backing, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (last)
			snprintf(last, size, "%s", line);
	}
	fclose(f);
	return n;
}

/*
 * Leave journal @text in the temp directory of instance @inst, as an
 * instance that died between writing it and finishing would: no lock held.
 */
static void plant_journal(const char *inst, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/.stashfs/tmp/%s", backing, inst);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.stashfs/tmp/%s.lock", backing, inst);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	snprintf(path, sizeof(path), "%s/.stashfs/tmp/%s/j0", backing, inst);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void journal_for(char *out, size_t size, uint64_t version, ino_t ino, off_t from)
{
	snprintf(out, size,
		 "{\"stash\":\"p\",\"record\":{\"time\":\"2026-01-31T12:00:00.000Z\",\"stash\":\"p\","
		 "\"op\":\"put\",\"version\":%" PRIu64 ",\"data\":\"replayed\",\"uid\":0,\"pid\":1,"
		 "\"comm\":\"test\"},\"streams\":[{\"path\":\"streams/log\",\"from\":%jd}],"
		 "\"ino\":%ju}", version, (intmax_t)from, (uintmax_t)ino);
}

static void test_journal_replay(void)
{
	struct stash_store *st = open_store();
	struct stash_error err;
	char journal[1024], last[4096], path[512], v[32];
	ino_t ino;
	off_t from;
	uint64_t version;

	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(put(st, "p", "{\"a\":1}", O_TRUNC) == 0);
	CHECK(create(st, "streams/log") == 0);
	CHECK(file_size("streams/log", NULL) == 0);
	CHECK(stash_store_setxattr(st, "streams/log", "user.stash.linked_stash", "p", 1, 0, &who,
				   &err) == 0);
	CHECK(put(st, "p", "{\"a\":2}", O_TRUNC) == 0);
	CHECK(count_lines("streams/log", NULL, 0) == 1);
	stash_store_close(st);

	snprintf(path, sizeof(path), "%s/p", backing);
	CHECK(getxattr(path, "user.stash.version", v, sizeof(v)) > 0);
	version = strtoull(v, NULL, 10);
	from = file_size("streams/log", NULL);
	file_size("p", &ino);

	/* Committed: the stash holds the very file (inode, version) the journal names. */
	journal_for(journal, sizeof(journal), version, ino, from);
	plant_journal("dead-committed", journal);
	st = open_store();
	CHECK(count_lines("streams/log", last, sizeof(last)) == 2);
	CHECK_MSG(strstr(last, "\"replayed\"") != NULL, "%s", last);
	stash_store_close(st);
	/* Replayed once: the journal went with the dead instance's directory. */
	snprintf(path, sizeof(path), "%s/.stashfs/tmp/dead-committed", backing);
	CHECK(access(path, F_OK) < 0);
	st = open_store();
	CHECK(count_lines("streams/log", NULL, 0) == 2);
	stash_store_close(st);

	/* Not committed: the next version never landed (another file, no such version). */
	from = file_size("streams/log", NULL);
	journal_for(journal, sizeof(journal), version + 1, ino + 1000000, from);
	plant_journal("dead-uncommitted", journal);
	st = open_store();
	CHECK(count_lines("streams/log", NULL, 0) == 2);
	stash_store_close(st);

	/* Torn: the instance died while writing the journal itself. */
	journal_for(journal, sizeof(journal), version, ino, from);
	journal[strlen(journal) / 2] = '\0';
	plant_journal("dead-torn", journal);
	st = open_store();
	CHECK(st != NULL);
	CHECK(count_lines("streams/log", NULL, 0) == 2);
	snprintf(path, sizeof(path), "%s/.stashfs/tmp/dead-torn", backing);
	CHECK(access(path, F_OK) < 0);
	stash_store_close(st);
}

/* An rm goes through the commit path too: its record is in the linked stream. */
static void test_delete_is_recorded(void)
{
	struct stash_store *st = open_store();
	struct stash_error err;
	char last[4096];
	int before = count_lines("streams/log", NULL, 0);

	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(stash_store_unlink(st, "p", &who, &err) == 0);
	CHECK(count_lines("streams/log", last, sizeof(last)) == before + 1);
	CHECK_MSG(strstr(last, "\"op\":\"delete\"") != NULL, "%s", last);
	CHECK(stash_store_unlink(st, "p", &who, &err) == -ENOENT);
	CHECK(count_lines("streams/log", NULL, 0) == before + 1);
	stash_store_close(st);
}

int main(void)
{
	char cmd[300];

	snprintf(backing, sizeof(backing), "/tmp/stashfs-stream-XXXXXX");
	if (!mkdtemp(backing))
		return 1;
	test_journal_replay();
	test_delete_is_recorded();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
