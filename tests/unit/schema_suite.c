// SPDX-License-Identifier: MIT
/*
 * schema_suite.c - run the official JSON-Schema-Test-Suite (draft2020-12)
 * against core/schema_*.c.
 *
 * Usage: schema_suite [-v] [SUITE_DIR] [--if-fetched DIR] [--if-exists DIR]...
 * The suite is SUITE_DIR when given, else $STASHFS_SCHEMA_SUITE when set
 * (either must hold the suite), else the first candidate that is there:
 * --if-fetched names a git submodule (an empty directory is a submodule not
 * fetched yet), --if-exists a directory that counts once it exists.  With
 * no suite the run is skipped (exit 77, meson's SKIP) with the reason and
 * the command that fetches it; a suite folder that is empty, has no .json
 * file in tests/draft2020-12, or holds a file not shaped like the suite's
 * (a group without "schema" or "tests", a case without "data" or a boolean
 * "valid") fails.
 * Runs the .json files of tests/draft2020-12 (required: any failure makes
 * the exit status 1) and everything under tests/draft2020-12/optional
 * (reported, counted
 * separately, never fatal; the optional/format files run with format
 * assertion on).  Remote references http://localhost:1234/X are served
 * from SUITE_DIR/remotes/X by the loader.  Prints per-file counts and
 * ends with "N passed, N failed" for the required set.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "stashfs/schema.h"

#define REMOTE_PREFIX "http://localhost:1234/"

static const char *suite_dir;
static int verbose;

static json_t *load_json(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);

	/* Big integers do not fit jansson's integers; reals keep them loadable. */
	if (!j)
		j = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
	if (!j && verbose)
		fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
	return j;
}

static json_t *remote_loader(void *ctx, const char *uri)
{
	char path[4096];

	(void)ctx;
	if (strncmp(uri, REMOTE_PREFIX, strlen(REMOTE_PREFIX)))
		return NULL;
	snprintf(path, sizeof(path), "%s/remotes/%s", suite_dir, uri + strlen(REMOTE_PREFIX));
	return load_json(path);
}

struct counts {
	int passed, failed;
};

/* Why @g is not a test group of the suite ({"description", "schema",
 * "tests": [{"description", "data", "valid": true|false}, ...]}), or NULL. */
static const char *foreign_group(const json_t *g)
{
	const json_t *tests = json_object_get(g, "tests"), *t;
	size_t i;

	if (!json_is_object(g))
		return "not an object";
	if (!json_is_string(json_object_get(g, "description")))
		return "no \"description\" string";
	if (!json_object_get(g, "schema"))
		return "no \"schema\"";
	if (!json_is_array(tests) || !json_array_size(tests))
		return "no \"tests\" array of cases";
	json_array_foreach(tests, i, t) {
		if (!json_is_object(t) || !json_object_get(t, "data"))
			return "a case without \"data\"";
		if (!json_is_boolean(json_object_get(t, "valid")))
			return "a case without \"valid\": true or false";
	}
	return NULL;
}

static void run_file(const char *path, const char *label, int format_assert, struct counts *total)
{
	struct stash_schema_options opts = { .format_assert = format_assert };
	struct counts c = { 0, 0 };
	json_t *groups = load_json(path), *g;
	size_t gi;

	if (!json_is_array(groups)) {
		printf("%-50s cannot load\n", label);
		total->failed++;
		json_decref(groups);
		return;
	}
	json_array_foreach(groups, gi, g) {
		const char *gdesc = json_string_value(json_object_get(g, "description"));
		json_t *tests = json_object_get(g, "tests"), *t;
		struct stash_schema *s = NULL;
		struct stash_error err;
		const char *bad;
		size_t ti;
		int rc;

		if ((bad = foreign_group(g))) {
			/* Not the suite's shape: counting nothing here would let a
			 * foreign file pass as an empty one. */
			printf("%-50s group %zu: not a test-suite group: %s\n", label, gi, bad);
			c.failed++;
			continue;
		}
		rc = stash_schema_compile(json_object_get(g, "schema"), gdesc, NULL, remote_loader,
					  NULL, &opts, &s, &err);
		json_array_foreach(tests, ti, t) {
			const char *tdesc = json_string_value(json_object_get(t, "description"));
			int want = json_is_true(json_object_get(t, "valid"));
			struct stash_error verr;
			int got, vr;

			if (rc < 0) {
				c.failed++;
				if (verbose)
					printf("  FAIL %s / %s / %s: compile: %s\n", label, gdesc, tdesc,
					       err.text);
				continue;
			}
			vr = stash_schema_validate(s, json_object_get(t, "data"), &verr);
			got = vr == 0;
			if (got == want && (vr == 0 || vr == -EINVAL)) {
				c.passed++;
			} else {
				c.failed++;
				if (verbose)
					printf("  FAIL %s / %s / %s: want %s, got %d (%s)\n", label, gdesc,
					       tdesc, want ? "valid" : "invalid", vr, verr.text);
			}
		}
		stash_schema_free(s);
	}
	json_decref(groups);
	printf("%-50s %4d passed, %3d failed\n", label, c.passed, c.failed);
	total->passed += c.passed;
	total->failed += c.failed;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every .json file of @dir (sorted), recursing into subdirectories
 * when @recurse. */
static void run_dir(const char *dir, const char *prefix, int recurse, int format_assert,
		    struct counts *total)
{
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d) {
		perror(dir);
		total->failed++;
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names) {
				closedir(d);
				return;
			}
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 0; i < n; i++) {
		char path[4096], label[512];
		size_t len = strlen(names[i]);

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		snprintf(label, sizeof(label), "%s%s", prefix, names[i]);
		if (len > 5 && !strcmp(names[i] + len - 5, ".json")) {
			run_file(path, label, format_assert, total);
		} else if (recurse) {
			char sub[512];
			DIR *probe = opendir(path);

			if (probe) {
				closedir(probe);
				snprintf(sub, sizeof(sub), "%.500s/", label);
				run_dir(path, sub, recurse, format_assert || !strcmp(names[i], "format"),
					total);
			}
		}
		free(names[i]);
	}
	free(names);
}

/* Number of entries of @dir other than "." and ".." (only those whose name
 * ends in @suffix, unless NULL), or -1 if it can't be opened. */
static int count_entries(const char *dir, const char *suffix)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name), sl = suffix ? strlen(suffix) : 0;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!suffix || (len > sl && !strcmp(de->d_name + len - sl, suffix)))
			n++;
	}
	closedir(d);
	return n;
}

#define SKIP_STATUS 77		/* meson (and automake) count this exit status as skipped */

int main(int argc, char **argv)
{
	struct counts req = { 0, 0 }, opt = { 0, 0 };
	const char *explicit = NULL, *origin = NULL;
	char dir[4096], why[4096] = "";
	size_t wl = 0;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v")) {
			verbose = 1;
		} else if ((!strcmp(argv[i], "--if-fetched") || !strcmp(argv[i], "--if-exists")) &&
			   i + 1 < argc) {
			int fetched = !strcmp(argv[i], "--if-fetched");
			int n = count_entries(argv[i + 1], NULL);
			/* A clone without its submodules has an empty directory there. */
			int there = fetched ? n > 0 : n >= 0;

			if (!suite_dir && there) {
				suite_dir = argv[i + 1];
				origin = fetched ? "submodule" : "directory";
			} else if (!suite_dir && wl < sizeof(why)) {
				wl += snprintf(why + wl, sizeof(why) - wl, "%s %s (%s)",
					       wl ? " nor in" : " in", argv[i + 1],
					       n < 0 ? "does not exist" :
					       "empty: submodule not fetched");
			}
			i++;
		} else if (argv[i][0] != '-' && !explicit) {
			explicit = argv[i];
		} else {
			fprintf(stderr, "usage: %s [-v] [SUITE_DIR] [--if-fetched DIR] "
				"[--if-exists DIR]...\n", argv[0]);
			return 2;
		}
	}
	if (!explicit && getenv("STASHFS_SCHEMA_SUITE") && *getenv("STASHFS_SCHEMA_SUITE")) {
		explicit = getenv("STASHFS_SCHEMA_SUITE");
		origin = "$STASHFS_SCHEMA_SUITE";
	}
	if (explicit) {
		suite_dir = explicit;
		origin = origin ? origin : "command line";
	}
	if (!suite_dir) {
		printf("skipped: no JSON-Schema-Test-Suite%s; fetch it with: git submodule update "
		       "--init (or set STASHFS_SCHEMA_SUITE to a copy of the suite)\n"
		       "0 passed, 0 failed, 1 skipped\n", why);
		return SKIP_STATUS;
	}
	printf("suite: %s (%s)\n", suite_dir, origin);
	snprintf(dir, sizeof(dir), "%s/tests/draft2020-12", suite_dir);
	if (count_entries(dir, ".json") <= 0) {
		printf("%s holds no test files (tests/draft2020-12/*.json): not the "
		       "JSON-Schema-Test-Suite, or an empty copy\n0 passed, 1 failed\n", suite_dir);
		return 1;
	}

	snprintf(dir, sizeof(dir), "%s/tests/draft2020-12/optional", suite_dir);
	printf("optional:\n");
	run_dir(dir, "optional/", 1, 0, &opt);
	printf("optional: %d passed, %d failed\n\nrequired:\n", opt.passed, opt.failed);

	snprintf(dir, sizeof(dir), "%s/tests/draft2020-12", suite_dir);
	run_dir(dir, "", 0, 0, &req);
	if (!req.passed && !req.failed)
		req.failed = 1;		/* files that held no test case: nothing was checked */
	printf("%d passed, %d failed\n", req.passed, req.failed);
	return req.failed ? 1 : 0;
}
