// SPDX-License-Identifier: MIT
/*
 * test_schema_regex.c - JSON Schema patterns are ECMA-262 regexes; PCRE2
 * runs them after core/schema_regex.c's translation.  Each case is a pattern
 * and a subject that ECMA-262 matches or not, run through the translation
 * and PCRE2 with the options the compiler uses (UTF, $ only at the end).
 */
#include <stdlib.h>
#include <string.h>

#include "../../core/schema_priv.h"
#include "check.h"

/* 1 match, 0 no match, -1 the translation did not compile. */
static int matches(const char *pattern, const char *subject)
{
	char *pat = schema_regex_translate(pattern, strlen(pattern));
	pcre2_match_data *md;
	pcre2_code *re;
	PCRE2_SIZE off;
	int ec, rc;

	if (!pat)
		return -1;
	re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY,
			   &ec, &off, NULL);
	free(pat);
	if (!re)
		return -1;
	md = pcre2_match_data_create(1, NULL);
	rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	return rc >= 0 ? 1 : 0;
}

static void test_ecma_semantics(void)
{
	static const struct { const char *pattern, *subject; int want; } cases[] = {
		/* \s is ECMA's white space and line terminators, Unicode ones too */
		{ "^\\s$", " ", 1 }, { "^\\s$", "\t", 1 }, { "^\\s$", "\xc2\xa0", 1 },
		{ "^\\s$", "\xe2\x80\xa8", 1 }, { "^\\s$", "\xef\xbb\xbf", 1 },
		{ "^\\s$", "\xe3\x80\x80", 1 }, { "^\\s$", "a", 0 },
		{ "^\\S$", "\xc2\xa0", 0 }, { "^\\S$", "a", 1 },
		{ "^[\\sx]$", "\xe3\x80\x80", 1 }, { "^[\\sx]$", "x", 1 }, { "^[\\sx]$", "y", 0 },
		/* \uXXXX, a surrogate pair as two escapes, \u{...} */
		{ "^\\u0041\\u00e9$", "A\xc3\xa9", 1 }, { "^\\ud83d\\ude00$", "\xf0\x9f\x98\x80", 1 },
		{ "^\\u{1F600}$", "\xf0\x9f\x98\x80", 1 },
		/* \d and \w stay ASCII */
		{ "^\\d$", "3", 1 }, { "^\\d$", "\xd9\xa3", 0 }, { "^\\w$", "\xc3\xa9", 0 },
		/* $ is the end, not before a final newline; "." no line terminator */
		{ "^a$", "a\n", 0 }, { "^a$", "a", 1 }, { "^.$", "\n", 0 }, { "^.$", "\r", 0 },
		{ "^.$", "\xe2\x80\xa8", 0 }, { "^.$", "\xc3\xa9", 1 },
		/* property names ECMA spells out, and their prefixes */
		{ "^\\p{Letter}+$", "h\xc3\xa9llo", 1 }, { "^\\p{L}$", "1", 0 },
		{ "^\\P{L}$", "1", 1 }, { "^\\p{Script=Greek}$", "\xce\xb1", 1 },
		{ "^\\p{gc=Decimal_Number}$", "\xd9\xa3", 1 },
		/* [] matches nothing, [^] anything */
		{ "a[]", "a", 0 }, { "^[^]$", "\n", 1 },
		{ "^\\/$", "/", 1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = matches(cases[i].pattern, cases[i].subject);

		CHECK_MSG(got == cases[i].want, "/%s/ on \"%s\": %d, want %d", cases[i].pattern,
			  cases[i].subject, got, cases[i].want);
	}
}

int main(void)
{
	test_ecma_semantics();
	return check_done();
}
