// SPDX-License-Identifier: MIT
/*
 * test_merge.c - merges through NAME.json: a patch's keys replace, null
 * deletes, new keys are appended, a missing stash counts as {}; what
 * is not an object is refused and leaves the stash as it was; merges of
 * one name that queue up while its lock is held land together, in one
 * file whose version counts each of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "locks.h"
#include "stashfs/store.h"
#include "store_util.h"
#include "versions.h"

#define MERGERS 8

static struct stash_store *st;

/* The document in @path, parsed (NULL when it is missing or not JSON). */
static json_t *doc_of(const char *path)
{
	const char *text = get(st, path);

	return text ? json_loads(text, 0, NULL) : NULL;
}

/* Does @path hold the same document as the JSON text @want, keys in that order? */
static int holds(const char *path, const char *want)
{
	json_t *got = doc_of(path), *w = json_loads(want, JSON_PRESERVE_ORDER, NULL);
	char *a = got ? json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	char *b = w ? json_dumps(w, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	int same = a && b && strcmp(a, b) == 0;

	if (!same)
		fprintf(stderr, "%s holds %s, not %s\n", path, a ? a : "(nothing)", want);
	free(a);
	free(b);
	json_decref(got);
	json_decref(w);
	return same;
}

static atomic_int started;

static void *merge_key(void *arg)
{
	char patch[64];

	atomic_fetch_add(&started, 1);

	snprintf(patch, sizeof(patch), "{\"k%ld\":%ld}", (long)(intptr_t)arg, (long)(intptr_t)arg);
	return (void *)(intptr_t)put(st, "q.json", patch, O_TRUNC);
}

static void test_view(void)
{
	struct stash_error err;

	/* A missing stash counts as {} and is created. */
	CHECK(put(st, "p.json", "{\"a\":1,\"b\":2}", O_TRUNC) == 0);
	CHECK(holds("p", "{\"a\":1,\"b\":2}"));
	CHECK(version_of(st, "p") == 1);
	/* Replace, delete with null, append: existing keys keep their place. */
	CHECK(put(st, "p.json", "{\"c\":3,\"a\":{\"x\":[1]},\"b\":null}", O_TRUNC) == 0);
	CHECK(holds("p", "{\"a\":{\"x\":[1]},\"c\":3}"));
	CHECK(version_of(st, "p") == 2);
	/* Appending (>>) to the view merges too; the stash is never truncated by it. */
	CHECK(put(st, "p.json", "{\"d\":4}", O_APPEND) == 0);
	CHECK(holds("p", "{\"a\":{\"x\":[1]},\"c\":3,\"d\":4}"));
	/* The view reads as the document. */
	CHECK(get(st, "p.json") && strcmp(get(st, "p.json"), get(st, "p")) == 0);
	/* Not an object, not JSON: refused, the stash stays as it was. */
	CHECK(put_err(st, "p.json", "[1,2]", O_TRUNC, &err) == -EINVAL);
	CHECK(strstr(err.text, "one JSON object") != NULL);
	CHECK(put_err(st, "p.json", "{\"a\":", O_TRUNC, &err) == -EINVAL);
	CHECK(holds("p", "{\"a\":{\"x\":[1]},\"c\":3,\"d\":4}"));
	CHECK(version_of(st, "p") == 3);
	/* A stash that holds no object takes no merge. */
	CHECK(put(st, "s", "plain text", O_TRUNC) == 0);
	CHECK(put_err(st, "s.json", "{\"a\":1}", O_TRUNC, &err) < 0);
	CHECK(reads_as(st, "s", "plain text"));
	CHECK(version_of(st, "s") == 1);
}

static void test_queued(void)
{
	struct timespec nap = { 0, 300 * 1000 * 1000 };
	pthread_t t[MERGERS];
	json_t *doc, *list;
	unsigned s;

	CHECK(put(st, "q", "{\"start\":true}", O_TRUNC) == 0);
	/* Hold the name: every merge queues up behind it. */
	s = store_lock_name(st, "q");
	atomic_store(&started, 0);
	for (long i = 0; i < MERGERS; i++)
		CHECK(pthread_create(&t[i], NULL, merge_key, (void *)(intptr_t)i) == 0);
	/* Every merger running, then time for them to reach the queue. */
	while (atomic_load(&started) < MERGERS)
		nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
	nanosleep(&nap, NULL);
	CHECK(holds("q", "{\"start\":true}"));     /* nothing landed yet */
	store_unlock_name(st, s);
	for (int i = 0; i < MERGERS; i++) {
		void *r;

		pthread_join(t[i], &r);
		CHECK((intptr_t)r == 0);
	}
	doc = doc_of("q");
	CHECK(doc && json_object_size(doc) == MERGERS + 1);
	for (int i = 0; i < MERGERS; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", i);
		CHECK(json_integer_value(json_object_get(doc, key)) == i);
	}
	json_decref(doc);
	/* One version counted per merge... */
	CHECK(version_of(st, "q") == 1 + MERGERS);
	/*
	 * ...written together: the versions in between were never files.  One
	 * merger slow to reach the queue on a loaded machine commits after the
	 * batch (2 kept); one commit per merge would keep MERGERS.
	 */
	list = versions_list(st, "q");
	CHECK_MSG(json_array_size(list) <= 2, "%zu kept versions", json_array_size(list));
	json_decref(list);
	CHECK(reads_as(st, "q@1", "{\"start\":true}"));
}

int main(void)
{
	char backing[] = "/tmp/stashfs-merge-XXXXXX", cmd[300];
	struct stash_error err;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	test_view();
	test_queued();
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
