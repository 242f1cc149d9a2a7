// SPDX-License-Identifier: MIT
/*
 * schema_uri.c - URI references for $id and $ref: splitting, resolving
 * against a base (RFC 3986 section 5.2) and percent-decoding fragments.
 * Never fetches anything.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

/* ------------------------------------------------------------------ */
/* URI references, RFC 3986 section 5.2. */


void schema_uri_split(const char *s, struct uri *u)
{
	const char *p = s;

	memset(u, 0, sizeof(*u));
	/* A scheme is letters etc. up to ':' before any of "/?#". */
	while (*p && !strchr(":/?#", *p))
		p++;
	if (*p == ':' && p > s) {
		u->has_scheme = true;
		u->scheme = s;
		u->scheme_len = (size_t)(p - s);
		s = p + 1;
	}
	if (s[0] == '/' && s[1] == '/') {
		u->has_auth = true;
		u->auth = s + 2;
		u->auth_len = strcspn(u->auth, "/?#");
		s = u->auth + u->auth_len;
	}
	u->path = s;
	u->path_len = strcspn(s, "?#");
	s += u->path_len;
	if (*s == '?') {
		u->has_query = true;
		u->query = s + 1;
		u->query_len = strcspn(u->query, "#");
		s = u->query + u->query_len;
	}
	if (*s == '#') {
		u->has_frag = true;
		u->frag = s + 1;
		u->frag_len = strlen(u->frag);
	}
}

/* RFC 3986 5.2.4, appending the result to @out. */
static void remove_dots(struct buf *out, const char *in, size_t n)
{
	size_t start = out->n;

	while (n) {
		if (n >= 3 && !memcmp(in, "../", 3)) {
			in += 3, n -= 3;
		} else if (n >= 2 && !memcmp(in, "./", 2)) {
			in += 2, n -= 2;
		} else if (n >= 3 && !memcmp(in, "/./", 3)) {
			in += 2, n -= 2;
		} else if (n == 2 && !memcmp(in, "/.", 2)) {
			in = "/", n = 1;
		} else if ((n >= 4 && !memcmp(in, "/../", 4)) || (n == 3 && !memcmp(in, "/..", 3))) {
			if (n == 3)
				in = "/", n = 1;
			else
				in += 3, n -= 3;
			while (out->n > start && out->p[out->n - 1] != '/')
				out->n--;
			if (out->n > start)
				out->n--;
			if (out->p)
				out->p[out->n] = '\0';
		} else if ((n == 1 && in[0] == '.') || (n == 2 && !memcmp(in, "..", 2))) {
			n = 0;
		} else {
			size_t k = 1;

			while (k < n && in[k] != '/')
				k++;
			if (in[0] != '/')
				k = 0;
			while (k < n && in[k] != '/')
				k++;
			schema_buf_add(out, in, k);
			in += k, n -= k;
		}
	}
}

/* Resolve @ref against @base (may be NULL).  Returns a new string.  It
 * follows RFC 3986 5.2.2's pseudocode branch for branch, which is why it is
 * kept whole. */
char *schema_uri_resolve(const char *base, const char *ref)
{
	struct uri b, r;
	struct buf out = {0};

	schema_uri_split(base ? base : "", &b);
	schema_uri_split(ref, &r);
	if (r.has_scheme) {
		schema_buf_add(&out, r.scheme, r.scheme_len);
		schema_buf_str(&out, ":");
		if (r.has_auth) {
			schema_buf_str(&out, "//");
			schema_buf_add(&out, r.auth, r.auth_len);
		}
		remove_dots(&out, r.path, r.path_len);
		if (r.has_query) {
			schema_buf_str(&out, "?");
			schema_buf_add(&out, r.query, r.query_len);
		}
	} else {
		if (b.has_scheme) {
			schema_buf_add(&out, b.scheme, b.scheme_len);
			schema_buf_str(&out, ":");
		}
		if (r.has_auth) {
			schema_buf_str(&out, "//");
			schema_buf_add(&out, r.auth, r.auth_len);
			remove_dots(&out, r.path, r.path_len);
			if (r.has_query) {
				schema_buf_str(&out, "?");
				schema_buf_add(&out, r.query, r.query_len);
			}
		} else {
			if (b.has_auth) {
				schema_buf_str(&out, "//");
				schema_buf_add(&out, b.auth, b.auth_len);
			}
			if (!r.path_len) {
				schema_buf_add(&out, b.path, b.path_len);
				if (r.has_query || b.has_query) {
					schema_buf_str(&out, "?");
					if (r.has_query)
						schema_buf_add(&out, r.query, r.query_len);
					else
						schema_buf_add(&out, b.query, b.query_len);
				}
			} else {
				struct buf merged = {0};

				if (r.path[0] == '/') {
					schema_buf_add(&merged, r.path, r.path_len);
				} else {
					size_t k = b.path_len;

					if (b.has_auth && !b.path_len) {
						schema_buf_str(&merged, "/");
					} else {
						while (k && b.path[k - 1] != '/')
							k--;
						schema_buf_add(&merged, b.path, k);
					}
					schema_buf_add(&merged, r.path, r.path_len);
				}
				if (merged.oom)
					out.oom = 1;
				else if (merged.n)
					remove_dots(&out, merged.p, merged.n);
				free(merged.p);
				if (r.has_query) {
					schema_buf_str(&out, "?");
					schema_buf_add(&out, r.query, r.query_len);
				}
			}
		}
	}
	if (r.has_frag) {
		schema_buf_str(&out, "#");
		schema_buf_add(&out, r.frag, r.frag_len);
	}
	return schema_buf_take(&out);
}


/* Percent-decode in place (fragments may be percent-encoded, RFC 6901 6). */
void schema_pct_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '%' && schema_hexval(s[1]) >= 0 && schema_hexval(s[2]) >= 0) {
			*o++ = (char)(schema_hexval(s[1]) * 16 + schema_hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

