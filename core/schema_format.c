// SPDX-License-Identifier: MIT
/*
 * schema_format.c - the "format" keyword: which formats we check and the
 * checks themselves (dates and times, durations, e-mail, host names, IP
 * addresses, UUIDs, URIs and IRIs, JSON pointers, regexes).  Asserted only
 * when the schema or the caller asks; otherwise formats are annotations.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

enum fmt_kind schema_format_kind(const char *f)
{
	static const struct { const char *name; enum fmt_kind k; } fmts[] = {
		{ "date-time", FMT_DATE_TIME }, { "date", FMT_DATE }, { "time", FMT_TIME },
		{ "duration", FMT_DURATION }, { "email", FMT_EMAIL }, { "hostname", FMT_HOSTNAME },
		{ "ipv4", FMT_IPV4 }, { "ipv6", FMT_IPV6 }, { "uuid", FMT_UUID },
		{ "uri", FMT_URI }, { "uri-reference", FMT_URI_REF },
		{ "iri", FMT_IRI }, { "iri-reference", FMT_IRI_REF },
		{ "json-pointer", FMT_JSON_POINTER },
		{ "relative-json-pointer", FMT_REL_JSON_POINTER }, { "regex", FMT_REGEX },
	};
	size_t i;

	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
		if (!strcmp(f, fmts[i].name))
			return fmts[i].k;
	return FMT_NONE;
}


/* ------------------------------------------------------------------ */
/* Formats, asserted only on request (annotation by default). */

static bool all_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int num_at(const char *s, size_t n)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static bool fmt_date(const char *s, size_t n)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (n != 10 || s[4] != '-' || s[7] != '-' || !all_digits(s, 4) || !all_digits(s + 5, 2) ||
	    !all_digits(s + 8, 2))
		return false;
	y = num_at(s, 4);
	m = num_at(s + 5, 2);
	d = num_at(s + 8, 2);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	return true;
}

static bool fmt_time(const char *s, size_t n)
{
	int h, m, sec, oh = 0, om = 0, sign = 0;
	size_t i = 8;

	if (n < 9 || s[2] != ':' || s[5] != ':' || !all_digits(s, 2) || !all_digits(s + 3, 2) ||
	    !all_digits(s + 6, 2))
		return false;
	h = num_at(s, 2);
	m = num_at(s + 3, 2);
	sec = num_at(s + 6, 2);
	if (s[i] == '.') {
		size_t st = ++i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == st)
			return false;
	}
	if (i >= n)
		return false;
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
		sign = 0;
	} else if ((s[i] == '+' || s[i] == '-') && n - i == 6 && s[i + 3] == ':' &&
		   all_digits(s + i + 1, 2) && all_digits(s + i + 4, 2)) {
		sign = s[i] == '+' ? 1 : -1;
		oh = num_at(s + i + 1, 2);
		om = num_at(s + i + 4, 2);
		if (oh > 23 || om > 59)
			return false;
	} else {
		return false;
	}
	if (h > 23 || m > 59 || sec > 60)
		return false;
	if (sec == 60) {
		/* A leap second exists only at 23:59:60 UTC. */
		int utc = (h * 60 + m - sign * (oh * 60 + om) + 1440) % 1440;

		if (utc != 23 * 60 + 59)
			return false;
	}
	return true;
}

static bool fmt_ipv4(const char *s, size_t n)
{
	size_t i = 0, parts = 0;

	while (parts < 4) {
		size_t st = i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == st || i - st > 3 || (s[st] == '0' && i - st > 1) || num_at(s + st, i - st) > 255)
			return false;
		parts++;
		if (parts < 4) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

static bool fmt_ipv6(const char *s, size_t n)
{
	size_t i = 0, groups = 0;
	bool dbl = false;

	if (n < 2)
		return false;
	if (s[0] == ':') {
		if (s[1] != ':')
			return false;
		dbl = true;
		i = 2;
		if (i == n)
			return true;
	}
	while (i < n) {
		size_t st = i;

		while (i < n && schema_hexval((unsigned char)s[i]) >= 0)
			i++;
		if (i < n && s[i] == '.') {
			/* Embedded IPv4 in the last 32 bits. */
			if (!fmt_ipv4(s + st, n - st))
				return false;
			groups += 2;
			i = n;
			break;
		}
		if (i == st || i - st > 4)
			return false;
		groups++;
		if (i == n)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < n && s[i] == ':') {
			if (dbl)
				return false;
			dbl = true;
			i++;
			if (i == n)
				break;
		} else if (i == n) {
			return false;
		}
	}
	return dbl ? groups < 8 : groups == 8;
}

static bool fmt_hostname(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || n > 253)
		return false;
	while (i < n) {
		size_t st = i;

		while (i < n && s[i] != '.') {
			char ch = s[i];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '-'))
				return false;
			i++;
		}
		if (i == st || i - st > 63 || s[st] == '-' || s[i - 1] == '-')
			return false;
		if (i < n)
			i++;
		if (i == n && s[n - 1] == '.')
			return false;
	}
	return true;
}

static bool fmt_pointer(const char *s, size_t n)
{
	size_t i;

	if (n && s[0] != '/')
		return false;
	for (i = 0; i < n; i++)
		if (s[i] == '~' && (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1')))
			return false;
	return true;
}

/* Host and port of an authority: an IP literal in brackets, or reg-name. */
static bool uri_authority_ok(const char *a, size_t n)
{
	const char *at = memchr(a, '@', n), *host, *colon;
	size_t hn, i;

	if (at) {
		if (memchr(at + 1, '@', n - (size_t)(at - a) - 1) || memchr(a, '[', (size_t)(at - a)))
			return false;
		n -= (size_t)(at - a) + 1;
		a = at + 1;
	}
	host = a;
	if (n && a[0] == '[') {
		const char *close = memchr(a, ']', n);

		/* [v1.xyz] is an IPvFuture literal: not ours to judge further. */
		if (!close || (n > 1 && (a[1] != 'v' && a[1] != 'V') &&
			       !fmt_ipv6(a + 1, (size_t)(close - a - 1))))
			return false;
		hn = (size_t)(close - a) + 1;
	} else {
		colon = memchr(a, ':', n);
		hn = colon ? (size_t)(colon - a) : n;
		if (memchr(host, ']', hn))
			return false;
	}
	if (hn == n)
		return true;
	if (host[hn] != ':')
		return false;
	for (i = hn + 1; i < n; i++)
		if (host[i] < '0' || host[i] > '9')
			return false;
	return true;
}

/* @iri: RFC 3987 also allows any non-ASCII character. */
static bool fmt_uri(const char *s, size_t n, bool need_scheme, bool iri)
{
	struct uri u;
	size_t i;
	char *z = strndup(s, n);
	bool ok = true;

	if (!z)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= ' ' || ch == 0x7f || (ch > 0x7f && !iri) || strchr("<>\"{}|\\^`", ch) ||
		    (ch == '%' && (i + 2 >= n || schema_hexval(s[i + 1]) < 0 || schema_hexval(s[i + 2]) < 0))) {
			free(z);
			return false;
		}
	}
	schema_uri_split(z, &u);
	if (u.has_scheme) {
		if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
			ok = false;
		for (i = 1; i < u.scheme_len; i++)
			if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.", s[i]))
				ok = false;
	}
	if (u.has_auth && !uri_authority_ok(u.auth, u.auth_len))
		ok = false;
	/* Brackets belong to IP literals only. */
	if (strpbrk(u.path, "[]"))
		ok = false;
	free(z);
	return ok && (!need_scheme || u.has_scheme);
}

static bool fmt_email(const char *s, size_t n)
{
	const char *at = memrchr(s, '@', n);
	size_t local, i;

	if (!at)
		return false;
	local = (size_t)(at - s);
	if (!local || local == n - 1)
		return false;
	if (s[0] == '"') {
		if (local < 2 || s[local - 1] != '"')
			return false;
	} else {
		if (s[0] == '.' || s[local - 1] == '.' || memmem(s, local, "..", 2))
			return false;
		for (i = 0; i < local; i++) {
			char ch = s[i];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-/=?^_`{|}~.", ch)))
				return false;
		}
	}
	if (s[local + 1] == '[') {
		if (s[n - 1] != ']')
			return false;
		if (n - local > 7 && !strncmp(s + local + 2, "IPv6:", 5))
			return fmt_ipv6(s + local + 7, n - local - 8);
		return fmt_ipv4(s + local + 2, n - local - 3);
	}
	return fmt_hostname(at + 1, n - local - 1);
}

/* RFC 3339 appendix A: P[nY[nM[nD]]][T nH[nM[nS]]] with no gaps inside
 * each group (PnYnD is not a duration), or PnW alone. */
static bool fmt_duration(const char *s, size_t n)
{
	const char *units = "YMD";
	int prev = -1;
	size_t i = 1;
	bool in_time = false, any = false;

	if (n < 3 || s[0] != 'P')
		return false;
	if (s[n - 1] == 'W')
		return all_digits(s + 1, n - 2);
	while (i < n) {
		size_t st = i;
		const char *p;

		if (s[i] == 'T') {
			if (in_time || i + 1 == n)
				return false;
			in_time = true;
			units = "HMS";
			prev = -1;
			i++;
			continue;
		}
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == st || i == n || !(p = strchr(units, s[i])) || !s[i])
			return false;
		if (prev >= 0 && (int)(p - units) != prev + 1)
			return false;
		prev = (int)(p - units);
		any = true;
		i++;
	}
	return any;
}

/* ECMA-262 letters that may follow a backslash; anything else (\a, \z,
 * \A ...) belongs to other dialects. */
static bool fmt_regex(const char *s, size_t n)
{
	char *pat;
	pcre2_code *code;
	PCRE2_SIZE off;
	size_t i;
	int ec;

	for (i = 0; i + 1 < n; i++) {
		if (s[i] == '\\') {
			char e = s[++i];

			if (((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) &&
			    !strchr("bBdDwWsSfnrtvcxukpP", e))
				return false;
		} else if (s[i] == '(' && s[i + 1] == '?' && i + 2 < n) {
			char f = s[i + 2];

			/* Only lookarounds and named or non-capturing groups:
			 * no (?i) flags, (?P<..>) or (?#..) comments. */
			if (!strchr(":=!<", f))
				return false;
		}
	}
	pat = schema_regex_translate(s, n);
	if (!pat)
		return false;
	code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off, NULL);
	free(pat);
	pcre2_code_free(code);
	return code != NULL;
}

bool schema_format_ok(unsigned kind, const char *s, size_t n)
{
	size_t i;

	switch (kind) {
	case FMT_DATE:
		return fmt_date(s, n);
	case FMT_TIME:
		return fmt_time(s, n);
	case FMT_DATE_TIME:
		return n > 11 && (s[10] == 'T' || s[10] == 't') && fmt_date(s, 10) &&
		       fmt_time(s + 11, n - 11);
	case FMT_DURATION:
		return fmt_duration(s, n);
	case FMT_EMAIL:
		return fmt_email(s, n);
	case FMT_HOSTNAME:
		return fmt_hostname(s, n);
	case FMT_IPV4:
		return fmt_ipv4(s, n);
	case FMT_IPV6:
		return fmt_ipv6(s, n);
	case FMT_UUID:
		if (n != 36)
			return false;
		for (i = 0; i < 36; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23) {
				if (s[i] != '-')
					return false;
			} else if (schema_hexval((unsigned char)s[i]) < 0) {
				return false;
			}
		}
		return true;
	case FMT_URI:
		return fmt_uri(s, n, true, false);
	case FMT_URI_REF:
		return fmt_uri(s, n, false, false);
	case FMT_IRI:
		return fmt_uri(s, n, true, true);
	case FMT_IRI_REF:
		return fmt_uri(s, n, false, true);
	case FMT_JSON_POINTER:
		return fmt_pointer(s, n);
	case FMT_REL_JSON_POINTER:
		for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == 0 || (s[0] == '0' && i > 1))
			return false;
		return (i == n - 1 && s[i] == '#') || fmt_pointer(s + i, n - i);
	case FMT_REGEX:
		return fmt_regex(s, n);
	default:
		return true;
	}
}

