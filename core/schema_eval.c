// SPDX-License-Identifier: MIT
/*
 * schema_eval.c - validation: walk a compiled schema's nodes over an
 * instance without changing them, so one compiled schema serves many threads.
 * Only $dynamicRef is resolved here, since it depends on the dynamic scope.
 *
 * Annotations (which properties/items were evaluated) are collected only
 * below a node that has unevaluatedProperties/unevaluatedItems, as bitmaps
 * indexed by the instance's iteration order.
 *
 * The first failure becomes one sentence in struct stash_error; no other
 * output formats.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

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
		return schema_hash(json_string_value(v), json_string_length(v)) * 31 + 7;
	case JSON_ARRAY:
		h = 0x1234;
		for (i = 0; i < json_array_size(v); i++)
			h = h * 1099511628211ull + jhash(json_array_get(v, i));
		return h;
	case JSON_OBJECT: {
		void *it;

		h = 0x5678;
		for (it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it))
			h += schema_hash(json_object_iter_key(it), json_object_iter_key_len(it)) *
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

/* propertyNames, properties, patternProperties and additionalProperties for
 * the property @key (@klen bytes, the @i-th of the object) of value @val. */
static int eval_property(struct vctx *c, const struct snode *n, const char *key, size_t klen,
			 const json_t *val, size_t i, const struct ipath *path,
			 const struct dscope *scope, struct ann *ann)
{
	struct ipath p = { path, key, klen, 0 };
	bool matched = false;
	size_t j;
	int r;

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
		uint32_t h = schema_hash(key, klen);
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
	return 0;
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
			r = eval_property(c, n, json_object_iter_key(it), json_object_iter_key_len(it),
					  json_object_iter_value(it), i, path, scope, ann);
			if (r)
				return r;
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
	if (n->format && !schema_format_ok(n->format, s, bytes))
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

/* Evaluate @m quietly; when it passes and @keep, its annotations join @ann. */
static int probe(struct vctx *c, const struct snode *m, const json_t *inst,
		 const struct ipath *path, const struct dscope *scope, struct ann *ann,
		 size_t asize, bool keep)
{
	struct ann tmp;
	int r;

	if (!ann)
		return eval_quiet(c, m, inst, path, scope, NULL);
	if ((r = ann_init(&tmp, asize)) < 0)
		return r;
	r = eval_quiet(c, m, inst, path, scope, &tmp);
	if (!r && keep)
		ann_merge(ann, &tmp);
	ann_free(&tmp);
	return r;
}

static int eval_anyof(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann,
		      size_t asize)
{
	size_t i, passed = 0;
	int r;

	for (i = 0; i < n->nanyof; i++) {
		r = probe(c, n->anyof[i], inst, path, scope, ann, asize, true);
		if (r < 0)
			return r;
		if (!r) {
			passed++;
			/* Every passing branch adds annotations; else one is enough. */
			if (!ann)
				break;
		}
	}
	if (passed)
		return 0;
	if (n->nanyof == 1)
		return eval(c, n->anyof[0], inst, path, scope, NULL);
	return vfail(c, n, path, "anyOf", "value matches none of the %zu anyOf schemas", n->nanyof);
}

static int eval_oneof(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann,
		      size_t asize)
{
	size_t i, first = 0, passed = 0;
	int r;

	for (i = 0; i < n->noneof && passed < 2; i++) {
		r = probe(c, n->oneof[i], inst, path, scope, ann, asize, !passed);
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
	return 0;
}

static int eval_apply(struct vctx *c, const struct snode *n, const json_t *inst,
		      const struct ipath *path, const struct dscope *scope, struct ann *ann)
{
	size_t i, asize = ann ? ann_size(inst) : 0;
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
	if (n->nanyof && (r = eval_anyof(c, n, inst, path, scope, ann, asize)))
		return r;
	if (n->noneof && (r = eval_oneof(c, n, inst, path, scope, ann, asize)))
		return r;
	if (n->not_) {
		r = eval_quiet(c, n->not_, inst, path, scope, NULL);
		if (r < 0)
			return r;
		if (!r)
			return vfail(c, n, path, "not", "value must not match the \"not\" schema");
	}
	if (n->if_ && (n->then_ || n->else_ || ann)) {
		r = probe(c, n->if_, inst, path, scope, ann, asize, true);
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
/* Public API. */

int schema_validate_with(const struct stash_schema *s, const json_t *inst, struct stash_error *err)
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
	return schema_validate_with(schema, instance, err);
}

