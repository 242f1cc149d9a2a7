// SPDX-License-Identifier: MIT
/*
 * test_guide.c - the agent's guide of a mount: core/guide.md byte for byte,
 * but for the marked settings block, which says this store's settings as
 * they are when it is rendered (ttl, persistence, versions, size limit,
 * schemas stored).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "guide.h"
#include "stashfs/store.h"
#include "store_util.h"

static struct stash_store *st;
static char *source;            /* core/guide.md */
static size_t source_len;

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/*
 * Render the guide; check that all but the settings block is the source's
 * bytes.  Returns the settings block (static), or "" when that failed.
 */
static const char *settings(void)
{
	static char block[4096];
	const char *sb = strstr(source, GUIDE_BEGIN), *se = strstr(source, GUIDE_END);
	size_t len = 0, head, tail;
	int err = 0;
	char *text = guide_render(st, &len, &err);

	block[0] = '\0';
	CHECK(text && sb && se && se > sb);
	if (!text || !sb || !se)
		goto out;
	head = (size_t)(sb - source) + strlen(GUIDE_BEGIN);
	tail = source_len - (size_t)(se - source);
	CHECK(len == strlen(text));
	CHECK(len >= head + tail);
	if (len < head + tail)
		goto out;
	CHECK_MSG(memcmp(text, source, head) == 0, "the text before the settings changed");
	CHECK_MSG(memcmp(text + len - tail, se, tail) == 0, "the text after the settings changed");
	if (len - head - tail < sizeof(block)) {
		memcpy(block, text + head, len - head - tail);
		block[len - head - tail] = '\0';
	}
out:
	free(text);
	return block;
}

int main(void)
{
	char backing[] = "/tmp/stashfs-guide-XXXXXX", cmd[300], path[1024];
	const char *data = getenv("STASHFS_TEST_DATA"), *s;
	struct stash_error err;

	snprintf(path, sizeof(path), "%s/../../core/guide.md", data ? data : "tests/data");
	source = slurp(path, &source_len);
	if (!source) {
		fprintf(stderr, "cannot read %s\n", path);
		return 1;
	}
	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	CHECK(guide_path(".stashfs-guide"));
	CHECK(!guide_path("sub/.stashfs-guide"));
	CHECK(!guide_path(".stashfs-guide.json"));

	/* A fresh store with no options. */
	s = settings();
	CHECK(strstr(s, "- New stashes made at the top are persistent") != NULL);
	CHECK(strstr(s, "`user.stash.ttl` 0)") != NULL);
	CHECK(strstr(s, "- Largest stash: 67108864 bytes; a bigger write is refused") != NULL);  /* 64 MiB */
	CHECK(strstr(s, "- Schemas stored: none yet.\n") != NULL);
	CHECK(strstr(s, "- Other daemons share this store: no.\n") != NULL);
	CHECK(s[0] == '-' && s[strlen(s) - 1] == '\n');

	/* The root's settings and the schemas stored show at the next rendering. */
	CHECK(stash_store_setxattr(st, "", "user.stash.ttl", "90", 2, 0, &who, &err) == 0);
	CHECK(stash_store_setxattr(st, "", "user.stash.versions", "3", 1, 0, &who, &err) == 0);
	CHECK(stash_store_setxattr(st, "", "user.stash.persistent", "0", 1, 0, &who, &err) == 0);
	CHECK(put(st, "schemas/zeta", "{\"type\":\"object\"}", O_TRUNC) == 0);
	CHECK(put(st, "schemas/alpha", "{}", O_TRUNC) == 0);
	CHECK(put(st, "schemas/alpha", "{\"type\":\"object\"}", O_TRUNC) == 0);   /* a version */
	CHECK(put(st, "schemas/mid", "{}", O_TRUNC) == 0);
	CHECK(put(st, "schemas/beta", "{}", O_TRUNC) == 0);
	CHECK(stash_store_mkdir(st, "schemas/group", 0755, &who) == 0);      /* not a schema */
	/* Planted behind the store: a dot-name and a version-like name are no schemas. */
	snprintf(path, sizeof(path), "%s/schemas/.hidden", backing);
	CHECK(close(open(path, O_WRONLY | O_CREAT, 0644)) == 0);
	snprintf(path, sizeof(path), "%s/schemas/alpha@1", backing);
	CHECK(close(open(path, O_WRONLY | O_CREAT, 0644)) == 0);
	s = settings();
	CHECK(strstr(s, "- New stashes made at the top are ephemeral") != NULL);
	CHECK(strstr(s, "- Default ttl at the top: 90 seconds") != NULL);
	CHECK(strstr(s, "- Past versions kept per stash: 3 (") != NULL);
	CHECK_MSG(strstr(s, "- Schemas stored: `alpha`, `beta`, `mid`, `zeta`.\n") != NULL, "settings:\n%s", s);

	/* Reading it through the store gives the same text. */
	{
		size_t len = 0;
		int e = 0;
		char *text = guide_render(st, &len, &e);
		const char *got = get(st, ".stashfs-guide");

		CHECK(text && got && strncmp(got, text, 4095) == 0);
		free(text);
	}
	stash_store_close(st);
	free(source);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
