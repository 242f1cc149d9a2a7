// SPDX-License-Identifier: MIT
/*
 * schema-bench.c - how fast is schema validation, and what does it cost
 * next to parsing the same document?
 *
 * Usage: schema-bench [SECONDS_PER_CASE]
 * Two cases: a 55-byte task-progress document against a small schema, and a
 * ~5 KB document of nested arrays of objects against a realistic schema.
 * For each prints validations/s, json_loads/s and validation as a
 * percentage of parsing time.  Single thread; plain lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "stashfs/schema.h"

static const char small_schema[] =
	"{\"type\":\"object\",\"required\":[\"task\",\"status\",\"next_step\"],"
	"\"properties\":{\"task\":{\"type\":\"string\"},"
	"\"status\":{\"type\":\"string\",\"enum\":[\"pending\",\"active\",\"blocked\",\"done\"]},"
	"\"next_step\":{\"type\":\"string\"},"
	"\"completed_steps\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}";

static const char small_doc[] = "{\"task\":\"t\",\"status\":\"active\",\"next_step\":\"write tests\"}";

static const char large_schema[] =
	"{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
	"\"type\":\"object\",\"required\":[\"project\",\"milestones\"],"
	"\"additionalProperties\":false,"
	"\"properties\":{"
	" \"project\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200},"
	" \"version\":{\"type\":\"integer\",\"minimum\":0},"
	" \"owner\":{\"$ref\":\"#/$defs/person\"},"
	" \"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^[a-z][a-z0-9-]*$\"},"
	"          \"uniqueItems\":true},"
	" \"milestones\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/milestone\"}}},"
	"\"$defs\":{"
	" \"person\":{\"type\":\"object\",\"required\":[\"name\"],"
	"   \"properties\":{\"name\":{\"type\":\"string\"},\"email\":{\"type\":\"string\",\"format\":\"email\"}}},"
	" \"milestone\":{\"type\":\"object\",\"required\":[\"title\",\"status\",\"tasks\"],"
	"   \"properties\":{\"title\":{\"type\":\"string\"},"
	"    \"status\":{\"enum\":[\"planned\",\"active\",\"done\"]},"
	"    \"due\":{\"type\":\"string\"},"
	"    \"tasks\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/task\"}}}},"
	" \"task\":{\"type\":\"object\",\"required\":[\"id\",\"title\",\"done\"],"
	"   \"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1},"
	"    \"title\":{\"type\":\"string\",\"maxLength\":500},"
	"    \"done\":{\"type\":\"boolean\"},"
	"    \"estimate\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
	"    \"assignee\":{\"$ref\":\"#/$defs/person\"},"
	"    \"notes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
	"   \"additionalProperties\":false}}}";

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A ~5 KB document: milestones of tasks with nested people and notes. */
static char *make_large_doc(void)
{
	json_t *doc = json_pack("{s:s, s:i, s:{s:s, s:s}, s:[s,s,s]}", "project", "stashfs",
				"version", 3, "owner", "name", "Ada", "email", "ada@example.org",
				"tags", "fuse", "json", "schema-2020-12");
	json_t *ms = json_array();
	char *out;
	int m, t;

	for (m = 0; m < 5; m++) {
		json_t *tasks = json_array();

		for (t = 0; t < 6; t++) {
			char title[64];

			snprintf(title, sizeof(title), "task %d of milestone %d", t, m);
			json_array_append_new(tasks, json_pack(
				"{s:i, s:s, s:b, s:f, s:{s:s}, s:[s,s]}", "id", m * 10 + t + 1,
				"title", title, "done", t % 2, "estimate", 1.5 + t,
				"assignee", "name", "Grace", "notes", "check the edge cases",
				"write it down"));
		}
		json_array_append_new(ms, json_pack("{s:s, s:s, s:s, s:o}", "title", "milestone",
						    "status", m ? "planned" : "active", "due",
						    "2025-01-31", "tasks", tasks));
	}
	json_object_set_new(doc, "milestones", ms);
	out = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return out;
}

static int bench(const char *label, const char *schema_text, const char *doc_text, double secs)
{
	struct stash_schema *s;
	struct stash_error err;
	json_error_t je;
	json_t *sdoc = json_loads(schema_text, 0, &je), *doc;
	unsigned long n, batch = 1000, i;
	double t0, t, vrate, prate;

	if (!sdoc || stash_schema_compile(sdoc, label, NULL, NULL, NULL, NULL, &s, &err) < 0) {
		fprintf(stderr, "%s: cannot compile: %s\n", label, sdoc ? err.text : je.text);
		json_decref(sdoc);
		return 1;
	}
	json_decref(sdoc);
	doc = json_loads(doc_text, 0, &je);
	if (!doc || stash_schema_validate(s, doc, &err) < 0) {
		fprintf(stderr, "%s: document does not validate: %s\n", label, doc ? err.text : je.text);
		json_decref(doc);
		stash_schema_free(s);
		return 1;
	}

	n = 0;
	t0 = now();
	do {
		for (i = 0; i < batch; i++)
			if (stash_schema_validate(s, doc, &err) != 0)
				return 1;
		n += batch;
		t = now() - t0;
	} while (t < secs);
	vrate = n / t;

	n = 0;
	t0 = now();
	do {
		for (i = 0; i < batch; i++)
			json_decref(json_loads(doc_text, 0, &je));
		n += batch;
		t = now() - t0;
	} while (t < secs);
	prate = n / t;

	printf("%s: %zu bytes\n", label, strlen(doc_text));
	printf("  validate:   %12.0f /s  %8.1f ns each\n", vrate, 1e9 / vrate);
	printf("  json_loads: %12.0f /s  %8.1f ns each\n", prate, 1e9 / prate);
	printf("  validation costs %.1f%% of parsing\n", 100.0 * prate / vrate);
	json_decref(doc);
	stash_schema_free(s);
	return 0;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	char *large = make_large_doc();
	int rc;

	if (secs <= 0)
		secs = 1.0;
	rc = bench("small (task-progress)", small_schema, small_doc, secs);
	rc |= bench("large (milestones)", large_schema, large, secs);
	free(large);
	return rc;
}
