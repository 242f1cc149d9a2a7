// SPDX-License-Identifier: MIT
/*
 * test_json.c - unit tests of core/json.c, json_text.c and json_merge.c:
 * the merge cases in $STASHFS_TEST_DATA/merge/<case>/ (see the README there),
 * then direct tests of progress, the incremental scanner, error locations, the printer and a
 * differential run against jansson's own parser.
 */
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stashfs/json.h"
#include "check.h"

/* Whole file, NUL-terminated; NULL if it does not exist. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[2 * PATH_MAX];
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	do {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap + 1);
			if (!buf) {
				fclose(f);
				return NULL;
			}
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static bool only_ws(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strchr(" \t\r\n", p[i]))
			return false;
	return true;
}

/* Every proper prefix of a valid text must be a valid prefix (0), or
 * complete when all that is missing is whitespace. */
static void check_prefixes(const char *name, const char *p, size_t n)
{
	size_t k;
	int r;

	for (k = 0; k < n; k++) {
		r = stash_json_progress(p, k, NULL);
		if (r == 0 || (r == 1 && only_ws(p + k, n - k)))
			continue;
		CHECK_MSG(0, "%s: prefix of %zu bytes gives %d", name, k, r);
		return;
	}
	CHECK_MSG(stash_json_progress(p, n, NULL) == 1, "%s: whole patch not complete", name);
}

static void run_case(const char *root, const char *name)
{
	char dir[PATH_MAX + NAME_MAX + 2];
	struct stash_error err;
	char *docbuf, *patchbuf, *expected, *want, *out = NULL, *again = NULL;
	size_t doclen = 0, patchlen = 0, explen = 0, wantlen = 0, outlen = 0, againlen = 0;
	json_t *doc = NULL, *patch = NULL, *reread = NULL;
	int ret = 0;
	bool failed;

	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	docbuf = slurp(dir, "doc.json", &doclen);
	patchbuf = slurp(dir, "patch.json", &patchlen);
	expected = slurp(dir, "expected.json", &explen);
	want = slurp(dir, "error.txt", &wantlen);
	stash_error_clear(&err);

	if (!patchbuf || !expected == !want) {
		CHECK_MSG(0, "%s: needs patch.json and one of expected.json, error.txt", name);
		goto out;
	}
	while (want && wantlen && want[wantlen - 1] == '\n')
		want[--wantlen] = '\0';

	/* A missing or empty stash counts as {} (DESIGN 2.2). */
	if (!docbuf || only_ws(docbuf, doclen))
		doc = json_object();
	else
		doc = stash_json_parse(docbuf, doclen, &err);
	if (doc) {
		patch = stash_json_parse(patchbuf, patchlen, &err);
		if (patch)
			ret = stash_merge_apply(doc, patch, &err);
	}
	failed = !doc || !patch || ret < 0;

	if (want) {
		CHECK_MSG(failed && err.code == EINVAL && strstr(err.text, want),
			  "%s: want an EINVAL error containing '%s', got %s '%s'", name, want,
			  failed ? "error" : "success", err.text);
		goto out;
	}

	CHECK_MSG(!failed, "%s: unexpected error: %s", name, err.text);
	if (failed)
		goto out;
	out = stash_json_dump(doc, 2, &outlen);
	CHECK_MSG(out && outlen == explen && memcmp(out, expected, explen) == 0,
		  "%s: got\n%s\nwant\n%s", name, out ? out : "(null)", expected);

	/* What we print must read back to the same text. */
	reread = stash_json_parse(expected, explen, &err);
	again = reread ? stash_json_dump(reread, 2, &againlen) : NULL;
	CHECK_MSG(again && againlen == explen && memcmp(again, expected, explen) == 0,
		  "%s: expected.json does not round-trip: %s", name, err.text);

	check_prefixes(name, patchbuf, patchlen);
out:
	json_decref(doc);
	json_decref(patch);
	json_decref(reread);
	free(docbuf);
	free(patchbuf);
	free(expected);
	free(want);
	free(out);
	free(again);
}

static int is_case(const struct dirent *d)
{
	/* Case names have no dots; README.md and friends do. */
	return d->d_name[0] != '.' &&
	       (d->d_type == DT_DIR || (d->d_type == DT_UNKNOWN && !strchr(d->d_name, '.')));
}

static void run_cases(void)
{
	const char *data = getenv("STASHFS_TEST_DATA");
	char root[PATH_MAX];
	struct dirent **list;
	int i, n;

	snprintf(root, sizeof(root), "%s/merge", data ? data : "tests/data");
	n = scandir(root, &list, is_case, alphasort);
	CHECK_MSG(n >= 40, "%s: found %d cases (set STASHFS_TEST_DATA)", root, n);
	for (i = 0; i < n; i++) {
		run_case(root, list[i]->d_name);
		free(list[i]);
	}
	if (n >= 0)
		free(list);
}

struct progress_case {
	const char *text;
	int want;
};

static void test_progress(void)
{
	static const struct progress_case cases[] = {
		{ "", 0 },
		{ " \n\t", 0 },
		{ "{", 0 },
		{ "{\"a\": 1", 0 },
		{ "{\"a\": 1}", 1 },
		{ "{\"a\": 1}\n\n", 1 },
		{ "{\"a\" 1", -EINVAL },
		{ "}", -EINVAL },
		{ "{\"a\":1} x", -EINVAL },
		{ "{} {}", -EINVAL },
		{ "{\"a\":1}}", -EINVAL },
		{ "{\"a\":[1}", -EINVAL },
		{ "[1,]", -EINVAL },
		{ "{\"a\":\"}{[\\\"", 0 },          /* braces and \" inside a string */
		{ "{\"a\":\"}{[\\\"\"}", 1 },
		{ "{\"a\":\"\xc3", 0 },              /* UTF-8 cut after its first byte */
		{ "{\"a\":\"\xf0\x9f\x98", 0 },
		{ "{\"a\":\"\xf0\x9f\x98\x80\"}", 1 },
		{ "{\"a\":\"\xc3(", -EINVAL },
		{ "{\"a\":\"\xff", -EINVAL },
		{ "{\"a\":\"\xe0\x80", -EINVAL },    /* overlong */
		{ "{\"a\":\"\\", 0 },                /* cut inside escapes */
		{ "{\"a\":\"\\u00", 0 },
		{ "{\"a\":\"\\ud83d", 0 },
		{ "{\"a\":\"\\ud83d\\", 0 },
		{ "{\"a\":\"\\ud83d\\u", 0 },
		{ "{\"a\":\"\\ud83d\\ude0", 0 },
		{ "{\"a\":\"\\ud83d\\ude00\"}", 1 },
		{ "{\"a\":\"\\ud83dx", -EINVAL },
		{ "{\"a\":\"\\ud83d\\n", -EINVAL },
		{ "{\"a\":\"\\q", -EINVAL },
		{ "{\"a\":\"\\u12g", -EINVAL },
		{ "{\"a\":\"x\ny\"}", -EINVAL },
		{ "{\"a\":tr", 0 },
		{ "{\"a\":trx", -EINVAL },
		{ "{\"a\":-", 0 },
		{ "{\"a\":1.", 0 },
		{ "{\"a\":1e", 0 },
		{ "{\"a\":1e+", 0 },
		{ "{\"a\":01", -EINVAL },
		{ "{\"a\":-x", -EINVAL },
		{ "{\"a\":1,\"a\":2}", -EINVAL },     /* complete, but duplicate keys */
		{ "{\"a\":1,\"a\":2", 0 },            /* seen at close */
		{ "{\"a\":123456789012345678901,", -EINVAL },
		{ "\xef\xbb\xbf{}", -EINVAL },        /* a BOM is not JSON */
		{ "123", 1 },
		{ "-", 0 },
		{ "99999999999999999999", 0 },        /* ".5" would still make it valid */
		{ "99999999999999999999.5", 1 },
		{ "1e400", -EINVAL },
		{ "1e-400", -EINVAL },
		{ "\"abc", 0 },
		{ "nul", 0 },
		{ "null", 1 },
		{ "[[[[", 0 },
	};
	struct stash_error err;
	size_t i;
	int r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		stash_error_clear(&err);
		r = stash_json_progress(cases[i].text, strlen(cases[i].text), &err);
		CHECK_MSG(r == cases[i].want, "progress(\"%s\") = %d, want %d (%s)",
			  cases[i].text, r, cases[i].want, err.text);
		if (r == -EINVAL)
			CHECK_MSG(err.code == EINVAL && strstr(err.text, "invalid JSON at line"),
				  "progress(\"%s\"): error text '%s'", cases[i].text, err.text);
	}
}

static void test_scan_feed(void)
{
	static const char doc[] = "{\"k\": [1.5, \"\xc3\xa9\\u00e9\", true], \"n\": null}\n";
	struct stash_json_scan s;
	struct stash_error err;
	size_t i;
	int r = 0, bad = 0;

	/* One byte at a time: 0 until the closing brace, then 1. */
	stash_json_scan_init(&s);
	for (i = 0; i < sizeof(doc) - 1; i++) {
		r = stash_json_scan_feed(&s, doc + i, 1, &err);
		if (r != (i >= sizeof(doc) - 3 ? 1 : 0))
			bad++;
	}
	CHECK_MSG(bad == 0 && r == 1, "byte-by-byte feed: %d wrong statuses", bad);

	/* Numbers split across chunks are still range-checked. */
	stash_json_scan_init(&s);
	CHECK(stash_json_scan_feed(&s, "[1234567890123456789", 20, &err) == 0);
	CHECK(stash_json_scan_feed(&s, "0]", 2, &err) == -EINVAL &&
	      strstr(err.text, "12345678901234567890 does not fit"));

	stash_json_scan_init(&s);
	CHECK(stash_json_scan_feed(&s, "[1e3", 4, &err) == 0);
	CHECK(stash_json_scan_feed(&s, "09]", 3, &err) == -EINVAL &&
	      strstr(err.text, "1e309 is too large"));

	/* Once refused, always refused. */
	CHECK(stash_json_scan_feed(&s, "", 0, &err) == -EINVAL);
}

struct location_case {
	const char *text;
	const char *want;
};

static void test_locations(void)
{
	static const struct location_case cases[] = {
		{ "{\"a\" 1}", "invalid JSON at line 1, column 6 (byte 5): expected ':' after the key, found '1'" },
		{ "{\n \"\xc3\xa9\": x}", "line 2, column 7 (byte 9): expected a value, found 'x'" },
		{ "{\"a\":1,\"a\":2}", "line 1, column 8 (byte 7): duplicate key \"a\"" },
		{ "{\"a\\\\\":1,\"a\\\\\":2}", "line 1, column 10 (byte 9): duplicate key \"a\\\\\"" },
		{ "{\"a\": 123456789012345678901234}",
		  "line 1, column 7 (byte 6): integer 123456789012345678901234 does not fit in 64 bits; store it as a string" },
		{ "[\"x\\ud800y\"]", "line 1, column 4 (byte 3): unpaired UTF-16 surrogate \\uD800" },
		{ "", "line 1, column 1 (byte 0): unexpected end of input, expected a JSON value" },
		{ "{\"a\": \"b", "line 1, column 9 (byte 8): unexpected end of input, expected the end of a string" },
		{ "[\"\xe2\x82\xac\xff\"]", "line 1, column 4 (byte 5): invalid UTF-8: non-ASCII byte 0xff cannot start a character" },
		{ "{\"a\":1} 2", "line 1, column 9 (byte 8): unexpected '2' after the end of the value" },
	};
	struct stash_error err;
	json_t *v;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		stash_error_clear(&err);
		v = stash_json_parse(cases[i].text, strlen(cases[i].text), &err);
		CHECK_MSG(!v && err.code == EINVAL && strstr(err.text, cases[i].want),
			  "parse(\"%s\"): got '%s', want '%s'", cases[i].text, err.text,
			  cases[i].want);
		json_decref(v);
	}
}

static void check_dump(const char *in, int indent, const char *want)
{
	struct stash_error err;
	json_t *v;
	char *out = NULL;
	size_t len = 0;

	v = stash_json_parse(in, strlen(in), &err);
	if (v)
		out = stash_json_dump(v, indent, &len);
	CHECK_MSG(out && len == strlen(want) && strcmp(out, want) == 0,
		  "dump(%s, %d): got '%s', want '%s'", in, indent, out ? out : err.text, want);
	free(out);
	json_decref(v);
}

static void test_dump(void)
{
	/* Parsed numbers print as written, whatever the printer would make of
	 * their value. */
	static const char *const as_written[] = {
		"0.1", "1.0", "1e-7", "-0.0", "1.5e300", "100.0", "123456789.0", "2.5E+2",
		"0.30000000000000004", "5e-324", "1.7976931348623157e308", "3.14159", "-2.5",
		"1e16", "0.1e1", "-0", "0", "1E+2", "3.141592653589793238462643", "0.50",
		"1.0e0", "-0.0e-0", "0.00001", "0.0001", "1234567890123456.5", "1e-07",
		"1.5e+300", "250.0", "-9223372036854775808", "9223372036854775807",
		"123456789012345.0", "0.000000000000000000000000000001",
		"100000000000000000000000000000000000000000000000000.0",
	};
	/* Values made in code print in the shortest form that reads back. */
	static const struct { double d; const char *want; } made[] = {
		{ 250.0, "250.0\n" }, { 1e16, "1e+16\n" }, { -0.0, "-0.0\n" },
		{ 1e-7, "1e-07\n" }, { 1.7976931348623157e308, "1.7976931348623157e+308\n" },
		{ 0.1, "0.1\n" },
	};
	char want[256];
	char *out;
	size_t len;
	json_t *v;
	const char *nested = "{\"a\":1,\"b\":[1,2],\"c\":{},\"d\":[],\"e\":{\"x\":[null,{\"y\":\"z\"}]}}";
	size_t i;

	check_dump(nested, 0,
		   "{\"a\":1,\"b\":[1,2],\"c\":{},\"d\":[],\"e\":{\"x\":[null,{\"y\":\"z\"}]}}\n");
	check_dump(nested, 4,
		   "{\n    \"a\": 1,\n    \"b\": [\n        1,\n        2\n    ],\n"
		   "    \"c\": {},\n    \"d\": [],\n    \"e\": {\n        \"x\": [\n"
		   "            null,\n            {\n                \"y\": \"z\"\n"
		   "            }\n        ]\n    }\n}\n");
	check_dump("  {}  ", 2, "{}\n");
	check_dump("[]", 0, "[]\n");
	check_dump("\"\\u00e9\\t\\u0000\"", 2, "\"\xc3\xa9\\t\\u0000\"\n");
	check_dump("[true,false,null]", -1, "[true,false,null]\n");
	for (i = 0; i < sizeof(as_written) / sizeof(as_written[0]); i++) {
		snprintf(want, sizeof(want), "%s\n", as_written[i]);
		check_dump(as_written[i], 0, want);
		snprintf(want, sizeof(want), "[%s]", as_written[i]);
		snprintf(want + 128, sizeof(want) - 128, "[\n  %s\n]\n", as_written[i]);
		check_dump(want, 2, want + 128);
	}
	for (i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		v = json_real(made[i].d);
		out = stash_json_dump(v, 0, &len);
		CHECK_MSG(out && strcmp(out, made[i].want) == 0, "json_real(%.17g) printed as %s",
			  made[i].d, out ? out : "(null)");
		free(out);
		json_decref(v);
	}
	v = json_integer(0);
	out = stash_json_dump(v, 0, &len);
	CHECK(out && strcmp(out, "0\n") == 0);
	free(out);
	json_decref(v);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/*
 * Hard cases for the real printer, by bit pattern: the extremes, subnormals,
 * powers of two (a wider gap above than below), integers past 2^53, where
 * positional turns to exponent, and values whose shortest text is 16 or 17
 * digits.  Each must print as exactly the shortest text that reads back
 * (what Python's repr prints, the reference here), and read back bit for bit.
 */
static void test_real_hard_cases(void)
{
	static const struct { uint64_t bits; const char *want; } cases[] = {
		{ 0x0000000000000001ull, "5e-324" },                   /* least subnormal */
		{ 0x8000000000000001ull, "-5e-324" },
		{ 0x0000000000000002ull, "1e-323" },
		{ 0x00005c0ab9347ed7ull, "5e-310" },
		{ 0x000fffffffffffffull, "2.225073858507201e-308" },   /* greatest subnormal */
		{ 0x0010000000000000ull, "2.2250738585072014e-308" },  /* least normal */
		{ 0x7fefffffffffffffull, "1.7976931348623157e+308" },  /* greatest */
		{ 0xffefffffffffffffull, "-1.7976931348623157e+308" },
		{ 0x7fe1ccf385ebc8a0ull, "1e+308" },
		{ 0x7fe0000000000000ull, "8.98846567431158e+307" },    /* 2^1023 */
		{ 0x3d30000000000000ull, "5.684341886080802e-14" },    /* 2^-44 */
		{ 0x3eb0000000000000ull, "9.5367431640625e-07" },      /* 2^-20 */
		{ 0x3fb999999999999aull, "0.1" },
		{ 0x3fc999999999999aull, "0.2" },
		{ 0x3fd3333333333333ull, "0.3" },
		{ 0x3fd3333333333334ull, "0.30000000000000004" },      /* 0.1 + 0.2 */
		{ 0x3fd5555555555555ull, "0.3333333333333333" },
		{ 0x3fe5555555555555ull, "0.6666666666666666" },
		{ 0x4011666666666666ull, "4.35" },
		{ 0x433fffffffffffffull, "9007199254740991.0" },       /* 2^53 - 1 */
		{ 0x4340000000000000ull, "9007199254740992.0" },       /* 2^53, and 2^53 + 1 */
		{ 0x4340000000000001ull, "9007199254740994.0" },       /* 2^53 + 2 */
		{ 0x4341c37937e07fffull, "9999999999999998.0" },
		{ 0x4341c37937e08000ull, "1e+16" },
		{ 0x430c6bf526340000ull, "1000000000000000.0" },
		{ 0x437b69b4ba630f35ull, "1.2345678901234568e+17" },
		{ 0x43e0000000000000ull, "9.223372036854776e+18" },    /* 2^63 */
		{ 0x43f0000000000000ull, "1.8446744073709552e+19" },   /* 2^64 */
		{ 0x444b1ae4d6e2ef50ull, "1e+21" },
		{ 0x4480f0cf064dd592ull, "1e+22" },
		{ 0x44b52d02c7e14af6ull, "1e+23" },                    /* not 9.999999999999999e+22 */
		{ 0x447c7e83209e90b2ull, "8.41e+21" },
		{ 0x3810000000000000ull, "1.1754943508222875e-38" },
		{ 0x47efffffe0000000ull, "3.4028234663852886e+38" },
		{ 0x3ee4f8b588e368f1ull, "1e-05" },
		{ 0x3f1a36e2eb1c432dull, "0.0001" },
		{ 0x3e7ad7f29abcaf48ull, "1e-07" },
		{ 0x4059000000000000ull, "100.0" },
		{ 0x0000000000000000ull, "0.0" },
		{ 0x8000000000000000ull, "-0.0" },
	};
	char want[64];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double d, back;
		json_t *v;
		char *out;

		memcpy(&d, &cases[i].bits, sizeof(d));
		v = json_real(d);
		out = stash_json_dump(v, 0, &len);
		snprintf(want, sizeof(want), "%s\n", cases[i].want);
		CHECK_MSG(out && !strcmp(out, want), "%016llx printed as %s, not %s",
			  (unsigned long long)cases[i].bits, out ? out : "(null)", cases[i].want);
		back = out ? strtod(out, NULL) : 1;
		CHECK_MSG(out && !memcmp(&back, &d, sizeof(d)), "%s did not read back as %016llx",
			  out ? out : "(null)", (unsigned long long)cases[i].bits);
		free(out);
		json_decref(v);
	}
}

/* Shortest form must still read back bit for bit, for any finite double. */
static void test_real_roundtrip(void)
{
	int i, bad = 0;
	double d, back;
	uint64_t bits;
	json_t *v;
	char *out;
	size_t len;

	for (i = 0; i < 20000; i++) {
		bits = rng();
		memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))
			continue;
		v = json_real(d);
		out = stash_json_dump(v, 0, &len);
		back = out ? strtod(out, NULL) : 1;
		if (!out || memcmp(&back, &d, sizeof(d)) != 0 || !strpbrk(out, ".e")) {
			if (!bad++)
				fprintf(stderr, "real %.17g printed as %s", d, out ? out : "(null)\n");
		}
		free(out);
		json_decref(v);
	}
	CHECK_MSG(bad == 0, "%d doubles did not round-trip", bad);
}

static void test_merge_direct(void)
{
	struct stash_error err;
	json_t *doc = json_object(), *patch, *arr = json_array(), *v;
	char key[16], *out;
	const char *k;
	size_t len;
	int i, pos = -1;

	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "key%03d", (i * 37) % 200);
		json_object_set_new(doc, key, json_integer(i));
	}
	/* Replacing a key after many insertions (and table growth) keeps its
	 * place; jansson 2.14 does this itself. */
	patch = json_pack("{s:s, s:n, s:i}", "key074", "replaced", "key000", "zz_new", 1);
	CHECK(stash_merge_apply(doc, patch, &err) == 0);
	i = 0;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "key074") == 0)
			pos = i;
		i++;
	}
	/* key074 was inserted third; key000, first, is gone. */
	CHECK_MSG(pos == 1, "key074 is at position %d", pos);
	CHECK(json_object_size(doc) == 200);
	CHECK(json_object_get(doc, "key000") == NULL);
	out = stash_json_dump(doc, 0, &len);
	k = "\"zz_new\":1}\n";
	CHECK(out && len > strlen(k) && strcmp(out + len - strlen(k), k) == 0);
	free(out);

	CHECK(stash_merge_apply(doc, arr, &err) == -EINVAL &&
	      strcmp(err.text, "patch is not a JSON object (it is an array)") == 0);
	CHECK(stash_merge_apply(arr, patch, &err) == -EINVAL &&
	      strcmp(err.text, "the stash is not a JSON object (it is an array)") == 0);

	/* Merging an object into itself changes nothing but must not crash. */
	CHECK(stash_merge_apply(patch, patch, &err) == 0 && json_object_size(patch) == 2);

	json_decref(doc);
	json_decref(patch);
	json_decref(arr);
}

/*
 * Property: merging never changes a value's text.  Random documents and
 * patches, written compactly with random spaces and numbers in every form
 * JSON allows; the merged document must be exactly the source text of each
 * surviving value (the document's for untouched keys, the patch's for
 * replaced and new ones), laid out again by reindent() below, which knows
 * nothing of numbers.  Seeded, so a failure repeats.
 */
struct text {
	char *p;
	size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		t->cap = (t->len + n + 1) * 2;
		t->p = realloc(t->p, t->cap);
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void puts_(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

static void digits(struct text *t, unsigned n, bool lead_nonzero)
{
	char c;

	while (n--) {
		c = (char)('0' + rng() % 10);
		if (lead_nonzero && c == '0')
			c = '1';
		lead_nonzero = false;
		put(t, &c, 1);
	}
}

static void gen_number(struct text *t)
{
	bool real = rng() % 3, frac = real && rng() % 3, exp = real && (!frac || rng() % 2);
	static const char *const marks[] = { "e", "E", "e+", "E-", "e-", "E+" };

	if (rng() % 2)
		puts_(t, "-");
	if (rng() % 4 == 0)
		puts_(t, "0");
	else
		digits(t, 1 + rng() % (real ? 25 : 18), true);
	if (frac) {
		puts_(t, ".");
		digits(t, 1 + rng() % 25, false);
	}
	if (exp) {
		puts_(t, marks[rng() % 6]);
		/* At most 199 either way: 25 digits more stay inside a double. */
		if (rng() % 3 == 0)
			puts_(t, "1");
		digits(t, 1 + rng() % 2, false);
	}
}

/* Strings only in the printer's own spelling; numbers are what is tested. */
static void gen_string(struct text *t)
{
	static const char *const parts[] = { "a", "b", "Z", "1", "-0", "1E+2", " ", "\\n",
					     "\\\"", "\\\\", "\xc3\xa9", "\\u0001", ":" };
	unsigned n = rng() % 6;

	puts_(t, "\"");
	while (n--)
		puts_(t, parts[rng() % (sizeof(parts) / sizeof(parts[0]))]);
	puts_(t, "\"");
}

static void gen_space(struct text *t)
{
	static const char *const ws[] = { "", "", "", " ", "\n", "\t ", "\r\n  " };

	puts_(t, ws[rng() % (sizeof(ws) / sizeof(ws[0]))]);
}

static void gen_text_value(struct text *t, int depth)
{
	unsigned kind = rng() % (depth < 3 ? 8 : 5), n, i;
	char key[16];

	switch (kind) {
	case 0: case 1: case 2:
		gen_number(t);
		return;
	case 3:
		gen_string(t);
		return;
	case 4:
		puts_(t, (const char *[]){ "true", "false", "null" }[rng() % 3]);
		return;
	case 5: case 6:
		puts_(t, "[");
		n = rng() % 4;
		for (i = 0; i < n; i++) {
			if (i)
				puts_(t, ",");
			gen_space(t);
			gen_text_value(t, depth + 1);
			gen_space(t);
		}
		puts_(t, "]");
		return;
	default:
		puts_(t, "{");
		n = rng() % 4;
		for (i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "%s\"n%u\":", i ? "," : "", i);
			puts_(t, key);
			gen_space(t);
			gen_text_value(t, depth + 1);
		}
		puts_(t, "}");
		return;
	}
}

/* @src (one value, any spacing) laid out as the merge lays out a top-level
 * value: 2 spaces per level, starting at depth 1, empty containers as {} []. */
static void reindent(struct text *out, const char *src, size_t n)
{
	unsigned depth = 1, k;
	size_t i = 0, j;

	while (i < n) {
		char c = src[i];

		if (strchr(" \t\r\n", c)) {
			i++;
			continue;
		}
		if (c == '"') {
			for (j = i + 1; src[j] != '"'; j++)
				if (src[j] == '\\')
					j++;
			put(out, src + i, j + 1 - i);
			i = j + 1;
			continue;
		}
		if (c == '{' || c == '[') {
			for (j = i + 1; j < n && strchr(" \t\r\n", src[j]); j++)
				;
			if (src[j] == (c == '{' ? '}' : ']')) {
				put(out, c == '{' ? "{}" : "[]", 2);
				i = j + 1;
				continue;
			}
			put(out, &c, 1);
			depth++;
		} else if (c == '}' || c == ']') {
			depth--;
			puts_(out, "\n");
			for (k = 0; k < depth; k++)
				puts_(out, "  ");
			put(out, &c, 1);
			i++;
			continue;
		} else if (c == ':') {
			puts_(out, ": ");
			i++;
			continue;
		} else if (c != ',') {
			put(out, &c, 1);
			i++;
			continue;
		} else {
			put(out, &c, 1);
		}
		/* After '{', '[' or ',': a new line. */
		puts_(out, "\n");
		for (k = 0; k < depth; k++)
			puts_(out, "  ");
		i++;
	}
}

#define PROP_KEYS 12

static void test_merge_keeps_text(void)
{
	struct text doc = { 0 }, patch = { 0 }, want = { 0 };
	size_t dspan[PROP_KEYS][2], pspan[PROP_KEYS][2];
	bool in_doc[PROP_KEYS], in_patch[PROP_KEYS], deleted[PROP_KEYS];
	unsigned order[2 * PROP_KEYS], norder, round, k, i, bad = 0;
	struct stash_error err;
	json_t *d, *p;
	char *out, key[24];
	size_t len;

	rng_state = 0x5eed15c0ffee1234ull;
	for (round = 0; round < 2000; round++) {
		doc.len = patch.len = want.len = 0;
		norder = 0;
		puts_(&doc, "{");
		puts_(&patch, "{");
		for (k = 0; k < PROP_KEYS; k++) {
			in_doc[k] = rng() % 3 != 0;
			in_patch[k] = rng() % 3 == 0;
			deleted[k] = in_patch[k] && rng() % 4 == 0;
		}
		/* Document keys in a random order of their own. */
		for (i = 0; i < PROP_KEYS; i++) {
			k = (i * 7 + round) % PROP_KEYS;
			if (!in_doc[k])
				continue;
			snprintf(key, sizeof(key), "%s\"k%u\":", doc.len > 1 ? "," : "", k);
			puts_(&doc, key);
			gen_space(&doc);
			dspan[k][0] = doc.len;
			gen_text_value(&doc, 0);
			dspan[k][1] = doc.len;
			gen_space(&doc);
			order[norder++] = k;
		}
		for (k = 0; k < PROP_KEYS; k++) {
			if (!in_patch[k])
				continue;
			snprintf(key, sizeof(key), "%s\"k%u\":", patch.len > 1 ? "," : "", k);
			puts_(&patch, key);
			pspan[k][0] = patch.len;
			if (deleted[k])
				puts_(&patch, "null");
			else
				gen_text_value(&patch, 0);
			pspan[k][1] = patch.len;
			/* A null generated as a value deletes too. */
			if (strcmp(patch.p + pspan[k][0], "null") == 0)
				deleted[k] = true;
			if (!in_doc[k] && !deleted[k])
				order[norder++] = k;
		}
		puts_(&doc, "}");
		puts_(&patch, "}");

		/* What the merge must print, from the texts alone. */
		puts_(&want, "{");
		for (i = 0; i < norder; i++) {
			k = order[i];
			if (deleted[k])
				continue;
			snprintf(key, sizeof(key), "%s\n  \"k%u\": ", want.len > 1 ? "," : "", k);
			puts_(&want, key);
			if (in_patch[k])
				reindent(&want, patch.p + pspan[k][0], pspan[k][1] - pspan[k][0]);
			else
				reindent(&want, doc.p + dspan[k][0], dspan[k][1] - dspan[k][0]);
		}
		puts_(&want, want.len > 1 ? "\n}\n" : "}\n");

		d = stash_json_parse(doc.p, doc.len, &err);
		p = d ? stash_json_parse(patch.p, patch.len, &err) : NULL;
		out = NULL;
		if (p && stash_merge_apply(d, p, &err) == 0)
			out = stash_json_dump(d, 2, &len);
		if (!out || len != want.len || memcmp(out, want.p, len) != 0) {
			if (!bad++)
				fprintf(stderr, "round %u: doc %s\npatch %s\ngot %s\nwant %s\n", round,
					doc.p, patch.p, out ? out : err.text, want.p);
		}
		free(out);
		json_decref(d);
		json_decref(p);
	}
	CHECK_MSG(bad == 0, "%u of 2000 merges changed a value's text", bad);
	free(doc.p);
	free(patch.p);
	free(want.p);
}

/* Threads parsing, merging and printing numbers kept as written at once:
 * the texts' table grows and drops dead entries under all of them. */
static void *number_worker(void *arg)
{
	long id = (long)arg, bad = 0;
	char text[128], want[160];
	json_t *doc = json_object(), *patch;
	char *out;
	size_t len;
	int i, n;

	for (i = 0; i < 3000; i++) {
		n = snprintf(text, sizeof(text), "{\"t%ld\":%ld.%d0e-0,\"z\":-0}", id, id, i);
		patch = stash_json_parse(text, (size_t)n, NULL);
		if (!patch || stash_merge_apply(doc, patch, NULL) < 0) {
			bad++;
		} else {
			snprintf(want, sizeof(want), "{\"t%ld\":%ld.%d0e-0,\"z\":-0}\n", id, id, i);
			out = stash_json_dump(doc, 0, &len);
			bad += !out || strcmp(out, want) != 0;
			free(out);
		}
		json_decref(patch);
	}
	json_decref(doc);
	return (void *)bad;
}

static void test_numbers_threads(void)
{
	pthread_t th[4];
	void *bad;
	long i, total = 0;

	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, number_worker, (void *)i);
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], &bad);
		total += (long)bad;
	}
	CHECK_MSG(total == 0, "%ld merges printed a number not as written", total);
}

static char *nest(int depth, const char *inner)
{
	size_t n = strlen(inner);
	char *p = malloc(2 * (size_t)depth + n + 1);

	memset(p, '[', depth);
	memcpy(p + depth, inner, n);
	memset(p + depth + n, ']', depth);
	p[2 * depth + n] = '\0';
	return p;
}

/* Our limit must be jansson's, whichever of the two notices first. */
static void test_depth(void)
{
	static const struct { int depth; const char *inner; bool ok; } cases[] = {
		{ STASH_JSON_MAX_DEPTH, "", true },
		{ STASH_JSON_MAX_DEPTH + 1, "", false },
		{ STASH_JSON_MAX_DEPTH - 1, "1", true },
		{ STASH_JSON_MAX_DEPTH, "1", false },
	};
	struct stash_error err;
	json_error_t je;
	json_t *v, *j;
	char *text, *out;
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		text = nest(cases[i].depth, cases[i].inner);
		v = stash_json_parse(text, strlen(text), &err);
		j = json_loads(text, JSON_DECODE_ANY, &je);
		CHECK_MSG(!v == !cases[i].ok && !j == !cases[i].ok, "depth %d%s: ours %s, jansson %s",
			  cases[i].depth, cases[i].inner, v ? "ok" : err.text, j ? "ok" : je.text);
		if (!v)
			CHECK(strstr(err.text, "nesting deeper than 2048 levels") != NULL);
		if (v) {
			out = stash_json_dump(v, 0, &len);
			CHECK(out && len == strlen(text) + 1 && memcmp(out, text, len - 1) == 0);
			free(out);
		}
		json_decref(v);
		json_decref(j);
		free(text);
	}
}

/* A random valid document, with random whitespace. */
static void gen_value(char *buf, size_t *n, size_t cap, int depth)
{
	static const char *const scalars[] = {
		"1", "-0.5", "1e5", "0", "-12", "2.5E-3", "true", "false", "null",
		"\"a\"", "\"\"", "\"\\u00e9\\\"\"", "\"\xc3\xa9\xe2\x82\xac\"",
		"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"", "\"{[,:\"",
		"123456789012345678",
	};
	static const char *const keys[] = { "\"a\"", "\"b\"", "\"c\"", "\"\xc3\xa9\"", "\"\\n\"" };
	int i, count = (int)(rng() % 4);
	const char *s;

#define PUT(str) do { s = (str); if (*n + strlen(s) < cap) { memcpy(buf + *n, s, strlen(s)); *n += strlen(s); } } while (0)
#define WS() do { if (rng() % 4 == 0) PUT(rng() % 2 ? " " : "\n\t"); } while (0)
	WS();
	switch (depth < 3 ? rng() % 3 : 2) {
	case 0:
		PUT("{");
		/* distinct keys: duplicates are a separate question */
		for (i = 0; i < count; i++) {
			if (i)
				PUT(",");
			WS();
			PUT(keys[i]);
			WS();
			PUT(":");
			gen_value(buf, n, cap, depth + 1);
		}
		WS();
		PUT("}");
		break;
	case 1:
		PUT("[");
		for (i = 0; i < count; i++) {
			if (i)
				PUT(",");
			gen_value(buf, n, cap, depth + 1);
		}
		WS();
		PUT("]");
		break;
	default:
		PUT(scalars[rng() % (sizeof(scalars) / sizeof(scalars[0]))]);
		break;
	}
	WS();
#undef PUT
#undef WS
}

/*
 * Random documents, some with a byte or two changed: our parser must accept
 * exactly what jansson accepts (bar the underflow we refuse on purpose), a
 * refusal at write() must mean the parse fails too, and no prefix of a
 * valid text may be refused.
 */
static void test_differential(void)
{
	static const char noise[] = "{}[],:\"\\ 0123456789.eE+-tfnulx\n\t\x01\x7f\xc3\xa9\xff\xed\xf0";
	char buf[512];
	size_t n, k;
	int i, m, p, disagree = 0, unsound = 0, prefix = 0, valid = 0;
	struct stash_error err;
	json_error_t je;
	json_t *v, *j;

	for (i = 0; i < 30000; i++) {
		n = 0;
		gen_value(buf, &n, sizeof(buf) - 4, 0);
		for (m = (int)(rng() % 4); m > 1 && n > 0; m--) {
			k = rng() % n;
			switch (rng() % 3) {
			case 0:
				buf[k] = noise[rng() % (sizeof(noise) - 1)];
				break;
			case 1:
				memmove(buf + k, buf + k + 1, n - k - 1);
				n--;
				break;
			default:
				memmove(buf + k + 1, buf + k, n - k);
				buf[k] = noise[rng() % (sizeof(noise) - 1)];
				n++;
				break;
			}
		}

		v = stash_json_parse(buf, n, &err);
		j = json_loadb(buf, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
		if (!v != !j && !(j && strstr(err.text, "too small"))) {
			if (!disagree++)
				fprintf(stderr, "disagree on '%.*s': ours %s, jansson %s\n", (int)n, buf,
					v ? "ok" : err.text, j ? "ok" : je.text);
		}
		p = stash_json_progress(buf, n, NULL);
		if ((p == -EINVAL && v) || (v && p != 1)) {
			if (!unsound++)
				fprintf(stderr, "progress %d but parse %s on '%.*s'\n", p,
					v ? "ok" : "fails", (int)n, buf);
		}
		if (v) {
			valid++;
			for (k = 0; k < n; k++) {
				/* 1 is fine too: "-1" is complete, yet "-12" goes on */
				p = stash_json_progress(buf, k, NULL);
				if (p >= 0)
					continue;
				if (!prefix++)
					fprintf(stderr, "prefix %zu of '%.*s' gives %d\n", k, (int)n, buf, p);
				break;
			}
		}
		json_decref(v);
		json_decref(j);
	}
	CHECK_MSG(disagree == 0, "%d texts judged differently from jansson", disagree);
	CHECK_MSG(unsound == 0, "%d texts where progress and parse disagree", unsound);
	CHECK_MSG(prefix == 0, "%d valid texts with a refused prefix", prefix);
	CHECK_MSG(valid > 5000, "only %d valid texts generated", valid);
}

int main(void)
{
	run_cases();
	test_progress();
	test_scan_feed();
	test_locations();
	test_dump();
	test_real_hard_cases();
	test_real_roundtrip();
	test_merge_direct();
	test_merge_keeps_text();
	test_numbers_threads();
	test_depth();
	test_differential();
	return check_done();
}
