// SPDX-License-Identifier: MIT
/*
 * test_schema_uri.c - how $id and $ref are resolved (core/schema_uri.c):
 * every example of RFC 3986 section 5.4, normal and abnormal, against its
 * base "http://a/b/c/d;p?q"; then what schemas use beyond them: no base, a
 * URN base, fragments, and percent-decoding of JSON-pointer fragments.
 */
#include <stdlib.h>
#include <string.h>

#include "../../core/schema_priv.h"
#include "check.h"

static void check_resolve(const char *base, const char *ref, const char *want)
{
	char *got = schema_uri_resolve(base, ref);

	CHECK_MSG(got && !strcmp(got, want), "resolve(%s, \"%s\") = %s, want %s",
		  base ? base : "(none)", ref, got ? got : "(null)", want);
	free(got);
}

static void test_rfc3986_examples(void)
{
	static const char *const cases[][2] = {
		/* 5.4.1 normal */
		{ "g:h", "g:h" }, { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" },
		{ "g/", "http://a/b/c/g/" }, { "/g", "http://a/g" }, { "//g", "http://g" },
		{ "?y", "http://a/b/c/d;p?y" }, { "g?y", "http://a/b/c/g?y" },
		{ "#s", "http://a/b/c/d;p?q#s" }, { "g#s", "http://a/b/c/g#s" },
		{ "g?y#s", "http://a/b/c/g?y#s" }, { ";x", "http://a/b/c/;x" },
		{ "g;x", "http://a/b/c/g;x" }, { "g;x?y#s", "http://a/b/c/g;x?y#s" },
		{ "", "http://a/b/c/d;p?q" }, { ".", "http://a/b/c/" }, { "./", "http://a/b/c/" },
		{ "..", "http://a/b/" }, { "../", "http://a/b/" }, { "../g", "http://a/b/g" },
		{ "../..", "http://a/" }, { "../../", "http://a/" }, { "../../g", "http://a/g" },
		/* 5.4.2 abnormal */
		{ "../../../g", "http://a/g" }, { "../../../../g", "http://a/g" },
		{ "/./g", "http://a/g" }, { "/../g", "http://a/g" }, { "g.", "http://a/b/c/g." },
		{ ".g", "http://a/b/c/.g" }, { "g..", "http://a/b/c/g.." },
		{ "..g", "http://a/b/c/..g" }, { "./../g", "http://a/b/g" },
		{ "./g/.", "http://a/b/c/g/" }, { "g/./h", "http://a/b/c/g/h" },
		{ "g/../h", "http://a/b/c/h" }, { "g;x=1/./y", "http://a/b/c/g;x=1/y" },
		{ "g;x=1/../y", "http://a/b/c/y" }, { "g?y/./x", "http://a/b/c/g?y/./x" },
		{ "g?y/../x", "http://a/b/c/g?y/../x" }, { "g#s/./x", "http://a/b/c/g#s/./x" },
		{ "g#s/../x", "http://a/b/c/g#s/../x" }, { "http:g", "http:g" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_resolve("http://a/b/c/d;p?q", cases[i][0], cases[i][1]);
}

static void test_schema_cases(void)
{
	/* The store names schemas stashfs:///schemas/NAME; a $ref by name
	 * stays in that folder. */
	check_resolve("stashfs:///schemas/task", "person", "stashfs:///schemas/person");
	check_resolve("stashfs:///schemas/task", "#/$defs/x", "stashfs:///schemas/task#/$defs/x");
	check_resolve("stashfs:///schemas/a/b", "../c", "stashfs:///schemas/c");
	/* A base's fragment never carries over. */
	check_resolve("http://x.test/root.json#/a", "other.json", "http://x.test/other.json");
	check_resolve("http://x.test/root.json#/a", "#b", "http://x.test/root.json#b");
	/* No base: the reference as it is. */
	check_resolve(NULL, "http://x.test/s", "http://x.test/s");
	check_resolve(NULL, "#foo", "#foo");
	/* URNs have no hierarchy: fragments attach, nothing else is merged. */
	check_resolve("urn:uuid:deadbeef-1234-00ff-ff00-4321feebdaed", "#/$defs/bar",
		      "urn:uuid:deadbeef-1234-00ff-ff00-4321feebdaed#/$defs/bar");
}

static void test_pct_decode(void)
{
	static const char *const cases[][2] = {
		{ "/$defs/a%25b", "/$defs/a%b" }, { "/%22quoted%22", "/\"quoted\"" },
		{ "/percent%2", "/percent%2" }, { "/bad%zz", "/bad%zz" }, { "%41%62", "Ab" },
		{ "", "" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];

		strcpy(buf, cases[i][0]);
		schema_pct_decode(buf);
		CHECK_MSG(!strcmp(buf, cases[i][1]), "decode(\"%s\") = \"%s\"", cases[i][0], buf);
	}
}

int main(void)
{
	test_rfc3986_examples();
	test_schema_cases();
	test_pct_decode();
	return check_done();
}
