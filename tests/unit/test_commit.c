// SPDX-License-Identifier: MIT
/*
 * test_commit.c - the commit engine: a registered hook sees check, then
 * prepare, then published; a rename that fails aborts what was prepared;
 * a check hook's refusal leaves the committed file and its version as
 * they were.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "commit.h"
#include "stashfs/store.h"
#include "store_util.h"

/* What the test hook saw, one letter a phase: c(heck) p(repare) P(ublished) a(borted). */
static char seen[64];
static const char *refuse_path;         /* check refuses this name */
static const char *block_path;          /* prepare puts a directory in this name's way */
static uint64_t seen_version;
static int state_token;

static void saw(char phase)
{
	size_t n = strlen(seen);

	if (n + 1 < sizeof(seen)) {
		seen[n] = phase;
		seen[n + 1] = '\0';
	}
}

static int t_check(struct commit *c)
{
	saw('c');
	if (refuse_path && strcmp(c->path, refuse_path) == 0)
		return stash_error_set(c->err, EPERM, "the test hook refuses %s", c->path);
	return 0;
}

static int t_prepare(struct commit *c, void **state)
{
	saw('p');
	seen_version = c->version;
	*state = &state_token;
	if (block_path && strcmp(c->path, block_path) == 0 && mkdirat(c->dirfd, c->leaf, 0755) < 0)
		return -errno;
	return 0;
}

static void t_published(struct commit *c, void *state)
{
	(void)c;
	saw(state == &state_token ? 'P' : '?');
}

static void t_aborted(struct commit *c, void *state)
{
	(void)c;
	saw(state == &state_token ? 'a' : '?');
}

static const struct commit_hook test_hook = {
	.check = t_check,
	.prepare = t_prepare,
	.published = t_published,
	.aborted = t_aborted,
};

int main(void)
{
	char backing[] = "/tmp/stashfs-commit-XXXXXX", cmd[300], where[300];
	struct stash_store *st = NULL;
	struct stash_error err;
	struct stat sb;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	CHECK(commit_register(st, &test_hook) == 0);

	/* A commit that goes through: check, prepare, published, in that order. */
	seen[0] = '\0';
	CHECK(put(st, "p", "{\"a\":1}", O_TRUNC) == 0);
	CHECK_MSG(strcmp(seen, "cpP") == 0, "phases %s", seen);
	CHECK(seen_version == 1);
	seen[0] = '\0';
	CHECK(put(st, "p", "{\"a\":2}", O_TRUNC) == 0);
	CHECK_MSG(strcmp(seen, "cpP") == 0, "phases %s", seen);
	CHECK(seen_version == 2);
	CHECK(version_of(st, "p") == 2);

	/* A check hook's refusal: the reason comes back, the committed file stays. */
	refuse_path = "p";
	seen[0] = '\0';
	CHECK(put_err(st, "p", "{\"a\":3}", O_TRUNC, &err) == -EPERM);
	CHECK(err.code == EPERM && strstr(err.text, "the test hook refuses p"));
	CHECK_MSG(strcmp(seen, "c") == 0, "phases %s", seen);
	CHECK(reads_as(st, "p", "{\"a\":2}"));
	CHECK(version_of(st, "p") == 2);
	refuse_path = NULL;

	/* The rename fails (a directory took the name): prepared hooks are aborted. */
	block_path = "q";
	seen[0] = '\0';
	CHECK(put(st, "q", "{}", O_TRUNC) < 0);
	CHECK_MSG(strcmp(seen, "cpa") == 0, "phases %s", seen);
	snprintf(where, sizeof(where), "%s/q", backing);
	CHECK(stat(where, &sb) == 0 && S_ISDIR(sb.st_mode));
	CHECK(rmdir(where) == 0);
	block_path = NULL;

	/* Nothing refuses any more: the next commit counts on from the last. */
	seen[0] = '\0';
	CHECK(put(st, "p", "{\"a\":4}", O_TRUNC) == 0);
	CHECK_MSG(strcmp(seen, "cpP") == 0, "phases %s", seen);
	CHECK(reads_as(st, "p", "{\"a\":4}"));
	CHECK(version_of(st, "p") == 3);

	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
