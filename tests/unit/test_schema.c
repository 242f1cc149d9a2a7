// SPDX-License-Identifier: MIT
/*
 * test_schema.c - unit tests for core/schema.c: error messages, refusing
 * invalid and hostile schemas, limits, the loader, concurrent use.  The
 * keyword semantics are covered by the official suite (schema_suite.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "stashfs/json.h"
#include "stashfs/schema.h"
#include "check.h"

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);

	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, je.text);
	return j;
}

/* Compile @schema_text; returns the errno-style result. */
static int compile(const char *schema_text, const struct stash_schema_options *opts,
		   struct stash_schema **out, struct stash_error *err)
{
	json_t *doc = J(schema_text);
	int rc;

	rc = stash_schema_compile(doc, "test", "stashfs:///schemas/test", NULL, NULL, opts, out, err);
	json_decref(doc);
	return rc;
}

static int validate(const struct stash_schema *s, const char *doc_text, struct stash_error *err)
{
	json_t *doc = J(doc_text);
	int rc = stash_schema_validate(s, doc, err);

	json_decref(doc);
	return rc;
}

static void test_error_message(void)
{
	struct stash_schema *s;
	struct stash_error err;
	json_t *doc = J("{\"type\":\"object\",\"required\":[\"task\",\"status\"],"
			"\"properties\":{\"status\":{\"enum\":[\"active\",\"blocked\"]}}}");
	int rc;

	rc = stash_schema_compile(doc, "task-progress", NULL, NULL, NULL, NULL, &s, &err);
	json_decref(doc);
	CHECK_MSG(rc == 0, "%s", err.text);
	if (rc)
		return;
	CHECK(validate(s, "{\"task\":\"t\",\"status\":\"active\"}", &err) == 0);
	CHECK(err.code == 0);

	rc = validate(s, "{\"task\":\"t\",\"status\":\"done\"}", &err);
	CHECK(rc == -EINVAL);
	CHECK(err.code == EINVAL);
	CHECK_MSG(!strcmp(err.text, "/status: value \"done\" is not one of the enum "
			  "(schema task-progress, #/properties/status/enum)"), "%s", err.text);
	CHECK(!strcmp(err.pointer, "/status"));
	CHECK(!strcmp(err.keyword, "enum"));

	rc = validate(s, "{\"status\":\"active\"}", &err);
	CHECK(rc == -EINVAL);
	CHECK(!strcmp(err.keyword, "required"));
	CHECK(!strcmp(err.pointer, ""));
	CHECK_MSG(strstr(err.text, "\"task\"") != NULL, "%s", err.text);

	rc = validate(s, "[1]", &err);
	CHECK(rc == -EINVAL && !strcmp(err.keyword, "type"));
	CHECK(validate(s, "[1]", NULL) == -EINVAL);
	stash_schema_free(s);
}

static void test_pointer_escaping(void)
{
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"properties\":{\"a/b\":{\"items\":{\"properties\":{\"c~d\":"
		      "{\"type\":\"integer\"}}}}}}", NULL, &s, &err) == 0);
	CHECK(validate(s, "{\"a/b\":[{\"c~d\":1},{\"c~d\":\"x\"}]}", &err) == -EINVAL);
	CHECK_MSG(!strcmp(err.pointer, "/a~1b/1/c~0d"), "%s", err.pointer);
	CHECK(!strcmp(err.keyword, "type"));
	stash_schema_free(s);
}

static void test_invalid_schemas(void)
{
	static const char *const bad[] = {
		"{\"type\": 12}",
		"{\"type\": \"strnig\"}",
		"{\"minLength\": -1}",
		"{\"minLength\": 1.5}",
		"{\"required\": \"name\"}",
		"{\"properties\": []}",
		"{\"allOf\": []}",
		"{\"pattern\": \"(\"}",
		"{\"patternProperties\": {\"[\": true}}",
		"{\"$ref\": \"#/$defs/missing\"}",
		"{\"$ref\": \"other\"}",
		"{\"multipleOf\": 0}",
		"{\"$schema\": \"http://json-schema.org/draft-07/schema#\"}",
		"{\"$schema\": \"https://example.com/unknown\"}",
		"12",
		"\"string\"",
	};
	struct stash_schema *s;
	struct stash_error err;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = compile(bad[i], NULL, &s, &err);

		CHECK_MSG(rc == -EINVAL, "%s compiled (rc %d)", bad[i], rc);
		CHECK_MSG(err.text[0] != '\0', "%s: no reason", bad[i]);
		CHECK(s == NULL);
	}
	CHECK(compile("{\"type\": 12}", NULL, &s, &err) == -EINVAL);
	CHECK_MSG(strstr(err.text, "/type") != NULL, "%s", err.text);
	CHECK(compile("{\"minLength\": -1}", NULL, &s, &err) == -EINVAL);
	CHECK_MSG(strstr(err.text, "minLength") != NULL, "%s", err.text);
	CHECK(compile("true", NULL, &s, &err) == 0);
	stash_schema_free(s);
	CHECK(compile("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\"}", NULL,
		      &s, &err) == 0);
	stash_schema_free(s);
}

static void test_ref_loops(void)
{
	static const char *const loops[] = {
		"{\"$ref\": \"#\"}",
		("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"allOf\":[{\"$ref\":\"#/$defs/a\"}]}},"
		 " \"$ref\": \"#/$defs/a\"}"),
		"{\"anyOf\":[{\"type\":\"string\"},{\"$ref\":\"#\"}]}",
	};
	struct stash_schema *s;
	struct stash_error err;
	size_t i;

	for (i = 0; i < sizeof(loops) / sizeof(loops[0]); i++) {
		int rc = compile(loops[i], NULL, &s, &err);

		CHECK_MSG(rc == -E2BIG, "%s: rc %d", loops[i], rc);
		CHECK_MSG(strstr(err.text, "loop") != NULL, "%s", err.text);
	}
	/* Recursion through a child value is fine: it ends with the data. */
	CHECK(compile("{\"properties\":{\"next\":{\"$ref\":\"#\"}}}", NULL, &s, &err) == 0);
	CHECK(validate(s, "{\"next\":{\"next\":{}}}", &err) == 0);
	stash_schema_free(s);
}

static void test_depth_limit(void)
{
	struct stash_schema_options opts = { .max_depth = 16 };
	struct stash_schema *s;
	struct stash_error err;
	char doc[256];
	int i, pos = 0;

	CHECK(compile("{\"items\":{\"$ref\":\"#\"}}", &opts, &s, &err) == 0);
	for (i = 0; i < 40; i++)
		doc[pos++] = '[';
	for (i = 0; i < 40; i++)
		doc[pos++] = ']';
	doc[pos] = '\0';
	CHECK(validate(s, doc, &err) == -E2BIG);
	CHECK(err.code == E2BIG);
	CHECK_MSG(strstr(err.text, "depth") != NULL, "%s", err.text);
	CHECK(validate(s, "[[[]]]", &err) == 0);
	stash_schema_free(s);

	/* $dynamicRef cannot be checked at compile time: the limit catches it. */
	CHECK(compile("{\"$dynamicAnchor\":\"x\",\"allOf\":[{\"$dynamicRef\":\"#x\"}]}", NULL,
		      &s, &err) == 0);
	CHECK(validate(s, "1", &err) == -E2BIG);
	stash_schema_free(s);
}

static void test_step_limit(void)
{
	struct stash_schema_options opts = { .max_steps = 100 };
	struct stash_schema *s;
	struct stash_error err;
	json_t *arr = json_array();
	int i;

	CHECK(compile("{\"items\":{\"type\":\"integer\"}}", &opts, &s, &err) == 0);
	for (i = 0; i < 1000; i++)
		json_array_append_new(arr, json_integer(i));
	CHECK(stash_schema_validate(s, arr, &err) == -E2BIG);
	CHECK_MSG(strstr(err.text, "step") != NULL, "%s", err.text);
	json_decref(arr);
	stash_schema_free(s);
}

static void test_hostile_regex(void)
{
	struct stash_schema *s;
	struct stash_error err;
	char doc[128];

	CHECK(compile("{\"pattern\": \"^(a+)+$\"}", NULL, &s, &err) == 0);
	snprintf(doc, sizeof(doc), "\"%s!\"", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	CHECK(validate(s, doc, &err) == -E2BIG);
	CHECK_MSG(strstr(err.text, "pattern") != NULL, "%s", err.text);
	CHECK(validate(s, "\"aaaa\"", &err) == 0);
	stash_schema_free(s);
}

static void test_schema_size_limit(void)
{
	struct stash_schema_options opts = { .max_schema_bytes = 32 };
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"properties\":{\"aaaaaaaaaaaaaaaaaa\":{\"type\":\"string\"}}}", &opts,
		      &s, &err) == -E2BIG);
	CHECK(compile("{\"type\":\"string\"}", &opts, &s, &err) == 0);
	stash_schema_free(s);
}

static void test_ecma_regex(void)
{
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"pattern\": \"^\\\\d+$\"}", NULL, &s, &err) == 0);
	CHECK(validate(s, "\"123\"", &err) == 0);
	/* ECMA \d is ASCII only: a Bengali digit is not one. */
	CHECK(validate(s, "\"\\u09e7\"", &err) == -EINVAL);
	CHECK(validate(s, "\"12\\n\"", &err) == -EINVAL);
	stash_schema_free(s);

	CHECK(compile("{\"pattern\": \"^\\\\s$\"}", NULL, &s, &err) == 0);
	CHECK(validate(s, "\"\\u00a0\"", &err) == 0);
	CHECK(validate(s, "\"\\ufeff\"", &err) == 0);
	CHECK(validate(s, "\"x\"", &err) == -EINVAL);
	stash_schema_free(s);

	CHECK(compile("{\"pattern\": \"^\\\\u00e9\\\\p{Letter}$\"}", NULL, &s, &err) == 0);
	CHECK(validate(s, "\"\\u00e9\\u00e8\"", &err) == 0);
	stash_schema_free(s);

	/* Unanchored search. */
	CHECK(compile("{\"patternProperties\": {\"b\": {\"type\": \"integer\"}}}", NULL, &s,
		      &err) == 0);
	CHECK(validate(s, "{\"abc\": \"x\"}", &err) == -EINVAL);
	CHECK(validate(s, "{\"xyz\": \"x\"}", &err) == 0);
	stash_schema_free(s);
}

static void test_numbers_and_strings(void)
{
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"type\":\"integer\",\"multipleOf\":0.01,\"maximum\":10}", NULL, &s, &err) == 0);
	CHECK(validate(s, "1.0", &err) == 0);
	CHECK(validate(s, "1.5", &err) == -EINVAL);
	CHECK(validate(s, "11", &err) == -EINVAL && !strcmp(err.keyword, "maximum"));
	stash_schema_free(s);

	CHECK(compile("{\"multipleOf\":0.1}", NULL, &s, &err) == 0);
	CHECK(validate(s, "4.5", &err) == 0);
	CHECK(validate(s, "0.3", &err) == 0);
	CHECK(validate(s, "0.35", &err) == -EINVAL);
	stash_schema_free(s);

	CHECK(compile("{\"const\":{\"a\":[1,2.0]},\"minLength\":2}", NULL, &s, &err) == 0);
	CHECK(validate(s, "{\"a\":[1.0,2]}", &err) == 0);
	CHECK(validate(s, "{\"a\":[1,3]}", &err) == -EINVAL);
	stash_schema_free(s);

	/* Length in code points: two emoji are two characters, eight bytes. */
	CHECK(compile("{\"maxLength\":2,\"minLength\":2}", NULL, &s, &err) == 0);
	CHECK(validate(s, "\"\\ud83d\\ude00\\ud83d\\ude00\"", &err) == 0);
	CHECK(validate(s, "\"\\ud83d\\ude00\"", &err) == -EINVAL);
	CHECK(validate(s, "\"abc\"", &err) == -EINVAL);
	stash_schema_free(s);

	CHECK(compile("{\"uniqueItems\":true}", NULL, &s, &err) == 0);
	CHECK(validate(s, "[1, 2.0, {\"a\":1,\"b\":2}, {\"b\":2,\"a\":1.0}]", &err) == -EINVAL);
	CHECK(validate(s, "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,1.0]", &err) ==
	      -EINVAL);
	CHECK(validate(s, "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,\"1\"]", &err) == 0);
	stash_schema_free(s);
}

struct store {
	const char *name;
	const char *text;
};

static int loader_calls;

static json_t *store_loader(void *ctx, const char *uri)
{
	const struct store *st = ctx;

	loader_calls++;
	for (; st->name; st++)
		if (!strcmp(uri, st->name))
			return J(st->text);
	return NULL;
}

static void test_loader(void)
{
	static const struct store store[] = {
		{ "stashfs:///schemas/b", "{\"$defs\":{\"id\":{\"type\":\"string\"}},"
					   "\"properties\":{\"id\":{\"$ref\":\"#/$defs/id\"}}}" },
		{ NULL, NULL },
	};
	struct stash_schema *s;
	struct stash_error err;
	json_t *doc = J("{\"$ref\":\"b\",\"properties\":{\"c\":{\"$ref\":\"c\"}}}");
	int rc;

	/* A reference to an unknown schema is refused at compile time. */
	rc = stash_schema_compile(doc, "a", "stashfs:///schemas/a", store_loader, (void *)store,
				  NULL, &s, &err);
	CHECK(rc == -EINVAL);
	CHECK_MSG(strstr(err.text, "stashfs:///schemas/c") != NULL, "%s", err.text);
	json_decref(doc);

	doc = J("{\"$ref\":\"b\"}");
	loader_calls = 0;
	rc = stash_schema_compile(doc, "a", "stashfs:///schemas/a", store_loader, (void *)store,
				  NULL, &s, &err);
	json_decref(doc);
	CHECK_MSG(rc == 0, "%s", err.text);
	CHECK(loader_calls == 1);
	if (rc)
		return;
	CHECK(validate(s, "{\"id\":\"x\"}", &err) == 0);
	CHECK(validate(s, "{\"id\":3}", &err) == -EINVAL);
	CHECK_MSG(strstr(err.text, "stashfs:///schemas/b#/$defs/id/type") != NULL, "%s", err.text);
	stash_schema_free(s);
}

/* defer_missing: a reference to a schema not stored yet compiles, and
 * refuses what reaches it, wherever it is (anyOf and not included). */
static void test_missing_deferred(void)
{
	static const struct store store[] = {
		{ "stashfs:///schemas/b", "{\"properties\":{\"a\":{\"$ref\":\"a\"}},"
					   "\"required\":[\"id\"]}" },
		{ NULL, NULL },
	};
	static const struct store empty[] = { { NULL, NULL } };
	const struct stash_schema_options opts = { .defer_missing = 1 };
	struct stash_schema *s = NULL;
	struct stash_error err;
	json_t *doc = J("{\"properties\":{\"next\":{\"$ref\":\"b\"},"
			"\"maybe\":{\"anyOf\":[{\"type\":\"string\"},{\"$ref\":\"c#/$defs/x\"}]},"
			"\"never\":{\"not\":{\"$ref\":\"c\"}}}}");
	int rc;

	rc = stash_schema_compile(doc, "a", "stashfs:///schemas/a", store_loader, (void *)empty,
				  &opts, &s, &err);
	CHECK_MSG(rc == 0, "%s", err.text);
	if (rc == 0) {
		CHECK(validate(s, "{\"other\":1}", &err) == 0);
		CHECK(validate(s, "{\"next\":{}}", &err) == -EINVAL);
		CHECK_MSG(!strcmp(err.text, "/next: unresolved reference to schema b "
				  "(schema a, #/properties/next/$ref)") &&
			  !strcmp(err.pointer, "/next") && !strcmp(err.keyword, "$ref"),
			  "%s", err.text);
		CHECK(validate(s, "{\"maybe\":\"s\"}", &err) == 0);
		CHECK(validate(s, "{\"maybe\":1}", &err) == -EINVAL &&
		      strstr(err.text, "unresolved reference to schema c ") != NULL);
		CHECK(validate(s, "{\"never\":1}", &err) == -EINVAL &&
		      strstr(err.text, "unresolved reference to schema c ") != NULL);
	}
	stash_schema_free(s);

	/* Once b is there, mutual references resolve: a -> b -> a. */
	s = NULL;
	rc = stash_schema_compile(doc, "a", "stashfs:///schemas/a", store_loader, (void *)store,
				  &opts, &s, &err);
	CHECK_MSG(rc == 0, "%s", err.text);
	if (rc == 0) {
		CHECK(validate(s, "{\"next\":{\"id\":1,\"a\":{\"next\":{\"id\":2}}}}", &err) == 0);
		CHECK(validate(s, "{\"next\":{\"id\":1,\"a\":{\"next\":{}}}}", &err) == -EINVAL &&
		      strstr(err.text, "/next/a/next: required property \"id\"") != NULL);
	}
	stash_schema_free(s);
	json_decref(doc);
}

/* Messages quote numbers as the document wrote them. */
static void test_numbers_quoted_as_written(void)
{
	static const char text[] = "{\"a\":1E+2,\"b\":-0,\"c\":0.50}";
	struct stash_schema *s = NULL;
	struct stash_error err;
	json_t *doc = stash_json_parse(text, sizeof(text) - 1, &err);
	int rc = compile("{\"properties\":{\"a\":{\"minimum\":200}}}", NULL, &s, &err);

	CHECK(rc == 0 && doc);
	if (rc == 0 && doc) {
		CHECK(stash_schema_validate(s, doc, &err) == -EINVAL);
		CHECK_MSG(strstr(err.text, "/a: 1E+2 is less than the minimum 200") != NULL, "%s",
			  err.text);
	}
	stash_schema_free(s);
	json_decref(doc);
}

static void test_doc_is_copied(void)
{
	struct stash_schema *s;
	struct stash_error err;
	json_t *doc = J("{\"properties\":{\"a\":{\"enum\":[1,2]}}}");

	CHECK(stash_schema_compile(doc, "x", NULL, NULL, NULL, NULL, &s, &err) == 0);
	json_object_clear(doc);
	json_decref(doc);
	CHECK(validate(s, "{\"a\":2}", &err) == 0);
	CHECK(validate(s, "{\"a\":3}", &err) == -EINVAL);
	stash_schema_free(s);
}

static void test_format(void)
{
	struct stash_schema_options opts = { .format_assert = 1 };
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"format\":\"date\"}", NULL, &s, &err) == 0);
	CHECK(validate(s, "\"not a date\"", &err) == 0);
	stash_schema_free(s);
	CHECK(compile("{\"format\":\"date\"}", &opts, &s, &err) == 0);
	CHECK(validate(s, "\"2024-02-29\"", &err) == 0);
	CHECK(validate(s, "\"2023-02-29\"", &err) == -EINVAL && !strcmp(err.keyword, "format"));
	stash_schema_free(s);
}

static void test_unevaluated(void)
{
	struct stash_schema *s;
	struct stash_error err;

	CHECK(compile("{\"allOf\":[{\"properties\":{\"a\":true}}],"
		      "\"anyOf\":[{\"properties\":{\"b\":true}},{\"required\":[\"zz\"]}],"
		      "\"unevaluatedProperties\":false}", NULL, &s, &err) == 0);
	CHECK(validate(s, "{\"a\":1,\"b\":2}", &err) == 0);
	CHECK(validate(s, "{\"a\":1,\"c\":2}", &err) == -EINVAL);
	CHECK(!strcmp(err.keyword, "unevaluatedProperties"));
	CHECK(!strcmp(err.pointer, "/c"));
	stash_schema_free(s);
}

struct thread_arg {
	const struct stash_schema *s;
	int failures;
};

static void *worker(void *p)
{
	struct thread_arg *a = p;
	json_t *good = J("{\"name\":\"x\",\"tags\":[\"a\",\"b\"]}");
	json_t *bad = J("{\"name\":\"x\",\"tags\":[\"a\",\"B!\"]}");
	struct stash_error err;
	int i;

	for (i = 0; i < 20000; i++) {
		if (stash_schema_validate(a->s, good, &err) != 0)
			a->failures++;
		if (stash_schema_validate(a->s, bad, &err) != -EINVAL ||
		    strcmp(err.pointer, "/tags/1"))
			a->failures++;
	}
	json_decref(good);
	json_decref(bad);
	return NULL;
}

static void test_threads(void)
{
	struct thread_arg args[4];
	pthread_t th[4];
	struct stash_schema *s;
	struct stash_error err;
	int i;

	CHECK(compile("{\"properties\":{\"tags\":{\"items\":{\"pattern\":\"^[a-z]+$\"}}},"
		      "\"unevaluatedProperties\":{\"type\":\"string\"}}", NULL, &s, &err) == 0);
	for (i = 0; i < 4; i++) {
		args[i].s = s;
		args[i].failures = 0;
		pthread_create(&th[i], NULL, worker, &args[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(args[i].failures == 0);
	}
	stash_schema_free(s);
}

int main(void)
{
	test_error_message();
	test_pointer_escaping();
	test_invalid_schemas();
	test_ref_loops();
	test_depth_limit();
	test_step_limit();
	test_hostile_regex();
	test_schema_size_limit();
	test_ecma_regex();
	test_numbers_and_strings();
	test_loader();
	test_missing_deferred();
	test_numbers_quoted_as_written();
	test_doc_is_copied();
	test_format();
	test_unevaluated();
	test_threads();
	stash_schema_free(NULL);
	return check_done();
}
