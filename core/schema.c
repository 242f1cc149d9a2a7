// SPDX-License-Identifier: MIT
/*
 * schema.c - JSON Schema draft 2020-12: compile once, validate many.
 *
 * Compiling gathers every schema resource reachable from the document
 * ($id, $anchor, $dynamicAnchor, external documents through the built-in
 * metaschemas or the caller's loader), then turns each subschema into an
 * immutable node: $ref resolved to a node pointer, regexes compiled, property
 * names hashed.  Validation walks the nodes without touching them, so one
 * compiled schema serves many threads.  Only $dynamicRef is resolved while
 * validating, since it depends on the dynamic scope.
 *
 * Annotations (which properties/items were evaluated) are collected only
 * below a node that has unevaluatedProperties/unevaluatedItems, as bitmaps
 * indexed by the instance's iteration order.
 *
 * Not here: output formats beyond one error sentence, drafts other than
 * 2020-12, network access.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "stashfs/json.h"
#include "stashfs/schema.h"
#include "schema_meta.h"

#define DEFAULT_MAX_DEPTH 256
#define META_MAX_DEPTH 1024
#define DEFAULT_MAX_STEPS 10000000UL
#define DEFAULT_MAX_SCHEMA_BYTES (4u << 20)
#define MAX_SCHEMA_NESTING 512
/* Regex limits: enough for any sane pattern, small enough that a
 * catastrophic one gives up in milliseconds instead of hanging a writer. */
#define REGEX_MATCH_LIMIT 1000000
#define REGEX_DEPTH_LIMIT 10000
#define REGEX_HEAP_LIMIT_KIB 8192

#define DRAFT_2020_12 "https://json-schema.org/draft/2020-12/schema"

/* ------------------------------------------------------------------ */
/* Arena: every node and string of a compiled schema lives in one, so
 * freeing is one walk and nodes sit close together in memory. */

struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
};

static void *arena_alloc(struct arena *a, size_t n)
{
	struct chunk *c = a->head;
	void *p;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!c || c->size - c->used < n) {
		size_t size = n > 16384 ? n : 16384;

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->size = size;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void arena_free(struct arena *a)
{
	struct chunk *c, *next;

	for (c = a->head; c; c = next) {
		next = c->next;
		free(c);
	}
	a->head = NULL;
}

/* ------------------------------------------------------------------ */
/* Hash map used while compiling.  len == 0 means the key is a pointer
 * compared by identity (json_t nodes); otherwise it is a byte string that
 * the caller keeps alive. */

struct hent {
	const void *key;
	size_t len;
	void *val;
};

struct hmap {
	struct hent *e;
	size_t cap, n;
};

static uint32_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *s++;
		h *= 16777619u;
	}
	return h;
}

static uint32_t hkey(const void *key, size_t len)
{
	if (len)
		return hash_bytes(key, len);
	uintptr_t v = (uintptr_t)key;

	v ^= v >> 17;
	v *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(v >> 29);
}

static struct hent *hmap_find(const struct hmap *m, const void *key, size_t len)
{
	size_t i;

	if (!m->cap)
		return NULL;
	for (i = hkey(key, len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct hent *e = &m->e[i];

		if (!e->key)
			return NULL;
		if (e->len == len && (len ? !memcmp(e->key, key, len) : e->key == key))
			return e;
	}
}

static void *hmap_get(const struct hmap *m, const void *key, size_t len)
{
	struct hent *e = hmap_find(m, key, len);

	return e ? e->val : NULL;
}

/* Insert or replace; returns -ENOMEM on failure. */
static int hmap_put(struct hmap *m, const void *key, size_t len, void *val)
{
	struct hent *e;
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct hent *ne = calloc(ncap, sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		for (i = 0; i < m->cap; i++) {
			struct hent *o = &m->e[i];
			size_t j;

			if (!o->key)
				continue;
			for (j = hkey(o->key, o->len) & (ncap - 1); ne[j].key; j = (j + 1) & (ncap - 1))
				;
			ne[j] = *o;
		}
		free(m->e);
		m->e = ne;
		m->cap = ncap;
	}
	e = hmap_find(m, key, len);
	if (e) {
		e->val = val;
		return 0;
	}
	for (i = hkey(key, len) & (m->cap - 1); m->e[i].key; i = (i + 1) & (m->cap - 1))
		;
	m->e[i].key = key;
	m->e[i].len = len;
	m->e[i].val = val;
	m->n++;
	return 0;
}

static void hmap_free(struct hmap *m)
{
	free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}

/* ------------------------------------------------------------------ */
/* Growable byte buffer for URIs, pointers and regex translation. */

struct buf {
	char *p;
	size_t n, cap;
	int oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		char *np;

		while (ncap < b->n + n + 1)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Returns the string (caller frees) or NULL when out of memory. */
static char *buf_take(struct buf *b)
{
	if (b->oom) {
		free(b->p);
		return NULL;
	}
	if (!b->p)
		return strdup("");
	return b->p;
}

/* ------------------------------------------------------------------ */
/* URI references, RFC 3986 section 5.2. */

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_len, auth_len, path_len, query_len, frag_len;
	bool has_scheme, has_auth, has_query, has_frag;
};

static void uri_split(const char *s, struct uri *u)
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
			buf_add(out, in, k);
			in += k, n -= k;
		}
	}
}

/* Resolve @ref against @base (may be NULL).  Returns a new string. */
static char *uri_resolve(const char *base, const char *ref)
{
	struct uri b, r;
	struct buf out = {0};

	uri_split(base ? base : "", &b);
	uri_split(ref, &r);
	if (r.has_scheme) {
		buf_add(&out, r.scheme, r.scheme_len);
		buf_str(&out, ":");
		if (r.has_auth) {
			buf_str(&out, "//");
			buf_add(&out, r.auth, r.auth_len);
		}
		remove_dots(&out, r.path, r.path_len);
		if (r.has_query) {
			buf_str(&out, "?");
			buf_add(&out, r.query, r.query_len);
		}
	} else {
		if (b.has_scheme) {
			buf_add(&out, b.scheme, b.scheme_len);
			buf_str(&out, ":");
		}
		if (r.has_auth) {
			buf_str(&out, "//");
			buf_add(&out, r.auth, r.auth_len);
			remove_dots(&out, r.path, r.path_len);
			if (r.has_query) {
				buf_str(&out, "?");
				buf_add(&out, r.query, r.query_len);
			}
		} else {
			if (b.has_auth) {
				buf_str(&out, "//");
				buf_add(&out, b.auth, b.auth_len);
			}
			if (!r.path_len) {
				buf_add(&out, b.path, b.path_len);
				if (r.has_query || b.has_query) {
					buf_str(&out, "?");
					if (r.has_query)
						buf_add(&out, r.query, r.query_len);
					else
						buf_add(&out, b.query, b.query_len);
				}
			} else {
				struct buf merged = {0};

				if (r.path[0] == '/') {
					buf_add(&merged, r.path, r.path_len);
				} else {
					size_t k = b.path_len;

					if (b.has_auth && !b.path_len) {
						buf_str(&merged, "/");
					} else {
						while (k && b.path[k - 1] != '/')
							k--;
						buf_add(&merged, b.path, k);
					}
					buf_add(&merged, r.path, r.path_len);
				}
				if (merged.oom)
					out.oom = 1;
				else if (merged.n)
					remove_dots(&out, merged.p, merged.n);
				free(merged.p);
				if (r.has_query) {
					buf_str(&out, "?");
					buf_add(&out, r.query, r.query_len);
				}
			}
		}
	}
	if (r.has_frag) {
		buf_str(&out, "#");
		buf_add(&out, r.frag, r.frag_len);
	}
	return buf_take(&out);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode in place (fragments may be percent-encoded, RFC 6901 6). */
static void pct_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

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
			buf_str(out, gc_names[i][1]);
			return;
		}
	}
	buf_add(out, name, n);
}

static int parse_hex(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int h = hexval((unsigned char)s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + (unsigned)h;
	}
	*out = v;
	return 0;
}

/* Translate an ECMA-262 pattern into PCRE2 syntax; returns a new string. */
static char *regex_translate(const char *src, size_t len)
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
					buf_str(&out, e == 's' ? ECMA_WS : "\\S");
				else
					buf_str(&out, e == 's' ? "[" ECMA_WS "]" : "[^" ECMA_WS "]");
				i += 2;
			} else if (e == 'u' && i + 2 < len && src[i + 2] == '{') {
				const char *end = memchr(src + i + 3, '}', len - i - 3);

				if (!end || parse_hex(src + i + 3, (size_t)(end - src - i - 3), &cp)) {
					buf_add(&out, src + i, 2);
					i += 2;
					continue;
				}
				buf_printf(&out, "\\x{%x}", cp);
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
				buf_printf(&out, "\\x{%x}", cp);
			} else if ((e == 'p' || e == 'P') && i + 2 < len && src[i + 2] == '{') {
				const char *end = memchr(src + i + 3, '}', len - i - 3);

				if (!end) {
					buf_add(&out, src + i, 2);
					i += 2;
					continue;
				}
				buf_add(&out, src + i, 3);
				translate_prop(&out, src + i + 3, (size_t)(end - src - i - 3));
				buf_str(&out, "}");
				i = (size_t)(end - src) + 1;
			} else if (e == '/') {
				buf_str(&out, "/");
				i += 2;
			} else {
				size_t k = 2;

				/* Keep a multi-byte escaped character whole. */
				while (i + k < len && ((unsigned char)src[i + k] & 0xc0) == 0x80)
					k++;
				buf_add(&out, src + i, k);
				i += k;
			}
			continue;
		}
		if (!in_class && ch == '[') {
			if (i + 1 < len && src[i + 1] == ']') {
				buf_str(&out, "(?!)");
				i += 2;
				continue;
			}
			if (i + 2 < len && src[i + 1] == '^' && src[i + 2] == ']') {
				buf_str(&out, "[\\s\\S]");
				i += 3;
				continue;
			}
			in_class = true;
			buf_str(&out, "[");
			i++;
			if (i < len && src[i] == '^') {
				buf_str(&out, "^");
				i++;
			}
			continue;
		}
		if (in_class && ch == ']') {
			in_class = false;
		} else if (!in_class && ch == '.') {
			buf_str(&out, "[^\\n\\r\\x{2028}\\x{2029}]");
			i++;
			continue;
		}
		buf_add(&out, &ch, 1);
		i++;
	}
	return buf_take(&out);
}

/* ------------------------------------------------------------------ */
/* Compiled form. */

enum {
	T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_STR = 16, T_INT = 32, T_NUM = 64,
};

enum {
	V_CORE = 1, V_APPLICATOR = 2, V_UNEVALUATED = 4, V_VALIDATION = 8,
	V_METADATA = 16, V_FORMAT_ANN = 32, V_FORMAT_ASSERT = 64, V_CONTENT = 128,
	V_ALL_2020 = V_CORE | V_APPLICATOR | V_UNEVALUATED | V_VALIDATION | V_METADATA |
		     V_FORMAT_ANN | V_CONTENT,
};

/* What a node checks, so the hot path skips whole groups at once. */
enum {
	N_OBJ = 1, N_ARR = 2, N_STR = 4, N_NUM = 8, N_APPLY = 16, N_UNEVAL = 32, N_GENERIC = 64,
};

struct num {
	double d;
	json_int_t i;
	bool is_int;
	const json_t *js;
};

struct regex {
	pcre2_code *code;
	const char *src;
};

struct keyref {
	const char *key;
	size_t len;
};

struct pentry {
	const char *key;
	size_t len;
	uint32_t hash;
	struct snode *node;
};

struct patprop {
	struct regex re;
	struct snode *node;
};

struct depreq {
	struct keyref key;
	struct keyref *names;
	size_t n;
};

struct depsch {
	struct keyref key;
	struct snode *node;
};

struct snode;

struct dynanchor {
	const char *name;
	struct sinfo *info;
	const struct snode *node;
};

struct resource {
	const char *uri;
	const json_t *root;
	unsigned vocab;
	struct dynanchor *dyn;
	size_t ndyn, capdyn;
	struct resource *next;
};

enum fmt_kind {
	FMT_NONE, FMT_DATE_TIME, FMT_DATE, FMT_TIME, FMT_DURATION, FMT_EMAIL, FMT_HOSTNAME,
	FMT_IPV4, FMT_IPV6, FMT_UUID, FMT_URI, FMT_URI_REF, FMT_IRI, FMT_IRI_REF, FMT_JSON_POINTER,
	FMT_REL_JSON_POINTER, FMT_REGEX,
};

struct snode {
	const char *loc;               /* schema location, for messages */
	const struct resource *res;    /* for the dynamic scope */
	unsigned groups;               /* N_* */
	uint8_t types;                 /* T_* mask, 0 = any */
	bool is_bool, bval;
	bool unique, has_min, has_max, has_exmin, has_exmax, has_mult, has_const, has_enum;
	bool has_contains_limits;
	uint8_t format;                /* enum fmt_kind when asserting */
	uint8_t color;                 /* compile-time cycle check */
	struct num min, max, exmin, exmax, mult;
	size_t min_len, max_len, min_items, max_items, min_props, max_props;
	size_t min_contains, max_contains;
	const json_t *constv, *enumv;
	struct regex *pattern;
	struct keyref *required;
	size_t nrequired;
	struct pentry *props;          /* open-addressing table, nprops_cap slots */
	size_t nprops, props_cap;
	struct patprop *patprops;
	size_t npatprops;
	struct depreq *depreq;
	size_t ndepreq;
	struct depsch *depsch;
	size_t ndepsch;
	struct snode *addprops, *propnames, *items, *contains, *not_, *if_, *then_, *else_;
	struct snode *uneval_items, *uneval_props, *ref, *dynref;
	const char *dyn_name;          /* set when $dynamicRef may be redirected */
	const char *unresolved;        /* a $ref target the loader did not have: its name */
	struct snode **allof, **anyof, **oneof, **prefix;
	size_t nallof, nanyof, noneof, nprefix;
};

struct stash_schema {
	struct arena arena;
	struct snode *root;
	const char *name;
	json_t **docs;
	size_t ndocs, capdocs;
	pcre2_code **regexes;
	size_t nregexes, capregexes;
	pcre2_match_context *mctx;
	struct resource *resources;
	unsigned max_depth;
	unsigned long max_steps;
	int format_assert;
};

/* Compile-time knowledge about one JSON value used as a schema. */
struct sinfo {
	const json_t *js;
	const char *base;
	struct resource *res;
	const char *loc;
	struct snode *node;
};

struct pending {
	struct snode *node;
	const char *ref;
	const char *base;
	bool dynamic;
};

struct cstate {
	struct stash_schema *s;
	struct hmap infos;      /* json_t * -> struct sinfo * */
	struct hmap anchors;    /* "uri#name" -> struct sinfo * */
	struct hmap resmap;     /* uri -> struct resource * */
	struct pending *pend;
	size_t npend, cappend;
	stash_schema_loader loader;
	void *lctx;
	bool defer_missing;     /* opts->defer_missing */
	const char *missing;    /* the document the last load could not find */
	struct stash_error *err;
};

/* ------------------------------------------------------------------ */
/* Built-in metaschemas, parsed once per process. */

#define NMETA (sizeof(schema_meta_docs) / sizeof(schema_meta_docs[0]))

static pthread_once_t meta_once = PTHREAD_ONCE_INIT;
static json_t *meta_json[NMETA];
static struct stash_schema *meta_schema;
static char meta_error[STASH_ERROR_TEXT];

static const json_t *builtin_doc(const char *uri)
{
	size_t i, n = strlen(uri);

	/* "…/schema#" names the same document as "…/schema". */
	if (n && uri[n - 1] == '#')
		n--;
	for (i = 0; i < NMETA; i++)
		if (strlen(schema_meta_docs[i].uri) == n && !strncmp(schema_meta_docs[i].uri, uri, n))
			return meta_json[i];
	return NULL;
}

static int compile_doc(json_t *doc, const char *name, const char *base_uri,
		       stash_schema_loader loader, void *ctx,
		       const struct stash_schema_options *opts,
		       struct stash_schema **out, struct stash_error *err);

static void meta_init(void)
{
	struct stash_error e;
	json_error_t je;
	size_t i;

	for (i = 0; i < NMETA; i++) {
		meta_json[i] = json_loads(schema_meta_docs[i].text, 0, &je);
		if (!meta_json[i]) {
			snprintf(meta_error, sizeof(meta_error), "built-in metaschema %s: %s",
				 schema_meta_docs[i].uri, je.text);
			return;
		}
	}
	if (compile_doc(json_incref(meta_json[0]), "2020-12 metaschema", DRAFT_2020_12,
			NULL, NULL, NULL, &meta_schema, &e) < 0) {
		snprintf(meta_error, sizeof(meta_error), "built-in metaschema: %.400s", e.text);
		meta_schema = NULL;
		return;
	}
	meta_schema->max_depth = META_MAX_DEPTH;
}

/* Free the built-in metaschemas at exit so leak checkers see a clean heap. */
__attribute__((destructor)) static void meta_fini(void)
{
	size_t i;

	stash_schema_free(meta_schema);
	meta_schema = NULL;
	for (i = 0; i < NMETA; i++) {
		json_decref(meta_json[i]);
		meta_json[i] = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Gathering resources and anchors. */

static int cerr(struct cstate *cs, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cerr(struct cstate *cs, int code, const char *fmt, ...)
{
	char msg[STASH_ERROR_TEXT - 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return stash_error_set(cs->err, code, "schema %s: %s", cs->s->name, msg);
}

static int hold_doc(struct stash_schema *s, json_t *doc)
{
	if (s->ndocs == s->capdocs) {
		size_t ncap = s->capdocs ? s->capdocs * 2 : 4;
		json_t **nd = realloc(s->docs, ncap * sizeof(*nd));

		if (!nd)
			return -ENOMEM;
		s->docs = nd;
		s->capdocs = ncap;
	}
	s->docs[s->ndocs++] = doc;
	return 0;
}

static const json_t *find_metaschema(struct cstate *cs, const char *uri);

/* Which vocabularies a resource's "$schema" turns on. */
static int vocab_for(struct cstate *cs, const json_t *schema_kw, unsigned inherit, unsigned *out)
{
	static const struct { const char *uri; unsigned bit; } vocabs[] = {
		{ "https://json-schema.org/draft/2020-12/vocab/core", V_CORE },
		{ "https://json-schema.org/draft/2020-12/vocab/applicator", V_APPLICATOR },
		{ "https://json-schema.org/draft/2020-12/vocab/unevaluated", V_UNEVALUATED },
		{ "https://json-schema.org/draft/2020-12/vocab/validation", V_VALIDATION },
		{ "https://json-schema.org/draft/2020-12/vocab/meta-data", V_METADATA },
		{ "https://json-schema.org/draft/2020-12/vocab/format-annotation", V_FORMAT_ANN },
		{ "https://json-schema.org/draft/2020-12/vocab/format-assertion", V_FORMAT_ASSERT },
		{ "https://json-schema.org/draft/2020-12/vocab/content", V_CONTENT },
	};
	const json_t *meta, *voc, *v;
	const char *uri, *k;
	unsigned bits = V_CORE;
	size_t i;

	if (!schema_kw) {
		*out = inherit;
		return 0;
	}
	uri = json_string_value(schema_kw);
	if (!uri)
		return cerr(cs, EINVAL, "\"$schema\" must be a string");
	if (!strcmp(uri, DRAFT_2020_12) || !strcmp(uri, DRAFT_2020_12 "#")) {
		*out = V_ALL_2020;
		return 0;
	}
	if (strstr(uri, "json-schema.org/") && (strstr(uri, "/draft-0") || strstr(uri, "/draft/2019-09")))
		return cerr(cs, EINVAL, "\"$schema\" %s: only draft 2020-12 is supported", uri);
	meta = find_metaschema(cs, uri);
	if (!meta)
		return cerr(cs, EINVAL, "\"$schema\" %s: unknown metaschema", uri);
	voc = json_object_get(meta, "$vocabulary");
	if (!json_is_object(voc)) {
		*out = V_ALL_2020;
		return 0;
	}
	json_object_foreach((json_t *)voc, k, v) {
		for (i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++)
			if (!strcmp(k, vocabs[i].uri))
				break;
		if (i < sizeof(vocabs) / sizeof(vocabs[0]))
			bits |= vocabs[i].bit;
		else if (json_is_true(v))
			return cerr(cs, EINVAL, "metaschema %s requires unsupported vocabulary %s", uri, k);
	}
	*out = bits;
	return 0;
}

static struct resource *add_resource(struct cstate *cs, const char *uri, const json_t *root,
				     unsigned vocab)
{
	struct stash_schema *s = cs->s;
	struct resource *r = hmap_get(&cs->resmap, uri, strlen(uri));

	if (r)
		return r;       /* first definition wins */
	r = arena_alloc(&s->arena, sizeof(*r));
	if (!r)
		return NULL;
	r->uri = arena_strndup(&s->arena, uri, strlen(uri));
	if (!r->uri)
		return NULL;
	r->root = root;
	r->vocab = vocab;
	r->next = s->resources;
	s->resources = r;
	if (hmap_put(&cs->resmap, r->uri, strlen(r->uri), r) < 0)
		return NULL;
	return r;
}

static int add_anchor(struct cstate *cs, struct sinfo *info, const char *name, bool dynamic)
{
	struct stash_schema *s = cs->s;
	struct resource *r = info->res;
	size_t n = strlen(info->base) + strlen(name) + 2;
	char *key = arena_alloc(&s->arena, n);

	if (!key)
		return -ENOMEM;
	snprintf(key, n, "%s#%s", info->base, name);
	if (hmap_put(&cs->anchors, key, n - 1, info) < 0)
		return -ENOMEM;
	if (!dynamic)
		return 0;
	if (r->ndyn == r->capdyn) {
		size_t ncap = r->capdyn ? r->capdyn * 2 : 2;
		struct dynanchor *nd = realloc(r->dyn, ncap * sizeof(*nd));

		if (!nd)
			return -ENOMEM;
		r->dyn = nd;
		r->capdyn = ncap;
	}
	r->dyn[r->ndyn].name = key + strlen(info->base) + 1;
	r->dyn[r->ndyn].info = info;
	r->dyn[r->ndyn].node = NULL;
	r->ndyn++;
	return 0;
}

/* Append "/<escaped key>" to a location. */
static char *loc_child(struct cstate *cs, const char *loc, const char *key, size_t idx)
{
	struct buf b = {0};
	char *out;

	buf_str(&b, loc);
	buf_str(&b, "/");
	if (key) {
		for (; *key; key++) {
			if (*key == '~')
				buf_str(&b, "~0");
			else if (*key == '/')
				buf_str(&b, "~1");
			else
				buf_add(&b, key, 1);
		}
	} else {
		buf_printf(&b, "%zu", idx);
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	out = arena_strndup(&cs->s->arena, b.p, b.n);
	free(b.p);
	return out;
}

static const char *const kw_single[] = {
	"additionalProperties", "propertyNames", "items", "contains", "not", "if", "then",
	"else", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
};
static const char *const kw_map[] = {
	"properties", "patternProperties", "$defs", "dependentSchemas", "dependencies",
};
static const char *const kw_array[] = {
	"allOf", "anyOf", "oneOf", "prefixItems",
};

static int gather(struct cstate *cs, const json_t *js, const char *base, struct resource *res,
		  const char *loc, int depth)
{
	struct stash_schema *s = cs->s;
	struct sinfo *info;
	const json_t *v;
	size_t i;
	int rc;

	if (!json_is_object(js) && !json_is_boolean(js))
		return 0;
	if (hmap_get(&cs->infos, js, 0))
		return 0;
	if (depth > MAX_SCHEMA_NESTING)
		return cerr(cs, E2BIG, "schema nested deeper than %d levels", MAX_SCHEMA_NESTING);
	info = arena_alloc(&s->arena, sizeof(*info));
	if (!info)
		return -ENOMEM;
	info->js = js;
	info->base = base;
	info->res = res;
	info->loc = loc;
	if (hmap_put(&cs->infos, js, 0, info) < 0)
		return -ENOMEM;
	if (!json_is_object(js))
		return 0;

	v = json_object_get(js, "$id");
	if (json_is_string(v)) {
		char *uri = uri_resolve(base, json_string_value(v));
		char *hash;
		unsigned vocab;

		if (!uri)
			return -ENOMEM;
		hash = strchr(uri, '#');
		if (hash && hash[1]) {
			free(uri);
			return cerr(cs, EINVAL, "%s: \"$id\" must not have a fragment", loc);
		}
		if (hash)
			*hash = '\0';
		rc = vocab_for(cs, json_object_get(js, "$schema"), res->vocab, &vocab);
		if (rc < 0) {
			free(uri);
			return rc;
		}
		res = add_resource(cs, uri, js, vocab);
		free(uri);
		if (!res)
			return -ENOMEM;
		base = res->uri;
		info->base = base;
		info->res = res;
	}
	v = json_object_get(js, "$anchor");
	if (json_is_string(v) && (rc = add_anchor(cs, info, json_string_value(v), false)) < 0)
		return rc;
	v = json_object_get(js, "$dynamicAnchor");
	if (json_is_string(v) && (rc = add_anchor(cs, info, json_string_value(v), true)) < 0)
		return rc;

	for (i = 0; i < sizeof(kw_single) / sizeof(kw_single[0]); i++) {
		v = json_object_get(js, kw_single[i]);
		if (v) {
			const char *l = loc_child(cs, loc, kw_single[i], 0);

			if (!l)
				return -ENOMEM;
			if ((rc = gather(cs, v, base, res, l, depth + 1)) < 0)
				return rc;
		}
	}
	for (i = 0; i < sizeof(kw_map) / sizeof(kw_map[0]); i++) {
		const char *k;
		const json_t *m = json_object_get(js, kw_map[i]), *c;

		if (!json_is_object(m))
			continue;
		const char *l0 = loc_child(cs, loc, kw_map[i], 0);

		if (!l0)
			return -ENOMEM;
		json_object_foreach((json_t *)m, k, c) {
			const char *l = loc_child(cs, l0, k, 0);

			if (!l)
				return -ENOMEM;
			if ((rc = gather(cs, c, base, res, l, depth + 1)) < 0)
				return rc;
		}
	}
	for (i = 0; i < sizeof(kw_array) / sizeof(kw_array[0]); i++) {
		const json_t *a = json_object_get(js, kw_array[i]);
		size_t j;

		if (!json_is_array(a))
			continue;
		const char *l0 = loc_child(cs, loc, kw_array[i], 0);

		if (!l0)
			return -ENOMEM;
		for (j = 0; j < json_array_size(a); j++) {
			const char *l = loc_child(cs, l0, NULL, j);

			if (!l)
				return -ENOMEM;
			if ((rc = gather(cs, json_array_get(a, j), base, res, l, depth + 1)) < 0)
				return rc;
		}
	}
	return 0;
}

/* Register a whole document retrieved as @uri. */
static int add_document(struct cstate *cs, const json_t *doc, const char *uri, const char *loc)
{
	struct resource *res;
	unsigned vocab = V_ALL_2020;
	int rc;

	if (json_is_object(doc)) {
		rc = vocab_for(cs, json_object_get(doc, "$schema"), V_ALL_2020, &vocab);
		if (rc < 0)
			return rc;
	}
	res = add_resource(cs, uri, doc, vocab);
	if (!res)
		return -ENOMEM;
	return gather(cs, doc, res->uri, res, loc, 0);
}

/* A document by absolute URI: already known, built in, or from the loader. */
static struct resource *load_resource(struct cstate *cs, const char *uri, int *rc)
{
	struct resource *r = hmap_get(&cs->resmap, uri, strlen(uri));
	const json_t *b;
	json_t *doc;
	char *loc;

	*rc = 0;
	if (r)
		return r;
	b = builtin_doc(uri);
	if (b) {
		doc = json_incref((json_t *)b);
	} else {
		doc = cs->loader ? cs->loader(cs->lctx, uri) : NULL;
		if (!doc && cs->defer_missing) {
			cs->missing = arena_strndup(&cs->s->arena, uri, strlen(uri));
			*rc = cs->missing ? -ENOENT : -ENOMEM;
			return NULL;
		}
		if (!doc) {
			*rc = cerr(cs, EINVAL, "cannot resolve reference to %s", uri);
			return NULL;
		}
	}
	if (hold_doc(cs->s, doc) < 0) {
		json_decref(doc);
		*rc = -ENOMEM;
		return NULL;
	}
	loc = arena_alloc(&cs->s->arena, strlen(uri) + 2);
	if (!loc) {
		*rc = -ENOMEM;
		return NULL;
	}
	sprintf(loc, "%s#", uri);
	*rc = add_document(cs, doc, uri, loc);
	if (*rc < 0)
		return NULL;
	r = hmap_get(&cs->resmap, uri, strlen(uri));
	if (!r)
		*rc = cerr(cs, EINVAL, "cannot resolve reference to %s", uri);
	return r;
}

static const json_t *find_metaschema(struct cstate *cs, const char *uri)
{
	struct resource *r = hmap_get(&cs->resmap, uri, strlen(uri));
	const json_t *b;
	json_t *doc;

	if (r)
		return r->root;
	b = builtin_doc(uri);
	if (b)
		return b;
	if (!cs->loader)
		return NULL;
	doc = cs->loader(cs->lctx, uri);
	if (!doc)
		return NULL;
	/* Kept so that a later $ref to it finds the same document. */
	if (hold_doc(cs->s, doc) < 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* Resolve @ref against @base to the schema it names. */
static int resolve_ref(struct cstate *cs, const char *base, const char *ref,
		       struct sinfo **out, bool *dyn_anchor)
{
	char *full = uri_resolve(base, ref);
	char *frag;
	struct resource *res;
	struct sinfo *info;
	int rc = 0;

	*out = NULL;
	*dyn_anchor = false;
	if (!full)
		return -ENOMEM;
	frag = strchr(full, '#');
	if (frag) {
		*frag++ = '\0';
		pct_decode(frag);
	}
	res = load_resource(cs, full, &rc);
	if (!res)
		goto out;
	info = hmap_get(&cs->infos, res->root, 0);
	if (!frag || !*frag) {
		*out = info;
	} else if (frag[0] == '/') {
		const json_t *cur = res->root;
		char *tok = frag + 1, *next;
		const char *loc = info ? info->loc : "";

		for (;;) {
			next = strchr(tok, '/');
			if (next)
				*next = '\0';
			/* RFC 6901: ~1 before ~0. */
			char *r = tok, *w = tok;

			for (; *r; r++) {
				if (r[0] == '~' && r[1] == '1')
					*w++ = '/', r++;
				else if (r[0] == '~' && r[1] == '0')
					*w++ = '~', r++;
				else
					*w++ = *r;
			}
			*w = '\0';
			if (json_is_object(cur)) {
				cur = json_object_get(cur, tok);
			} else if (json_is_array(cur)) {
				char *end;
				unsigned long idx = strtoul(tok, &end, 10);

				cur = (*tok && !*end && (tok[0] != '0' || !tok[1])) ?
					json_array_get(cur, idx) : NULL;
			} else {
				cur = NULL;
			}
			if (!cur)
				break;
			struct sinfo *ci = hmap_get(&cs->infos, cur, 0);

			if (ci) {
				info = ci;
				loc = ci->loc;
			} else {
				loc = loc_child(cs, loc, tok, 0);
				if (!loc) {
					rc = -ENOMEM;
					goto out;
				}
			}
			if (!next)
				break;
			tok = next + 1;
		}
		if (cur && !hmap_get(&cs->infos, cur, 0) && info) {
			/* A schema outside the keywords we walk ("$ref" into an
			 * unknown keyword): register it on the spot. */
			rc = gather(cs, cur, info->base, info->res, loc, 0);
			if (rc < 0)
				goto out;
		}
		*out = cur ? hmap_get(&cs->infos, cur, 0) : NULL;
	} else {
		size_t n = strlen(full) + strlen(frag) + 2;
		char *key = malloc(n);

		if (!key) {
			rc = -ENOMEM;
			goto out;
		}
		snprintf(key, n, "%s#%s", full, frag);
		*out = hmap_get(&cs->anchors, key, n - 1);
		free(key);
		if (*out) {
			size_t i;

			for (i = 0; i < res->ndyn; i++)
				if (res->dyn[i].info == *out && !strcmp(res->dyn[i].name, frag))
					*dyn_anchor = true;
		}
	}
	if (!*out)
		rc = cerr(cs, EINVAL, "cannot resolve reference \"%s\"", ref);
out:
	free(full);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Turning gathered schemas into nodes. */

static int compile_node(struct cstate *cs, struct sinfo *info, struct snode **out);

static int child(struct cstate *cs, const struct sinfo *parent, const json_t *js, const char *kw,
		 struct snode **out)
{
	struct sinfo *ci = hmap_get(&cs->infos, js, 0);

	if (!ci)
		return cerr(cs, EINVAL, "%s/%s: a schema must be an object or a boolean",
			    parent->loc, kw);
	return compile_node(cs, ci, out);
}

static int schema_array(struct cstate *cs, struct sinfo *info, const char *kw,
			struct snode ***out, size_t *n)
{
	const json_t *a = json_object_get(info->js, kw);
	size_t i;
	int rc;

	if (!a)
		return 0;
	if (!json_is_array(a) || !json_array_size(a))
		return cerr(cs, EINVAL, "%s: \"%s\" must be a non-empty array of schemas",
			    info->loc, kw);
	*n = json_array_size(a);
	*out = arena_alloc(&cs->s->arena, *n * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (i = 0; i < *n; i++)
		if ((rc = child(cs, info, json_array_get(a, i), kw, &(*out)[i])) < 0)
			return rc;
	return 0;
}

static int get_num(struct cstate *cs, struct sinfo *info, const char *kw, struct num *out, bool *has)
{
	const json_t *v = json_object_get(info->js, kw);

	if (!v)
		return 0;
	if (!json_is_number(v))
		return cerr(cs, EINVAL, "%s: \"%s\" must be a number", info->loc, kw);
	out->js = v;
	out->is_int = json_is_integer(v);
	out->i = out->is_int ? json_integer_value(v) : 0;
	out->d = json_number_value(v);
	*has = true;
	return 0;
}

static int get_count(struct cstate *cs, struct sinfo *info, const char *kw, size_t *out)
{
	const json_t *v = json_object_get(info->js, kw);
	double d;

	if (!v)
		return 0;
	d = json_number_value(v);
	if (!json_is_number(v) || d < 0 || d != floor(d))
		return cerr(cs, EINVAL, "%s: \"%s\" must be a non-negative integer", info->loc, kw);
	*out = d >= 1.8e19 ? SIZE_MAX : (size_t)d;
	return 1;
}

static int compile_regex(struct cstate *cs, const char *loc, const char *kw, const char *src,
			 size_t len, struct regex *re)
{
	struct stash_schema *s = cs->s;
	char *pat = regex_translate(src, len);
	PCRE2_SIZE off;
	int ec;

	if (!pat)
		return -ENOMEM;
	re->src = arena_strndup(&s->arena, src, len);
	re->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
				 PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &off, NULL);
	free(pat);
	if (!re->code) {
		PCRE2_UCHAR msg[160];

		pcre2_get_error_message(ec, msg, sizeof(msg));
		return cerr(cs, EINVAL, "%s/%s: invalid regular expression \"%.100s\": %s",
			    loc, kw, src, (char *)msg);
	}
	/* JIT when the platform has it; the interpreter is the fallback. */
	pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
	if (s->nregexes == s->capregexes) {
		size_t ncap = s->capregexes ? s->capregexes * 2 : 8;
		pcre2_code **nr = realloc(s->regexes, ncap * sizeof(*nr));

		if (!nr) {
			pcre2_code_free(re->code);
			return -ENOMEM;
		}
		s->regexes = nr;
		s->capregexes = ncap;
	}
	s->regexes[s->nregexes++] = re->code;
	return 0;
}

static int compile_strings(struct cstate *cs, struct sinfo *info, const char *kw,
			   const json_t *a, struct keyref **out, size_t *n)
{
	size_t i;

	if (!json_is_array(a))
		return cerr(cs, EINVAL, "%s: \"%s\" must be an array of strings", info->loc, kw);
	*n = json_array_size(a);
	*out = arena_alloc(&cs->s->arena, (*n + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (i = 0; i < *n; i++) {
		const json_t *v = json_array_get(a, i);

		if (!json_is_string(v))
			return cerr(cs, EINVAL, "%s: \"%s\" must be an array of strings",
				    info->loc, kw);
		(*out)[i].key = json_string_value(v);
		(*out)[i].len = json_string_length(v);
	}
	return 0;
}

static enum fmt_kind format_kind(const char *f)
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

static int compile_object_kw(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	const json_t *js = info->js, *m, *v, *d;
	struct arena *a = &cs->s->arena;
	const char *k;
	size_t i;
	int rc;

	m = json_object_get(js, "properties");
	if (m) {
		if (!json_is_object(m))
			return cerr(cs, EINVAL, "%s: \"properties\" must be an object", info->loc);
		n->nprops = json_object_size(m);
		for (n->props_cap = 4; n->props_cap < n->nprops * 2; n->props_cap *= 2)
			;
		n->props = arena_alloc(a, n->props_cap * sizeof(*n->props));
		if (!n->props)
			return -ENOMEM;
		json_object_foreach((json_t *)m, k, v) {
			/* The iterator length keeps keys with NUL bytes whole. */
			size_t len = json_object_iter_key_len(json_object_key_to_iter(k));
			uint32_t h = hash_bytes(k, len);

			for (i = h & (n->props_cap - 1); n->props[i].key; i = (i + 1) & (n->props_cap - 1))
				;
			n->props[i].key = k;
			n->props[i].len = len;
			n->props[i].hash = h;
			if ((rc = child(cs, info, v, "properties", &n->props[i].node)) < 0)
				return rc;
		}
		n->groups |= N_OBJ;
	}
	m = json_object_get(js, "patternProperties");
	if (m) {
		if (!json_is_object(m))
			return cerr(cs, EINVAL, "%s: \"patternProperties\" must be an object",
				    info->loc);
		n->npatprops = json_object_size(m);
		n->patprops = arena_alloc(a, (n->npatprops + 1) * sizeof(*n->patprops));
		if (!n->patprops)
			return -ENOMEM;
		i = 0;
		json_object_foreach((json_t *)m, k, v) {
			size_t len = json_object_iter_key_len(json_object_key_to_iter(k));

			if ((rc = compile_regex(cs, info->loc, "patternProperties", k, len,
						&n->patprops[i].re)) < 0)
				return rc;
			if ((rc = child(cs, info, v, "patternProperties", &n->patprops[i].node)) < 0)
				return rc;
			i++;
		}
		n->groups |= N_OBJ;
	}
	v = json_object_get(js, "additionalProperties");
	if (v) {
		if ((rc = child(cs, info, v, "additionalProperties", &n->addprops)) < 0)
			return rc;
		n->groups |= N_OBJ;
	}
	v = json_object_get(js, "propertyNames");
	if (v) {
		if ((rc = child(cs, info, v, "propertyNames", &n->propnames)) < 0)
			return rc;
		n->groups |= N_OBJ;
	}
	/* "dependencies" (draft 2019-09 and before) is still honoured: its
	 * schema-valued entries act as dependentSchemas, its arrays as
	 * dependentRequired. */
	m = json_object_get(js, "dependentSchemas");
	d = json_object_get(js, "dependencies");
	if (m && !json_is_object(m))
		return cerr(cs, EINVAL, "%s: \"dependentSchemas\" must be an object", info->loc);
	if (!json_is_object(d))
		d = NULL;
	if (m || d) {
		n->depsch = arena_alloc(a, (json_object_size(m) + json_object_size(d) + 1) *
					   sizeof(*n->depsch));
		if (!n->depsch)
			return -ENOMEM;
	}
	for (i = 0; i < 2; i++) {
		const json_t *src = i ? d : m;

		json_object_foreach((json_t *)src, k, v) {
			struct depsch *e = &n->depsch[n->ndepsch];

			if (src == d && json_is_array(v))
				continue;
			e->key.key = k;
			e->key.len = json_object_iter_key_len(json_object_key_to_iter(k));
			if ((rc = child(cs, info, v, i ? "dependencies" : "dependentSchemas",
					&e->node)) < 0)
				return rc;
			n->ndepsch++;
			n->groups |= N_OBJ;
		}
	}
	return 0;
}

static int compile_validation_kw(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	static const struct { const char *name; uint8_t bits; } tnames[] = {
		{ "null", T_NULL }, { "boolean", T_BOOL }, { "object", T_OBJ },
		{ "array", T_ARR }, { "string", T_STR }, { "integer", T_INT },
		{ "number", T_INT | T_NUM },
	};
	const json_t *js = info->js, *v, *m, *d;
	struct arena *a = &cs->s->arena;
	const char *k;
	size_t i, j;
	int rc;

	v = json_object_get(js, "type");
	if (v) {
		size_t cnt = json_is_array(v) ? json_array_size(v) : 1;

		for (i = 0; i < cnt; i++) {
			const json_t *t = json_is_array(v) ? json_array_get(v, i) : v;
			const char *name = json_string_value(t);

			for (j = 0; name && j < sizeof(tnames) / sizeof(tnames[0]); j++)
				if (!strcmp(name, tnames[j].name))
					break;
			if (!name || j == sizeof(tnames) / sizeof(tnames[0]))
				return cerr(cs, EINVAL, "%s: unknown \"type\"", info->loc);
			n->types |= tnames[j].bits;
		}
		if (!n->types)
			return cerr(cs, EINVAL, "%s: \"type\" must not be empty", info->loc);
	}
	if ((v = json_object_get(js, "const"))) {
		n->has_const = true;
		n->constv = v;
		n->groups |= N_GENERIC;
	}
	if ((v = json_object_get(js, "enum"))) {
		if (!json_is_array(v))
			return cerr(cs, EINVAL, "%s: \"enum\" must be an array", info->loc);
		n->has_enum = true;
		n->enumv = v;
		n->groups |= N_GENERIC;
	}
	if ((rc = get_num(cs, info, "minimum", &n->min, &n->has_min)) < 0 ||
	    (rc = get_num(cs, info, "maximum", &n->max, &n->has_max)) < 0 ||
	    (rc = get_num(cs, info, "exclusiveMinimum", &n->exmin, &n->has_exmin)) < 0 ||
	    (rc = get_num(cs, info, "exclusiveMaximum", &n->exmax, &n->has_exmax)) < 0 ||
	    (rc = get_num(cs, info, "multipleOf", &n->mult, &n->has_mult)) < 0)
		return rc;
	if (n->has_mult && n->mult.d <= 0)
		return cerr(cs, EINVAL, "%s: \"multipleOf\" must be greater than 0", info->loc);
	if (n->has_min || n->has_max || n->has_exmin || n->has_exmax || n->has_mult)
		n->groups |= N_NUM;

	n->max_len = n->max_items = n->max_props = n->max_contains = SIZE_MAX;
	n->min_contains = 1;
	if ((rc = get_count(cs, info, "minLength", &n->min_len)) < 0)
		return rc;
	if (rc)
		n->groups |= N_STR;
	if ((rc = get_count(cs, info, "maxLength", &n->max_len)) < 0)
		return rc;
	if (rc)
		n->groups |= N_STR;
	if ((rc = get_count(cs, info, "minItems", &n->min_items)) < 0)
		return rc;
	if (rc)
		n->groups |= N_ARR;
	if ((rc = get_count(cs, info, "maxItems", &n->max_items)) < 0)
		return rc;
	if (rc)
		n->groups |= N_ARR;
	if ((rc = get_count(cs, info, "minContains", &n->min_contains)) < 0)
		return rc;
	if (rc)
		n->has_contains_limits = true;
	if ((rc = get_count(cs, info, "maxContains", &n->max_contains)) < 0)
		return rc;
	if (rc)
		n->has_contains_limits = true;
	if ((rc = get_count(cs, info, "minProperties", &n->min_props)) < 0)
		return rc;
	if (rc)
		n->groups |= N_OBJ;
	if ((rc = get_count(cs, info, "maxProperties", &n->max_props)) < 0)
		return rc;
	if (rc)
		n->groups |= N_OBJ;
	v = json_object_get(js, "uniqueItems");
	if (v) {
		if (!json_is_boolean(v))
			return cerr(cs, EINVAL, "%s: \"uniqueItems\" must be a boolean", info->loc);
		n->unique = json_is_true(v);
		if (n->unique)
			n->groups |= N_ARR;
	}
	v = json_object_get(js, "pattern");
	if (v) {
		if (!json_is_string(v))
			return cerr(cs, EINVAL, "%s: \"pattern\" must be a string", info->loc);
		n->pattern = arena_alloc(a, sizeof(*n->pattern));
		if (!n->pattern)
			return -ENOMEM;
		if ((rc = compile_regex(cs, info->loc, "pattern", json_string_value(v),
					json_string_length(v), n->pattern)) < 0)
			return rc;
		n->groups |= N_STR;
	}
	v = json_object_get(js, "required");
	if (v) {
		if ((rc = compile_strings(cs, info, "required", v, &n->required, &n->nrequired)) < 0)
			return rc;
		n->groups |= N_OBJ;
	}
	m = json_object_get(js, "dependentRequired");
	d = json_object_get(js, "dependencies");
	if (m && !json_is_object(m))
		return cerr(cs, EINVAL, "%s: \"dependentRequired\" must be an object", info->loc);
	if (!json_is_object(d))
		d = NULL;
	if (m || d) {
		n->depreq = arena_alloc(a, (json_object_size(m) + json_object_size(d) + 1) *
					   sizeof(*n->depreq));
		if (!n->depreq)
			return -ENOMEM;
	}
	for (i = 0; i < 2; i++) {
		const json_t *src = i ? d : m;

		json_object_foreach((json_t *)src, k, v) {
			struct depreq *e = &n->depreq[n->ndepreq];

			if (src == d && !json_is_array(v))
				continue;
			e->key.key = k;
			e->key.len = json_object_iter_key_len(json_object_key_to_iter(k));
			if ((rc = compile_strings(cs, info, i ? "dependencies" : "dependentRequired",
						  v, &e->names, &e->n)) < 0)
				return rc;
			n->ndepreq++;
			n->groups |= N_OBJ;
		}
	}
	return 0;
}

static int add_pending(struct cstate *cs, struct snode *n, const json_t *ref, const char *base,
		       bool dynamic)
{
	if (!json_is_string(ref))
		return cerr(cs, EINVAL, "%s: \"%s\" must be a string", n->loc,
			    dynamic ? "$dynamicRef" : "$ref");
	if (cs->npend == cs->cappend) {
		size_t ncap = cs->cappend ? cs->cappend * 2 : 16;
		struct pending *np = realloc(cs->pend, ncap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		cs->pend = np;
		cs->cappend = ncap;
	}
	cs->pend[cs->npend].node = n;
	cs->pend[cs->npend].ref = json_string_value(ref);
	cs->pend[cs->npend].base = base;
	cs->pend[cs->npend].dynamic = dynamic;
	cs->npend++;
	return 0;
}

/* Compile one schema; $ref targets are queued rather than followed, so a
 * long chain of references cannot exhaust the C stack. */
static int compile_node(struct cstate *cs, struct sinfo *info, struct snode **out)
{
	const json_t *js = info->js, *v;
	struct snode *n;
	unsigned vocab = info->res->vocab;
	int rc;

	if (info->node) {
		*out = info->node;
		return 0;
	}
	n = arena_alloc(&cs->s->arena, sizeof(*n));
	if (!n)
		return -ENOMEM;
	info->node = n;
	*out = n;
	n->loc = info->loc;
	n->res = info->res;
	n->max_len = n->max_items = n->max_props = n->max_contains = SIZE_MAX;
	n->min_contains = 1;
	if (json_is_boolean(js)) {
		n->is_bool = true;
		n->bval = json_is_true(js);
		return 0;
	}

	if ((v = json_object_get(js, "$ref")) && (rc = add_pending(cs, n, v, info->base, false)) < 0)
		return rc;
	if ((v = json_object_get(js, "$dynamicRef")) &&
	    (rc = add_pending(cs, n, v, info->base, true)) < 0)
		return rc;
	if (json_object_get(js, "$ref") || json_object_get(js, "$dynamicRef"))
		n->groups |= N_APPLY;

	if (vocab & V_APPLICATOR) {
		if ((rc = schema_array(cs, info, "allOf", &n->allof, &n->nallof)) < 0 ||
		    (rc = schema_array(cs, info, "anyOf", &n->anyof, &n->nanyof)) < 0 ||
		    (rc = schema_array(cs, info, "oneOf", &n->oneof, &n->noneof)) < 0 ||
		    (rc = schema_array(cs, info, "prefixItems", &n->prefix, &n->nprefix)) < 0)
			return rc;
		if (n->nallof || n->nanyof || n->noneof)
			n->groups |= N_APPLY;
		if (n->nprefix)
			n->groups |= N_ARR;
		if ((v = json_object_get(js, "not"))) {
			if ((rc = child(cs, info, v, "not", &n->not_)) < 0)
				return rc;
			n->groups |= N_APPLY;
		}
		if ((v = json_object_get(js, "if"))) {
			if ((rc = child(cs, info, v, "if", &n->if_)) < 0)
				return rc;
			n->groups |= N_APPLY;
			if ((v = json_object_get(js, "then")) &&
			    (rc = child(cs, info, v, "then", &n->then_)) < 0)
				return rc;
			if ((v = json_object_get(js, "else")) &&
			    (rc = child(cs, info, v, "else", &n->else_)) < 0)
				return rc;
		}
		if ((v = json_object_get(js, "items"))) {
			if ((rc = child(cs, info, v, "items", &n->items)) < 0)
				return rc;
			n->groups |= N_ARR;
		}
		if ((v = json_object_get(js, "contains"))) {
			if ((rc = child(cs, info, v, "contains", &n->contains)) < 0)
				return rc;
			n->groups |= N_ARR;
		}
		if ((rc = compile_object_kw(cs, info, n)) < 0)
			return rc;
	}
	if (vocab & V_UNEVALUATED) {
		if ((v = json_object_get(js, "unevaluatedItems"))) {
			if ((rc = child(cs, info, v, "unevaluatedItems", &n->uneval_items)) < 0)
				return rc;
			n->groups |= N_UNEVAL;
		}
		if ((v = json_object_get(js, "unevaluatedProperties"))) {
			if ((rc = child(cs, info, v, "unevaluatedProperties", &n->uneval_props)) < 0)
				return rc;
			n->groups |= N_UNEVAL;
		}
	}
	if (vocab & V_VALIDATION) {
		if ((rc = compile_validation_kw(cs, info, n)) < 0)
			return rc;
	}
	/* The limits only count when "contains" is there to count with. */
	if (!n->contains) {
		n->min_contains = 1;
		n->max_contains = SIZE_MAX;
	}
	v = json_object_get(js, "format");
	if (json_is_string(v) &&
	    ((vocab & V_FORMAT_ASSERT) || ((vocab & V_FORMAT_ANN) && cs->s->format_assert))) {
		n->format = (uint8_t)format_kind(json_string_value(v));
		if (n->format != FMT_NONE)
			n->groups |= N_STR;
	}
	return 0;
}

/*
 * A reference into a document the loader does not have (yet): with
 * defer_missing the schema compiles, and validation stops with a refusal
 * wherever the reference is reached, so the referred schema may be stored
 * afterwards.  Named as the store names schemas when the URI is one of its.
 */
static int missing_node(struct cstate *cs, const struct snode *from, struct snode **out)
{
	static const char prefix[] = "stashfs:///schemas/";
	const char *name = cs->missing;
	struct snode *n = arena_alloc(&cs->s->arena, sizeof(*n));

	if (!n)
		return -ENOMEM;
	if (!strncmp(name, prefix, sizeof(prefix) - 1))
		name += sizeof(prefix) - 1;
	n->loc = from->loc;
	n->res = from->res;
	n->unresolved = name;
	*out = n;
	return 0;
}

static int resolve_pending(struct cstate *cs)
{
	size_t i;
	int rc;

	/* The list grows while we walk it: targets bring their own refs. */
	for (i = 0; i < cs->npend; i++) {
		struct pending p = cs->pend[i];
		struct sinfo *target;
		struct snode *tn;
		bool dyn;

		rc = resolve_ref(cs, p.base, p.ref, &target, &dyn);
		if (rc == -ENOENT) {
			rc = missing_node(cs, p.node, &tn);
		} else if (rc == 0) {
			rc = compile_node(cs, target, &tn);
		}
		if (rc < 0)
			return rc;
		if (!p.dynamic) {
			p.node->ref = tn;
		} else {
			p.node->dynref = tn;
			if (dyn)
				p.node->dyn_name = strchr(p.ref, '#') + 1;
		}
	}
	return 0;
}

/* Every $dynamicAnchor may become a $dynamicRef target at run time. */
static int compile_dynamic_anchors(struct cstate *cs)
{
	struct resource *r;
	size_t i, before;
	int rc;

	do {
		before = cs->npend;
		for (r = cs->s->resources; r; r = r->next) {
			for (i = 0; i < r->ndyn; i++) {
				struct snode *dn;

				if ((rc = compile_node(cs, r->dyn[i].info, &dn)) < 0)
					return rc;
				r->dyn[i].node = dn;
			}
		}
		if ((rc = resolve_pending(cs)) < 0)
			return rc;
	} while (cs->npend != before);
	return 0;
}

/* A cycle of applicators on the same instance ({"$ref": "#"}) would recurse
 * forever whenever it is reached, so refuse it now. */
static int check_cycles(struct cstate *cs, struct snode *n, int depth)
{
	struct snode *next[8];
	size_t i, k = 0;
	int rc;

	if (n->color == 2 || n->is_bool)
		return 0;
	if (n->color == 1)
		return cerr(cs, E2BIG, "%s: reference loop: this schema applies itself to the same "
			    "value forever", n->loc);
	if (depth > 4096)
		return cerr(cs, E2BIG, "%s: references nested too deeply", n->loc);
	n->color = 1;
	next[k++] = n->ref;
	next[k++] = n->not_;
	next[k++] = n->if_;
	next[k++] = n->then_;
	next[k++] = n->else_;
	for (i = 0; i < k; i++)
		if (next[i] && (rc = check_cycles(cs, next[i], depth + 1)) < 0)
			return rc;
	for (i = 0; i < n->nallof; i++)
		if ((rc = check_cycles(cs, n->allof[i], depth + 1)) < 0)
			return rc;
	for (i = 0; i < n->nanyof; i++)
		if ((rc = check_cycles(cs, n->anyof[i], depth + 1)) < 0)
			return rc;
	for (i = 0; i < n->noneof; i++)
		if ((rc = check_cycles(cs, n->oneof[i], depth + 1)) < 0)
			return rc;
	for (i = 0; i < n->ndepsch; i++)
		if ((rc = check_cycles(cs, n->depsch[i].node, depth + 1)) < 0)
			return rc;
	n->color = 2;
	return 0;
}

static int check_all_cycles(struct cstate *cs)
{
	size_t i;
	int rc;

	for (i = 0; i < cs->infos.cap; i++) {
		struct sinfo *info = cs->infos.e[i].val;

		if (info && info->node && (rc = check_cycles(cs, info->node, 0)) < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Validation. */

struct ipath {
	const struct ipath *up;
	const char *key;        /* NULL: array index */
	size_t len;
	size_t index;
};

struct dscope {
	const struct resource *res;
	const struct dscope *up;
};

struct vctx {
	const struct stash_schema *s;
	struct stash_error *err;
	unsigned quiet;
	bool reported;
	unsigned depth;
	unsigned long steps;
	pcre2_match_data *md;
};

#define ANN_INLINE 4

/* Evaluated properties/items of one instance, by iteration index. */
struct ann {
	uint64_t *w;
	size_t nw;
	uint64_t inl[ANN_INLINE];
};

static int ann_init(struct ann *a, size_t n)
{
	a->nw = (n + 63) / 64;
	if (a->nw <= ANN_INLINE) {
		a->w = a->inl;
		memset(a->inl, 0, sizeof(a->inl));
		return 0;
	}
	a->w = calloc(a->nw, sizeof(uint64_t));
	return a->w ? 0 : -ENOMEM;
}

static void ann_free(struct ann *a)
{
	if (a->w != a->inl)
		free(a->w);
}

static inline void ann_set(struct ann *a, size_t i)
{
	if (a)
		a->w[i / 64] |= 1ull << (i % 64);
}

static inline bool ann_get(const struct ann *a, size_t i)
{
	return a->w[i / 64] & (1ull << (i % 64));
}

static void ann_merge(struct ann *dst, const struct ann *src)
{
	size_t i;

	for (i = 0; i < dst->nw; i++)
		dst->w[i] |= src->w[i];
}

static size_t ann_size(const json_t *inst)
{
	return json_is_object(inst) ? json_object_size(inst) : json_array_size(inst);
}

static void write_pointer(char *out, size_t cap, size_t *pos, const struct ipath *p)
{
	char tmp[32];
	const char *k;
	size_t n, i;

	if (!p)
		return;
	write_pointer(out, cap, pos, p->up);
	if (*pos + 1 < cap)
		out[(*pos)++] = '/';
	if (p->key) {
		k = p->key;
		n = p->len;
	} else {
		snprintf(tmp, sizeof(tmp), "%zu", p->index);
		k = tmp;
		n = strlen(tmp);
	}
	for (i = 0; i < n; i++) {
		const char *esc = k[i] == '~' ? "~0" : k[i] == '/' ? "~1" : NULL;

		if (esc) {
			if (*pos + 2 < cap) {
				out[(*pos)++] = esc[0];
				out[(*pos)++] = esc[1];
			}
		} else if (*pos + 1 < cap) {
			out[(*pos)++] = k[i];
		}
	}
	out[*pos < cap ? *pos : cap - 1] = '\0';
}

static int vfail(struct vctx *c, const struct snode *n, const struct ipath *path, const char *kw,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Record a failure unless a caller (anyOf, not, ...) is only probing. */
static int vfail(struct vctx *c, const struct snode *n, const struct ipath *path, const char *kw,
		 const char *fmt, ...)
{
	struct stash_error *e = c->err;
	char msg[STASH_ERROR_TEXT];
	size_t pos = 0;
	va_list ap;

	if (c->quiet || c->reported || !e)
		return 1;
	c->reported = true;
	e->pointer[0] = '\0';
	write_pointer(e->pointer, sizeof(e->pointer), &pos, path);
	snprintf(e->keyword, sizeof(e->keyword), "%s", kw ? kw : "");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->code = EINVAL;
	snprintf(e->text, sizeof(e->text), "%.100s: %.200s (schema %.60s, %.120s%s%s)",
		 e->pointer[0] ? e->pointer : "/", msg, c->s->name, n->loc, kw ? "/" : "",
		 kw ? kw : "");
	return 1;
}

static int vlimit(struct vctx *c, const char *what, unsigned long limit)
{
	if (!c->reported) {
		c->reported = true;
		stash_error_set(c->err, E2BIG, "validation stopped: %s limit (%lu) reached (schema %s)",
				what, limit, c->s->name);
	}
	return -E2BIG;
}

/*
 * Reaching a reference to a missing schema refuses the document, also
 * inside anyOf or not: whether it would have passed is unknown.
 */
static int vunresolved(struct vctx *c, const struct snode *n, const struct ipath *path)
{
	struct stash_error *e = c->err;
	char ptr[sizeof(e->pointer)];
	size_t pos = 0;

	if (!c->reported && e) {
		c->reported = true;
		ptr[0] = '\0';
		write_pointer(ptr, sizeof(ptr), &pos, path);
		stash_error_set(e, EINVAL, "%.100s: unresolved reference to schema %.120s "
				"(schema %.60s, %.120s/$ref)", ptr[0] ? ptr : "/", n->unresolved,
				c->s->name, n->loc);
		memcpy(e->pointer, ptr, sizeof(ptr));
		snprintf(e->keyword, sizeof(e->keyword), "$ref");
	}
	return -EINVAL;
}

/* Short rendering of a value for messages. */
static const char *show(const json_t *v, char *buf, size_t cap)
{
	size_t n;
	/* As the document spells it: 1E+2, not 100.0. */
	char *s = stash_json_dump(v, 0, &n);

	if (!s) {
		snprintf(buf, cap, "(value)");
		return buf;
	}
	s[--n] = '\0';         /* the newline */
	if (n >= cap && cap > 4)
		snprintf(buf, cap, "%.*s...", (int)(cap - 4), s);
	else
		snprintf(buf, cap, "%s", s);
	free(s);
	return buf;
}

static unsigned type_of(const json_t *v)
{
	double d;

	switch (json_typeof(v)) {
	case JSON_OBJECT: return T_OBJ;
	case JSON_ARRAY: return T_ARR;
	case JSON_STRING: return T_STR;
	case JSON_INTEGER: return T_INT;
	case JSON_REAL:
		d = json_real_value(v);
		return (isfinite(d) && d == floor(d)) ? T_INT : T_NUM;
	case JSON_TRUE:
	case JSON_FALSE: return T_BOOL;
	default: return T_NULL;
	}
}

static const char *type_name(unsigned t)
{
	switch (t) {
	case T_OBJ: return "an object";
	case T_ARR: return "an array";
	case T_STR: return "a string";
	case T_INT: return "an integer";
	case T_NUM: return "a number";
	case T_BOOL: return "a boolean";
	default: return "null";
	}
}

static void types_text(unsigned mask, char *buf, size_t cap)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ T_NULL, "null" }, { T_BOOL, "boolean" }, { T_OBJ, "object" }, { T_ARR, "array" },
		{ T_STR, "string" }, { T_INT | T_NUM, "number" }, { T_INT, "integer" },
	};
	size_t i, pos = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((mask & names[i].bit) != names[i].bit)
			continue;
		mask &= ~names[i].bit;
		pos += (size_t)snprintf(buf + pos, pos < cap ? cap - pos : 0, "%s%s",
					pos ? " or " : "", names[i].name);
		if (pos >= cap)
			break;
	}
}

static int num_cmp(const json_t *x, const struct num *l)
{
	double d;

	if (json_is_integer(x) && l->is_int) {
		json_int_t i = json_integer_value(x);

		return (i > l->i) - (i < l->i);
	}
	d = json_number_value(x);
	return (d > l->d) - (d < l->d);
}

static bool multiple_of(const json_t *x, const struct num *m)
{
	double v, q;

	if (json_is_integer(x) && m->is_int)
		return m->i > 0 && json_integer_value(x) % m->i == 0;
	v = json_number_value(x);
	if (v == 0)
		return true;
	q = v / m->d;
	if (!isfinite(q))
		/* Overflowed quotient: fmod is exact, so ask it. */
		return fmod(v, m->d) == 0;
	/* Doubles cannot hold decimal fractions exactly (0.0075 / 0.0001 is
	 * 74.99999999999999): accept a quotient within rounding of an integer. */
	return fabs(q - nearbyint(q)) < 1e-9;
}

static bool json_equal_num(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b))
		return json_integer_value(a) == json_integer_value(b);
	return json_number_value(a) == json_number_value(b);
}

/* Deep equality where 1 and 1.0 are the same value. */
static bool jeq(const json_t *a, const json_t *b)
{
	size_t i, n;

	if (a == b)
		return true;
	if (json_is_number(a) || json_is_number(b))
		return json_is_number(a) && json_is_number(b) && json_equal_num(a, b);
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
	case JSON_ARRAY:
		n = json_array_size(a);
		if (n != json_array_size(b))
			return false;
		for (i = 0; i < n; i++)
			if (!jeq(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	case JSON_OBJECT: {
		void *it;

		if (json_object_size(a) != json_object_size(b))
			return false;
		for (it = json_object_iter((json_t *)a); it; it = json_object_iter_next((json_t *)a, it)) {
			const json_t *bv = json_object_getn(b, json_object_iter_key(it),
							    json_object_iter_key_len(it));

			if (!bv || !jeq(json_object_iter_value(it), bv))
				return false;
		}
		return true;
	}
	default:
		return true;    /* true, false, null: same type is same value */
	}
}

/* A hash consistent with jeq: numerically equal numbers hash alike, and
 * objects hash independently of key order. */
static uint64_t jhash(const json_t *v)
{
	uint64_t h;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_INTEGER:
	case JSON_REAL: {
		double d = json_number_value(v);

		if (d == 0)
			d = 0;  /* -0.0 equals 0 */
		memcpy(&h, &d, sizeof(h));
		return h * 0x9e3779b97f4a7c15ull;
	}
	case JSON_STRING:
		return hash_bytes(json_string_value(v), json_string_length(v)) * 31 + 7;
	case JSON_ARRAY:
		h = 0x1234;
		for (i = 0; i < json_array_size(v); i++)
			h = h * 1099511628211ull + jhash(json_array_get(v, i));
		return h;
	case JSON_OBJECT: {
		void *it;

		h = 0x5678;
		for (it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it))
			h += hash_bytes(json_object_iter_key(it), json_object_iter_key_len(it)) *
			     (jhash(json_object_iter_value(it)) | 1);
		return h;
	}
	default:
		return json_typeof(v) + 1;
	}
}

/* Returns 1 if unique, 0 if not (with *i,*j the equal pair), <0 on error. */
static int all_unique(struct vctx *c, const json_t *arr, size_t *pi, size_t *pj)
{
	size_t n = json_array_size(arr), i, j, cap;
	size_t *slots;
	uint64_t *hashes;

	if (n <= 16) {
		for (i = 0; i < n; i++)
			for (j = i + 1; j < n; j++)
				if (jeq(json_array_get(arr, i), json_array_get(arr, j))) {
					*pi = i;
					*pj = j;
					return 0;
				}
		return 1;
	}
	for (cap = 32; cap < n * 2; cap *= 2)
		;
	slots = malloc(cap * sizeof(*slots));
	hashes = malloc(n * sizeof(*hashes));
	if (!slots || !hashes) {
		free(slots);
		free(hashes);
		return -ENOMEM;
	}
	memset(slots, 0xff, cap * sizeof(*slots));
	for (i = 0; i < n; i++) {
		const json_t *v = json_array_get(arr, i);
		size_t k;

		hashes[i] = jhash(v);
		c->steps++;
		for (k = hashes[i] & (cap - 1); slots[k] != SIZE_MAX; k = (k + 1) & (cap - 1)) {
			j = slots[k];
			if (hashes[j] == hashes[i] && jeq(json_array_get(arr, j), v)) {
				*pi = j;
				*pj = i;
				free(slots);
				free(hashes);
				return 0;
			}
		}
		slots[k] = i;
	}
	free(slots);
	free(hashes);
	return 1;
}

static size_t utf8_len(const char *s, size_t n)
{
	size_t i, cps = 0;

	for (i = 0; i < n; i++)
		cps += ((unsigned char)s[i] & 0xc0) != 0x80;
	return cps;
}

/* 1 match, 0 no match, <0 limit or error. */
static int regex_match(struct vctx *c, const struct regex *re, const char *s, size_t n)
{
	int rc;

	if (!c->md) {
		c->md = pcre2_match_data_create(1, NULL);
		if (!c->md)
			return -ENOMEM;
	}
	rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, 0, 0, c->md, c->s->mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (!c->reported) {
		c->reported = true;
		stash_error_set(c->err, E2BIG, "validation stopped: pattern \"%.80s\" gave up "
				"(match limit reached) (schema %s)", re->src, c->s->name);
	}
	return -E2BIG;
}

static bool format_ok(unsigned kind, const char *s, size_t n);

static int eval(struct vctx *c, const struct snode *n, const json_t *inst,
		const struct ipath *path, const struct dscope *scope, struct ann *ann);

static int eval_quiet(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	int r;

	c->quiet++;
	r = eval(c, n, inst, path, scope, ann);
	c->quiet--;
	return r;
}

static int eval_object(struct vctx *c, const struct snode *n, const json_t *inst,
		       const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	size_t size = json_object_size(inst), i, j;
	int r;

	if (size < n->min_props)
		return vfail(c, n, path, "minProperties", "object has %zu properties, fewer than %zu",
			     size, n->min_props);
	if (size > n->max_props)
		return vfail(c, n, path, "maxProperties", "object has %zu properties, more than %zu",
			     size, n->max_props);
	for (i = 0; i < n->nrequired; i++)
		if (!json_object_getn(inst, n->required[i].key, n->required[i].len))
			return vfail(c, n, path, "required", "required property \"%s\" is missing",
				     n->required[i].key);
	for (i = 0; i < n->ndepreq; i++) {
		const struct depreq *d = &n->depreq[i];

		if (!json_object_getn(inst, d->key.key, d->key.len))
			continue;
		for (j = 0; j < d->n; j++)
			if (!json_object_getn(inst, d->names[j].key, d->names[j].len))
				return vfail(c, n, path, "dependentRequired",
					     "property \"%s\" requires property \"%s\"",
					     d->key.key, d->names[j].key);
	}
	if (n->props || n->npatprops || n->addprops || n->propnames) {
		void *it;

		i = 0;
		for (it = json_object_iter((json_t *)inst); it;
		     it = json_object_iter_next((json_t *)inst, it), i++) {
			const char *key = json_object_iter_key(it);
			size_t klen = json_object_iter_key_len(it);
			const json_t *val = json_object_iter_value(it);
			struct ipath p = { path, key, klen, 0 };
			bool matched = false;

			if (n->propnames) {
				json_t *ks = json_stringn_nocheck(key, klen);

				if (!ks)
					return -ENOMEM;
				c->quiet++;
				r = eval(c, n->propnames, ks, &p, scope, NULL);
				c->quiet--;
				json_decref(ks);
				if (r < 0)
					return r;
				if (r)
					return vfail(c, n, &p, "propertyNames",
						     "property name \"%s\" is not allowed", key);
			}
			if (n->props) {
				uint32_t h = hash_bytes(key, klen);
				size_t mask = n->props_cap - 1;

				for (j = h & mask; n->props[j].key; j = (j + 1) & mask) {
					const struct pentry *e = &n->props[j];

					if (e->hash == h && e->len == klen && !memcmp(e->key, key, klen)) {
						matched = true;
						ann_set(ann, i);
						if ((r = eval(c, e->node, val, &p, scope, NULL)))
							return r;
						break;
					}
				}
			}
			for (j = 0; j < n->npatprops; j++) {
				r = regex_match(c, &n->patprops[j].re, key, klen);
				if (r < 0)
					return r;
				if (!r)
					continue;
				matched = true;
				ann_set(ann, i);
				if ((r = eval(c, n->patprops[j].node, val, &p, scope, NULL)))
					return r;
			}
			if (!matched && n->addprops) {
				ann_set(ann, i);
				c->quiet++;
				r = eval(c, n->addprops, val, &p, scope, NULL);
				c->quiet--;
				if (r < 0)
					return r;
				if (r) {
					/* Re-run loudly for the precise reason, unless the
					 * schema is plain false: then say so here. */
					if (n->addprops->is_bool)
						return vfail(c, n, &p, "additionalProperties",
							     "property \"%s\" is not allowed", key);
					return eval(c, n->addprops, val, &p, scope, NULL);
				}
			}
		}
	}
	for (i = 0; i < n->ndepsch; i++) {
		if (!json_object_getn(inst, n->depsch[i].key.key, n->depsch[i].key.len))
			continue;
		if ((r = eval(c, n->depsch[i].node, inst, path, scope, ann)))
			return r;
	}
	return 0;
}

static int eval_array(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	size_t size = json_array_size(inst), i, matches;
	int r;

	if (size < n->min_items)
		return vfail(c, n, path, "minItems", "array has %zu items, fewer than %zu",
			     size, n->min_items);
	if (size > n->max_items)
		return vfail(c, n, path, "maxItems", "array has %zu items, more than %zu",
			     size, n->max_items);
	if (n->unique && size > 1) {
		size_t a, b;

		r = all_unique(c, inst, &a, &b);
		if (r < 0)
			return r;
		if (!r)
			return vfail(c, n, path, "uniqueItems", "items %zu and %zu are equal", a, b);
	}
	for (i = 0; i < size && i < n->nprefix; i++) {
		struct ipath p = { path, NULL, 0, i };

		ann_set(ann, i);
		if ((r = eval(c, n->prefix[i], json_array_get(inst, i), &p, scope, NULL)))
			return r;
	}
	if (n->items) {
		for (i = n->nprefix; i < size; i++) {
			struct ipath p = { path, NULL, 0, i };

			ann_set(ann, i);
			if ((r = eval(c, n->items, json_array_get(inst, i), &p, scope, NULL)))
				return r;
		}
	}
	if (n->contains) {
		matches = 0;
		for (i = 0; i < size; i++) {
			struct ipath p = { path, NULL, 0, i };

			r = eval_quiet(c, n->contains, json_array_get(inst, i), &p, scope, NULL);
			if (r < 0)
				return r;
			if (!r) {
				matches++;
				ann_set(ann, i);
				/* Without annotations to collect, stop once the answer is known. */
				if (!ann && matches >= n->min_contains && n->max_contains == SIZE_MAX)
					break;
				if (matches > n->max_contains)
					break;
			}
		}
		if (matches < n->min_contains)
			return vfail(c, n, path, "contains", n->min_contains == 1 ?
				     "no item matches the \"contains\" schema" :
				     "%zu items match the \"contains\" schema, fewer than minContains %zu",
				     matches, n->min_contains);
		if (matches > n->max_contains)
			return vfail(c, n, path, "maxContains",
				     "more than maxContains %zu items match the \"contains\" schema",
				     n->max_contains);
	}
	return 0;
}

static int eval_string(struct vctx *c, const struct snode *n, const json_t *inst,
		       const struct ipath *path)
{
	const char *s = json_string_value(inst);
	size_t bytes = json_string_length(inst);
	int r;

	/* A code point takes 1 to 4 bytes: count only when bytes cannot decide. */
	if (n->min_len && bytes / 4 < n->min_len) {
		size_t cps = utf8_len(s, bytes);

		if (cps < n->min_len)
			return vfail(c, n, path, "minLength",
				     "string is %zu characters long, shorter than %zu",
				     cps, n->min_len);
	}
	if (bytes > n->max_len) {
		size_t cps = utf8_len(s, bytes);

		if (cps > n->max_len)
			return vfail(c, n, path, "maxLength",
				     "string is %zu characters long, longer than %zu",
				     cps, n->max_len);
	}
	if (n->pattern) {
		r = regex_match(c, n->pattern, s, bytes);
		if (r < 0)
			return r;
		if (!r)
			return vfail(c, n, path, "pattern", "string does not match pattern \"%.80s\"",
				     n->pattern->src);
	}
	if (n->format && !format_ok(n->format, s, bytes))
		return vfail(c, n, path, "format", "string is not a valid format");
	return 0;
}

static int eval_number(struct vctx *c, const struct snode *n, const json_t *inst,
		       const struct ipath *path)
{
	char b1[48], b2[48];

	if (n->has_min && num_cmp(inst, &n->min) < 0)
		return vfail(c, n, path, "minimum", "%s is less than the minimum %s",
			     show(inst, b1, sizeof(b1)), show(n->min.js, b2, sizeof(b2)));
	if (n->has_max && num_cmp(inst, &n->max) > 0)
		return vfail(c, n, path, "maximum", "%s is greater than the maximum %s",
			     show(inst, b1, sizeof(b1)), show(n->max.js, b2, sizeof(b2)));
	if (n->has_exmin && num_cmp(inst, &n->exmin) <= 0)
		return vfail(c, n, path, "exclusiveMinimum", "%s is not greater than %s",
			     show(inst, b1, sizeof(b1)), show(n->exmin.js, b2, sizeof(b2)));
	if (n->has_exmax && num_cmp(inst, &n->exmax) >= 0)
		return vfail(c, n, path, "exclusiveMaximum", "%s is not less than %s",
			     show(inst, b1, sizeof(b1)), show(n->exmax.js, b2, sizeof(b2)));
	if (n->has_mult && !multiple_of(inst, &n->mult))
		return vfail(c, n, path, "multipleOf", "%s is not a multiple of %s",
			     show(inst, b1, sizeof(b1)), show(n->mult.js, b2, sizeof(b2)));
	return 0;
}

static const struct snode *dyn_target(const struct snode *n, const struct dscope *scope)
{
	const struct snode *best = NULL;
	const struct dscope *s;
	size_t i;

	/* The outermost resource in the dynamic scope that has the anchor wins. */
	for (s = scope; s; s = s->up)
		for (i = 0; i < s->res->ndyn; i++)
			if (!strcmp(s->res->dyn[i].name, n->dyn_name) && s->res->dyn[i].node)
				best = s->res->dyn[i].node;
	return best ? best : n->dynref;
}

static int eval_apply(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	size_t i, asize = ann ? ann_size(inst) : 0, passed;
	struct ann tmp;
	int r;

	if (n->ref && (r = eval(c, n->ref, inst, path, scope, ann)))
		return r;
	if (n->dynref) {
		const struct snode *t = n->dyn_name ? dyn_target(n, scope) : n->dynref;

		if ((r = eval(c, t, inst, path, scope, ann)))
			return r;
	}
	for (i = 0; i < n->nallof; i++)
		if ((r = eval(c, n->allof[i], inst, path, scope, ann)))
			return r;
	if (n->nanyof) {
		passed = 0;
		for (i = 0; i < n->nanyof; i++) {
			if (ann && (r = ann_init(&tmp, asize)) < 0)
				return r;
			r = eval_quiet(c, n->anyof[i], inst, path, scope, ann ? &tmp : NULL);
			if (ann) {
				if (!r)
					ann_merge(ann, &tmp);
				ann_free(&tmp);
			}
			if (r < 0)
				return r;
			if (!r) {
				passed++;
				/* Every passing branch adds annotations; else one is enough. */
				if (!ann)
					break;
			}
		}
		if (!passed) {
			if (n->nanyof == 1)
				return eval(c, n->anyof[0], inst, path, scope, NULL);
			return vfail(c, n, path, "anyOf", "value matches none of the %zu anyOf schemas",
				     n->nanyof);
		}
	}
	if (n->noneof) {
		size_t first = 0;

		passed = 0;
		for (i = 0; i < n->noneof && passed < 2; i++) {
			if (ann && (r = ann_init(&tmp, asize)) < 0)
				return r;
			r = eval_quiet(c, n->oneof[i], inst, path, scope, ann ? &tmp : NULL);
			if (ann) {
				if (!r && !passed)
					ann_merge(ann, &tmp);
				ann_free(&tmp);
			}
			if (r < 0)
				return r;
			if (!r && !passed++)
				first = i;
		}
		if (!passed) {
			if (n->noneof == 1)
				return eval(c, n->oneof[0], inst, path, scope, NULL);
			return vfail(c, n, path, "oneOf", "value matches none of the %zu oneOf schemas",
				     n->noneof);
		}
		if (passed > 1)
			return vfail(c, n, path, "oneOf",
				     "value matches oneOf schemas %zu and %zu, but must match exactly one",
				     first, i - 1);
	}
	if (n->not_) {
		r = eval_quiet(c, n->not_, inst, path, scope, NULL);
		if (r < 0)
			return r;
		if (!r)
			return vfail(c, n, path, "not", "value must not match the \"not\" schema");
	}
	if (n->if_ && (n->then_ || n->else_ || ann)) {
		if (ann && (r = ann_init(&tmp, asize)) < 0)
			return r;
		r = eval_quiet(c, n->if_, inst, path, scope, ann ? &tmp : NULL);
		if (ann) {
			if (!r)
				ann_merge(ann, &tmp);
			ann_free(&tmp);
		}
		if (r < 0)
			return r;
		if (!r && n->then_ && (r = eval(c, n->then_, inst, path, scope, ann)))
			return r;
		if (r == 1 && n->else_ && (r = eval(c, n->else_, inst, path, scope, ann)))
			return r;
	}
	return 0;
}

static int eval_uneval(struct vctx *c, const struct snode *n, const json_t *inst,
		       const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	size_t i = 0;
	int r;

	if (json_is_object(inst) && n->uneval_props) {
		void *it;

		for (it = json_object_iter((json_t *)inst); it;
		     it = json_object_iter_next((json_t *)inst, it), i++) {
			struct ipath p = { path, json_object_iter_key(it),
					   json_object_iter_key_len(it), 0 };

			if (ann_get(ann, i))
				continue;
			if (n->uneval_props->is_bool && !n->uneval_props->bval)
				return vfail(c, n, &p, "unevaluatedProperties",
					     "property \"%s\" is not allowed", p.key);
			if ((r = eval(c, n->uneval_props, json_object_iter_value(it), &p, scope, NULL)))
				return r;
			ann_set(ann, i);
		}
	} else if (json_is_array(inst) && n->uneval_items) {
		for (i = 0; i < json_array_size(inst); i++) {
			struct ipath p = { path, NULL, 0, i };

			if (ann_get(ann, i))
				continue;
			if (n->uneval_items->is_bool && !n->uneval_items->bval)
				return vfail(c, n, &p, "unevaluatedItems", "item %zu is not allowed", i);
			if ((r = eval(c, n->uneval_items, json_array_get(inst, i), &p, scope, NULL)))
				return r;
			ann_set(ann, i);
		}
	}
	return 0;
}

static int eval_body(struct vctx *c, const struct snode *n, const json_t *inst,
		     const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	unsigned t = type_of(inst);
	char b1[80], b2[80];
	size_t i;
	int r;

	if (n->types && !(n->types & t)) {
		types_text(n->types, b2, sizeof(b2));
		return vfail(c, n, path, "type", "value is %s, not %s", type_name(t), b2);
	}
	if (n->groups & N_GENERIC) {
		if (n->has_const && !jeq(inst, n->constv))
			return vfail(c, n, path, "const", "value %s is not the constant %s",
				     show(inst, b1, sizeof(b1)), show(n->constv, b2, sizeof(b2)));
		if (n->has_enum) {
			size_t cnt = json_array_size(n->enumv);

			for (i = 0; i < cnt; i++)
				if (jeq(inst, json_array_get(n->enumv, i)))
					break;
			if (i == cnt)
				return vfail(c, n, path, "enum", "value %s is not one of the enum",
					     show(inst, b1, sizeof(b1)));
		}
	}
	switch (t) {
	case T_OBJ:
		if ((n->groups & N_OBJ) && (r = eval_object(c, n, inst, path, scope, ann)))
			return r;
		break;
	case T_ARR:
		if ((n->groups & N_ARR) && (r = eval_array(c, n, inst, path, scope, ann)))
			return r;
		break;
	case T_STR:
		if ((n->groups & N_STR) && (r = eval_string(c, n, inst, path)))
			return r;
		break;
	case T_INT:
	case T_NUM:
		if ((n->groups & N_NUM) && (r = eval_number(c, n, inst, path)))
			return r;
		break;
	}
	if (n->groups & N_APPLY)
		return eval_apply(c, n, inst, path, scope, ann);
	return 0;
}

static int eval(struct vctx *c, const struct snode *n, const json_t *inst,
		const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	struct dscope mine;
	struct ann local;
	int r;

	if (n->is_bool)
		return n->bval ? 0 : vfail(c, n, path, NULL, "no value is allowed here");
	if (n->unresolved)
		return vunresolved(c, n, path);
	if (++c->steps > c->s->max_steps)
		return vlimit(c, "evaluation step", c->s->max_steps);
	if (c->depth >= c->s->max_depth)
		return vlimit(c, "recursion depth", c->s->max_depth);
	if (!scope || scope->res != n->res) {
		mine.res = n->res;
		mine.up = scope;
		scope = &mine;
	}
	c->depth++;
	if ((n->groups & N_UNEVAL) &&
	    ((n->uneval_props && json_is_object(inst)) || (n->uneval_items && json_is_array(inst)))) {
		/* This node's unevaluated* sees only its own subschemas'
		 * annotations, never its siblings', hence a fresh set. */
		r = ann_init(&local, ann_size(inst));
		if (!r)
			r = eval_body(c, n, inst, path, scope, &local);
		if (!r)
			r = eval_uneval(c, n, inst, path, scope, &local);
		if (!r && ann)
			ann_merge(ann, &local);
		ann_free(&local);
	} else {
		r = eval_body(c, n, inst, path, scope, ann);
	}
	c->depth--;
	return r;
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

		while (i < n && hexval((unsigned char)s[i]) >= 0)
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
		    (ch == '%' && (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0))) {
			free(z);
			return false;
		}
	}
	uri_split(z, &u);
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
	pat = regex_translate(s, n);
	if (!pat)
		return false;
	code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off, NULL);
	free(pat);
	pcre2_code_free(code);
	return code != NULL;
}

static bool format_ok(unsigned kind, const char *s, size_t n)
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
			} else if (hexval((unsigned char)s[i]) < 0) {
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

/* ------------------------------------------------------------------ */
/* Public API. */

static int validate_with(const struct stash_schema *s, const json_t *inst, struct stash_error *err)
{
	struct vctx c = { .s = s, .err = err };
	int r;

	stash_error_clear(err);
	r = eval(&c, s->root, inst, NULL, NULL, NULL);
	if (c.md)
		pcre2_match_data_free(c.md);
	if (r > 0)
		return -EINVAL;
	return r;
}

int stash_schema_validate(const struct stash_schema *schema, const json_t *instance,
			  struct stash_error *err)
{
	if (!schema || !instance)
		return stash_error_set(err, EINVAL, "no schema or no document to validate");
	return validate_with(schema, instance, err);
}

void stash_schema_free(struct stash_schema *s)
{
	struct resource *r;
	size_t i;

	if (!s)
		return;
	for (r = s->resources; r; r = r->next)
		free(r->dyn);
	for (i = 0; i < s->nregexes; i++)
		pcre2_code_free(s->regexes[i]);
	free(s->regexes);
	pcre2_match_context_free(s->mctx);
	for (i = 0; i < s->ndocs; i++)
		json_decref(s->docs[i]);
	free(s->docs);
	arena_free(&s->arena);
	free(s);
}

/* Compile @doc (a reference we own) without checking it against a
 * metaschema; the caller has done that. */
static int compile_doc(json_t *doc, const char *name, const char *base_uri,
		       stash_schema_loader loader, void *ctx,
		       const struct stash_schema_options *opts,
		       struct stash_schema **out, struct stash_error *err)
{
	struct cstate cs = { .loader = loader, .lctx = ctx, .err = err,
			     .defer_missing = opts && opts->defer_missing };
	struct stash_schema *s;
	struct sinfo *root;
	const char *uri;
	char *loc;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		json_decref(doc);
		return stash_error_set(err, ENOMEM, "out of memory compiling a schema");
	}
	cs.s = s;
	s->name = arena_strndup(&s->arena, name ? name : "(unnamed)",
				strlen(name ? name : "(unnamed)"));
	s->max_depth = opts && opts->max_depth ? opts->max_depth : DEFAULT_MAX_DEPTH;
	s->max_steps = opts && opts->max_steps ? opts->max_steps : DEFAULT_MAX_STEPS;
	s->format_assert = opts ? opts->format_assert : 0;
	if (!s->name || hold_doc(s, doc) < 0) {
		json_decref(doc);
		rc = -ENOMEM;
		goto out;
	}
	s->mctx = pcre2_match_context_create(NULL);
	if (!s->mctx) {
		rc = -ENOMEM;
		goto out;
	}
	pcre2_set_match_limit(s->mctx, REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(s->mctx, REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(s->mctx, REGEX_HEAP_LIMIT_KIB);

	/* Without a retrieval URI, relative references still need a base. */
	uri = base_uri && *base_uri ? base_uri : "stashfs:///schemas/(unnamed)";
	loc = arena_strndup(&s->arena, "#", 1);
	if (!loc) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = add_document(&cs, doc, uri, loc)) < 0)
		goto out;
	root = hmap_get(&cs.infos, doc, 0);
	if (!root) {
		rc = cerr(&cs, EINVAL, "a schema must be an object or a boolean");
		goto out;
	}
	if ((rc = compile_node(&cs, root, &s->root)) < 0 ||
	    (rc = resolve_pending(&cs)) < 0 ||
	    (rc = compile_dynamic_anchors(&cs)) < 0 ||
	    (rc = check_all_cycles(&cs)) < 0)
		goto out;
out:
	hmap_free(&cs.infos);
	hmap_free(&cs.anchors);
	hmap_free(&cs.resmap);
	free(cs.pend);
	if (rc < 0) {
		if (rc == -ENOMEM && (!err || err->code != ENOMEM))
			stash_error_set(err, ENOMEM, "out of memory compiling schema %s", s->name);
		stash_schema_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int stash_schema_compile(const json_t *doc, const char *name, const char *base_uri,
			 stash_schema_loader loader, void *ctx,
			 const struct stash_schema_options *opts,
			 struct stash_schema **out, struct stash_error *err)
{
	size_t limit = opts && opts->max_schema_bytes ? opts->max_schema_bytes :
		       DEFAULT_MAX_SCHEMA_BYTES;
	const char *label = name ? name : "(unnamed)";
	struct stash_schema *meta = NULL;
	struct stash_error merr;
	const json_t *sk;
	json_t *copy;
	size_t size;
	int rc;

	*out = NULL;
	stash_error_clear(err);
	if (!doc)
		return stash_error_set(err, EINVAL, "schema %s: no document", label);
	if (!json_is_object(doc) && !json_is_boolean(doc))
		return stash_error_set(err, EINVAL, "schema %s: a schema must be an object or a boolean",
				       label);
	size = json_dumpb(doc, NULL, 0, JSON_COMPACT);
	if (size > limit)
		return stash_error_set(err, E2BIG, "schema %s: %zu bytes, over the %zu byte limit",
				       label, size, limit);
	pthread_once(&meta_once, meta_init);
	if (!meta_schema)
		return stash_error_set(err, ENOMEM, "%s", meta_error);

	/* Our own copy: the caller may change or free @doc afterwards. */
	copy = json_deep_copy(doc);
	if (!copy)
		return stash_error_set(err, ENOMEM, "out of memory copying schema %s", label);

	sk = json_is_object(copy) ? json_object_get(copy, "$schema") : NULL;
	if (!sk || (json_is_string(sk) && (!strcmp(json_string_value(sk), DRAFT_2020_12) ||
					   !strcmp(json_string_value(sk), DRAFT_2020_12 "#")))) {
		meta = meta_schema;
	} else if (json_is_string(sk)) {
		/* A custom metaschema: it must itself be a 2020-12 schema, and it
		 * decides what a valid schema is for this document. */
		const char *muri = json_string_value(sk);
		json_t *mdoc = NULL;
		struct stash_schema *tmp;

		if (strstr(muri, "json-schema.org/") &&
		    (strstr(muri, "/draft-0") || strstr(muri, "/draft/2019-09"))) {
			rc = stash_error_set(err, EINVAL,
					     "schema %s: \"$schema\" %s: only draft 2020-12 is supported",
					     label, muri);
			json_decref(copy);
			return rc;
		}
		mdoc = loader ? loader(ctx, muri) : NULL;
		if (!mdoc) {
			rc = stash_error_set(err, EINVAL, "schema %s: unknown metaschema %s",
					     label, muri);
			json_decref(copy);
			return rc;
		}
		rc = stash_schema_compile(mdoc, muri, muri, loader, ctx, NULL, &tmp, &merr);
		json_decref(mdoc);
		if (rc < 0) {
			rc = stash_error_set(err, merr.code ? merr.code : -rc,
					     "schema %s: metaschema %s: %.300s", label, muri, merr.text);
			json_decref(copy);
			return rc;
		}
		meta = tmp;
	} else {
		json_decref(copy);
		return stash_error_set(err, EINVAL, "schema %s: \"$schema\" must be a string", label);
	}
	rc = validate_with(meta, copy, &merr);
	if (meta != meta_schema)
		stash_schema_free(meta);
	if (rc < 0) {
		json_decref(copy);
		if (rc == -EINVAL)
			return stash_error_set(err, EINVAL, "schema %s is not a valid JSON Schema: %s",
					       label, merr.text);
		return stash_error_set(err, -rc, "schema %s: %s", label, merr.text);
	}
	return compile_doc(copy, name, base_uri, loader, ctx, opts, out, err);
}
