/* SPDX-License-Identifier: MIT */
/*
 * schema_priv.h - what the schema_*.c files share: the compiled form of a
 * schema, the compile-time state, and the leaf helpers (arena, hash map,
 * growable buffer, URI resolution, ECMA-262 regex translation, formats).
 *
 * Who calls whom (downward only): schema_compile.c uses schema_resolve.c
 * (resources, anchors, $ref targets), schema_eval.c (checking a schema
 * against its metaschema), schema_format.c and schema_regex.c; schema_eval.c
 * uses schema_format.c; everything uses schema_util.c.  Not a public header:
 * include/stashfs/schema.h is the API.
 */
#ifndef STASHFS_SCHEMA_PRIV_H
#define STASHFS_SCHEMA_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "stashfs/json.h"
#include "stashfs/schema.h"

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
/* Leaf helpers (schema_util.c).  Arena: every node and string of a
 * compiled schema lives in one, so freeing is one walk and nodes sit close
 * together in memory. */

struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};
struct arena {
	struct chunk *head;
};

/* Returns zeroed memory, or NULL when out of memory; lives until the arena
 * is freed. */
void *schema_arena_alloc(struct arena *a, size_t n);
char *schema_arena_strndup(struct arena *a, const char *s, size_t n);
void schema_arena_free(struct arena *a);

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

/* FNV-1a over @n bytes: property names at compile and validation time. */
uint32_t schema_hash(const void *p, size_t n);
/* The value stored under @key, or NULL. */
void *schema_hmap_get(const struct hmap *m, const void *key, size_t len);
/* Insert or replace; returns -ENOMEM on failure. */
int schema_hmap_put(struct hmap *m, const void *key, size_t len, void *val);
void schema_hmap_free(struct hmap *m);

/* Growable byte buffer for URIs, pointers and regex translation; out of
 * memory sets oom and later additions do nothing. */
struct buf {
	char *p;
	size_t n, cap;
	int oom;
};

void schema_buf_add(struct buf *b, const char *s, size_t n);
void schema_buf_str(struct buf *b, const char *s);
void schema_buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Returns the string (caller frees) or NULL when out of memory. */
char *schema_buf_take(struct buf *b);
/* The value of one hex digit, or -1. */
int schema_hexval(int c);

/* ------------------------------------------------------------------ */
/* URI references, RFC 3986 (schema_uri.c). */

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_len, auth_len, path_len, query_len, frag_len;
	bool has_scheme, has_auth, has_query, has_frag;
};

/* Split @s into its five components; pointers into @s, nothing allocated. */
void schema_uri_split(const char *s, struct uri *u);
/* Resolve @ref against @base (may be NULL).  Returns a new string (caller
 * frees) or NULL when out of memory. */
char *schema_uri_resolve(const char *base, const char *ref);
/* Percent-decode in place (fragments may be percent-encoded, RFC 6901 6). */
void schema_pct_decode(char *s);

/* ------------------------------------------------------------------ */
/* ECMA-262 regexes on PCRE2 (schema_regex.c). */

/* Translate an ECMA-262 pattern into PCRE2 syntax; returns a new string
 * (caller frees) or NULL when out of memory. */
char *schema_regex_translate(const char *src, size_t len);


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
/* Formats (schema_format.c), asserted only on request. */

/* The format named @f, or FMT_NONE for one we do not check. */
enum fmt_kind schema_format_kind(const char *f);
/* Whether @s (@n bytes) is a valid instance of format @kind. */
bool schema_format_ok(unsigned kind, const char *s, size_t n);

/* ------------------------------------------------------------------ */
/* Built-in metaschemas (schema_meta.c), parsed once per process. */

/* Parse them all; 0, or -EINVAL with the reason in @why (@cap bytes).
 * Called once, before any schema is compiled. */
int schema_builtin_parse(char *why, size_t cap);
/* The built-in document named @uri (a trailing '#' ignored), or NULL.
 * Borrowed: lives until the process exits. */
const json_t *schema_builtin_doc(const char *uri);

/* ------------------------------------------------------------------ */
/* Gathering resources and resolving references (schema_resolve.c). */

/* Set @cs->err to "schema NAME: <message>" with errno @code; returns -@code. */
int schema_cerr(struct cstate *cs, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Keep a reference to @doc (stolen) for the schema's lifetime. */
int schema_hold_doc(struct stash_schema *s, json_t *doc);
/* Register a whole document retrieved as @uri: its resources, anchors and
 * every subschema's struct sinfo, located at @loc. */
int schema_add_document(struct cstate *cs, const json_t *doc, const char *uri, const char *loc);
/* Resolve @ref against @base to the schema it names: 0 with *@out set,
 * -ENOENT when the loader lacks the document and missing ones are deferred,
 * other negative errno with @cs->err set.  *@dyn_anchor says whether the
 * fragment names a $dynamicAnchor. */
int schema_resolve_ref(struct cstate *cs, const char *base, const char *ref,
		       struct sinfo **out, bool *dyn_anchor);

/* ------------------------------------------------------------------ */
/* Validation (schema_eval.c). */

/* Validate @inst against @s: 0 valid, -EINVAL invalid, other negative errno
 * when a limit stopped it; the reason in @err. */
int schema_validate_with(const struct stash_schema *s, const json_t *inst,
			 struct stash_error *err);

#endif
