// SPDX-License-Identifier: MIT
/*
 * schema_regex.c - JSON Schema patterns are ECMA-262 regexes; PCRE2 runs
 * them after this translation of what differs (\s, \uXXXX, \p{...} names,
 * ".").  Compiling and matching are left to the callers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

/* ------------------------------------------------------------------ */
/* ECMA-262 regexes on PCRE2.  PCRE2 without UCP already gives \d \w \b
 * their ASCII meaning; what differs is \s, \uXXXX, \p names, "." and
 * $ before a final newline (PCRE2_DOLLAR_ENDONLY). */

#define ECMA_WS "\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
	"\\x{202f}\\x{205f}\\x{3000}\\x{feff}"

static const char *const gc_names[][2] = {
	{ "Letter", "L" }, { "Cased_Letter", "L&" }, { "Uppercase_Letter", "Lu" },
	{ "Lowercase_Letter", "Ll" }, { "Titlecase_Letter", "Lt" }, { "Modifier_Letter", "Lm" },
	{ "Other_Letter", "Lo" }, { "Mark", "M" }, { "Combining_Mark", "M" },
	{ "Nonspacing_Mark", "Mn" }, { "Spacing_Mark", "Mc" }, { "Enclosing_Mark", "Me" },
	{ "Number", "N" }, { "Decimal_Number", "Nd" }, { "digit", "Nd" },
	{ "Letter_Number", "Nl" }, { "Other_Number", "No" }, { "Punctuation", "P" },
	{ "punct", "P" }, { "Connector_Punctuation", "Pc" }, { "Dash_Punctuation", "Pd" },
	{ "Open_Punctuation", "Ps" }, { "Close_Punctuation", "Pe" },
	{ "Initial_Punctuation", "Pi" }, { "Final_Punctuation", "Pf" },
	{ "Other_Punctuation", "Po" }, { "Symbol", "S" }, { "Math_Symbol", "Sm" },
	{ "Currency_Symbol", "Sc" }, { "Modifier_Symbol", "Sk" }, { "Other_Symbol", "So" },
	{ "Separator", "Z" }, { "Space_Separator", "Zs" }, { "Line_Separator", "Zl" },
	{ "Paragraph_Separator", "Zp" }, { "Other", "C" }, { "Control", "Cc" },
	{ "cntrl", "Cc" }, { "Format", "Cf" }, { "Surrogate", "Cs" },
	{ "Private_Use", "Co" }, { "Unassigned", "Cn" },
};

static void translate_prop(struct buf *out, const char *name, size_t n)
{
	static const char *const prefixes[] = {
		"General_Category=", "gc=", "Script=", "sc=", "Script_Extensions=", "scx=",
	};
	size_t i;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);

		if (n > pl && !memcmp(name, prefixes[i], pl)) {
			name += pl;
			n -= pl;
			break;
		}
	}
	for (i = 0; i < sizeof(gc_names) / sizeof(gc_names[0]); i++) {
		if (strlen(gc_names[i][0]) == n && !memcmp(gc_names[i][0], name, n)) {
			schema_buf_str(out, gc_names[i][1]);
			return;
		}
	}
	schema_buf_add(out, name, n);
}

static int parse_hex(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int h = schema_hexval((unsigned char)s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + (unsigned)h;
	}
	*out = v;
	return 0;
}

/* Translate an ECMA-262 pattern into PCRE2 syntax; returns a new string.
 * Longer than most functions here on purpose: one pass that reads each
 * escape in place and knows whether it is inside a character class; split
 * up, every piece would need that state and the read position back. */
char *schema_regex_translate(const char *src, size_t len)
{
	struct buf out = {0};
	bool in_class = false;
	size_t i = 0;

	while (i < len) {
		char ch = src[i];

		if (ch == '\\' && i + 1 < len) {
			char e = src[i + 1];
			unsigned cp, lo;

			if (e == 's' || e == 'S') {
				if (in_class)
					schema_buf_str(&out, e == 's' ? ECMA_WS : "\\S");
				else
					schema_buf_str(&out, e == 's' ? "[" ECMA_WS "]" : "[^" ECMA_WS "]");
				i += 2;
			} else if (e == 'u' && i + 2 < len && src[i + 2] == '{') {
				const char *end = memchr(src + i + 3, '}', len - i - 3);

				if (!end || parse_hex(src + i + 3, (size_t)(end - src - i - 3), &cp)) {
					schema_buf_add(&out, src + i, 2);
					i += 2;
					continue;
				}
				schema_buf_printf(&out, "\\x{%x}", cp);
				i = (size_t)(end - src) + 1;
			} else if (e == 'u' && i + 6 <= len && !parse_hex(src + i + 2, 4, &cp)) {
				i += 6;
				/* A surrogate pair written as two escapes is one code point. */
				if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= len && src[i] == '\\' &&
				    src[i + 1] == 'u' && !parse_hex(src + i + 2, 4, &lo) &&
				    lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					i += 6;
				}
				schema_buf_printf(&out, "\\x{%x}", cp);
			} else if ((e == 'p' || e == 'P') && i + 2 < len && src[i + 2] == '{') {
				const char *end = memchr(src + i + 3, '}', len - i - 3);

				if (!end) {
					schema_buf_add(&out, src + i, 2);
					i += 2;
					continue;
				}
				schema_buf_add(&out, src + i, 3);
				translate_prop(&out, src + i + 3, (size_t)(end - src - i - 3));
				schema_buf_str(&out, "}");
				i = (size_t)(end - src) + 1;
			} else if (e == '/') {
				schema_buf_str(&out, "/");
				i += 2;
			} else {
				size_t k = 2;

				/* Keep a multi-byte escaped character whole. */
				while (i + k < len && ((unsigned char)src[i + k] & 0xc0) == 0x80)
					k++;
				schema_buf_add(&out, src + i, k);
				i += k;
			}
			continue;
		}
		if (!in_class && ch == '[') {
			if (i + 1 < len && src[i + 1] == ']') {
				schema_buf_str(&out, "(?!)");
				i += 2;
				continue;
			}
			if (i + 2 < len && src[i + 1] == '^' && src[i + 2] == ']') {
				schema_buf_str(&out, "[\\s\\S]");
				i += 3;
				continue;
			}
			in_class = true;
			schema_buf_str(&out, "[");
			i++;
			if (i < len && src[i] == '^') {
				schema_buf_str(&out, "^");
				i++;
			}
			continue;
		}
		if (in_class && ch == ']') {
			in_class = false;
		} else if (!in_class && ch == '.') {
			schema_buf_str(&out, "[^\\n\\r\\x{2028}\\x{2029}]");
			i++;
			continue;
		}
		schema_buf_add(&out, &ch, 1);
		i++;
	}
	return schema_buf_take(&out);
}

