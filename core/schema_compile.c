// SPDX-License-Identifier: MIT
/*
 * schema_compile.c - JSON Schema draft 2020-12: compile once, validate many.
 *
 * Compiling checks the schema against its metaschema, gathers every schema
 * resource reachable from it (schema_resolve.c), then turns each subschema
 * into an immutable node: $ref resolved to a node pointer, regexes compiled,
 * property names hashed.  Validation (schema_eval.c) only reads the nodes.
 *
 * Not here: drafts other than 2020-12, network access.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

/* The 2020-12 metaschema, compiled once per process: every schema is
 * checked against it (or against the custom metaschema its "$schema" names). */
static pthread_once_t meta_once = PTHREAD_ONCE_INIT;
static struct stash_schema *meta_schema;
static char meta_error[STASH_ERROR_TEXT];

static int compile_doc(json_t *doc, const char *name, const char *base_uri,
		       stash_schema_loader loader, void *ctx,
		       const struct stash_schema_options *opts,
		       struct stash_schema **out, struct stash_error *err);

static void meta_init(void)
{
	struct stash_error e;

	if (schema_builtin_parse(meta_error, sizeof(meta_error)) < 0)
		return;
	if (compile_doc(json_incref((json_t *)schema_builtin_doc(DRAFT_2020_12)),
			"2020-12 metaschema", DRAFT_2020_12, NULL, NULL, NULL, &meta_schema, &e) < 0) {
		snprintf(meta_error, sizeof(meta_error), "built-in metaschema: %.400s", e.text);
		meta_schema = NULL;
		return;
	}
	meta_schema->max_depth = META_MAX_DEPTH;
}

/* Free it at exit so leak checkers see a clean heap. */
__attribute__((destructor)) static void meta_fini(void)
{
	stash_schema_free(meta_schema);
	meta_schema = NULL;
}

/* ------------------------------------------------------------------ */
/* Turning gathered schemas into nodes. */

static int compile_node(struct cstate *cs, struct sinfo *info, struct snode **out);

static int child(struct cstate *cs, const struct sinfo *parent, const json_t *js, const char *kw,
		 struct snode **out)
{
	struct sinfo *ci = schema_hmap_get(&cs->infos, js, 0);

	if (!ci)
		return schema_cerr(cs, EINVAL, "%s/%s: a schema must be an object or a boolean",
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
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be a non-empty array of schemas",
			    info->loc, kw);
	*n = json_array_size(a);
	*out = schema_arena_alloc(&cs->s->arena, *n * sizeof(**out));
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
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be a number", info->loc, kw);
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
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be a non-negative integer", info->loc, kw);
	*out = d >= 1.8e19 ? SIZE_MAX : (size_t)d;
	return 1;
}

static int compile_regex(struct cstate *cs, const char *loc, const char *kw, const char *src,
			 size_t len, struct regex *re)
{
	struct stash_schema *s = cs->s;
	char *pat = schema_regex_translate(src, len);
	PCRE2_SIZE off;
	int ec;

	if (!pat)
		return -ENOMEM;
	re->src = schema_arena_strndup(&s->arena, src, len);
	re->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
				 PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &off, NULL);
	free(pat);
	if (!re->code) {
		PCRE2_UCHAR msg[160];

		pcre2_get_error_message(ec, msg, sizeof(msg));
		return schema_cerr(cs, EINVAL, "%s/%s: invalid regular expression \"%.100s\": %s",
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
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be an array of strings", info->loc, kw);
	*n = json_array_size(a);
	*out = schema_arena_alloc(&cs->s->arena, (*n + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (i = 0; i < *n; i++) {
		const json_t *v = json_array_get(a, i);

		if (!json_is_string(v))
			return schema_cerr(cs, EINVAL, "%s: \"%s\" must be an array of strings",
				    info->loc, kw);
		(*out)[i].key = json_string_value(v);
		(*out)[i].len = json_string_length(v);
	}
	return 0;
}

/*
 * dependentRequired (@required) or dependentSchemas.  "dependencies" (draft
 * 2019-09 and before) is still honoured: its arrays act as dependentRequired,
 * its other entries as dependentSchemas, after the 2020-12 keyword's own.
 */
static int compile_dependent(struct cstate *cs, struct sinfo *info, struct snode *n, bool required)
{
	const char *kw = required ? "dependentRequired" : "dependentSchemas";
	const json_t *src[2] = { json_object_get(info->js, kw),
				 json_object_get(info->js, "dependencies") };
	size_t i, cap, size = required ? sizeof(*n->depreq) : sizeof(*n->depsch);
	const json_t *v;
	const char *k;
	void *table;
	int rc;

	if (src[0] && !json_is_object(src[0]))
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be an object", info->loc, kw);
	if (!json_is_object(src[1]))
		src[1] = NULL;
	if (!src[0] && !src[1])
		return 0;
	cap = json_object_size(src[0]) + json_object_size(src[1]) + 1;
	table = schema_arena_alloc(&cs->s->arena, cap * size);
	if (!table)
		return -ENOMEM;
	if (required)
		n->depreq = table;
	else
		n->depsch = table;
	for (i = 0; i < 2; i++) {
		json_object_foreach((json_t *)src[i], k, v) {
			struct keyref key = {
				k, json_object_iter_key_len(json_object_key_to_iter(k)) };
			const char *what = i ? "dependencies" : kw;

			if (i && !!json_is_array(v) != required)
				continue;
			if (required) {
				n->depreq[n->ndepreq].key = key;
				rc = compile_strings(cs, info, what, v, &n->depreq[n->ndepreq].names,
						     &n->depreq[n->ndepreq].n);
				n->ndepreq++;
			} else {
				n->depsch[n->ndepsch].key = key;
				rc = child(cs, info, v, what, &n->depsch[n->ndepsch].node);
				n->ndepsch++;
			}
			if (rc < 0)
				return rc;
			n->groups |= N_OBJ;
		}
	}
	return 0;
}

static int compile_object_kw(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	const json_t *js = info->js, *m, *v;
	struct arena *a = &cs->s->arena;
	const char *k;
	size_t i;
	int rc;

	m = json_object_get(js, "properties");
	if (m) {
		if (!json_is_object(m))
			return schema_cerr(cs, EINVAL, "%s: \"properties\" must be an object", info->loc);
		n->nprops = json_object_size(m);
		for (n->props_cap = 4; n->props_cap < n->nprops * 2; n->props_cap *= 2)
			;
		n->props = schema_arena_alloc(a, n->props_cap * sizeof(*n->props));
		if (!n->props)
			return -ENOMEM;
		json_object_foreach((json_t *)m, k, v) {
			/* The iterator length keeps keys with NUL bytes whole. */
			size_t len = json_object_iter_key_len(json_object_key_to_iter(k));
			uint32_t h = schema_hash(k, len);

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
			return schema_cerr(cs, EINVAL, "%s: \"patternProperties\" must be an object",
				    info->loc);
		n->npatprops = json_object_size(m);
		n->patprops = schema_arena_alloc(a, (n->npatprops + 1) * sizeof(*n->patprops));
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
	return compile_dependent(cs, info, n, false);
}

static int compile_type(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	static const struct { const char *name; uint8_t bits; } tnames[] = {
		{ "null", T_NULL }, { "boolean", T_BOOL }, { "object", T_OBJ },
		{ "array", T_ARR }, { "string", T_STR }, { "integer", T_INT },
		{ "number", T_INT | T_NUM },
	};
	const json_t *v;
	size_t i, j;

	v = json_object_get(info->js, "type");
	if (v) {
		size_t cnt = json_is_array(v) ? json_array_size(v) : 1;

		for (i = 0; i < cnt; i++) {
			const json_t *t = json_is_array(v) ? json_array_get(v, i) : v;
			const char *name = json_string_value(t);

			for (j = 0; name && j < sizeof(tnames) / sizeof(tnames[0]); j++)
				if (!strcmp(name, tnames[j].name))
					break;
			if (!name || j == sizeof(tnames) / sizeof(tnames[0]))
				return schema_cerr(cs, EINVAL, "%s: unknown \"type\"", info->loc);
			n->types |= tnames[j].bits;
		}
		if (!n->types)
			return schema_cerr(cs, EINVAL, "%s: \"type\" must not be empty", info->loc);
	}
	return 0;
}

/* The size limits: where each goes, and which group of checks it wakes (none
 * for min/maxContains, which only count beside "contains"). */
static int compile_counts(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	static const struct { const char *kw; size_t off; unsigned group; } counts[] = {
		{ "minLength", offsetof(struct snode, min_len), N_STR },
		{ "maxLength", offsetof(struct snode, max_len), N_STR },
		{ "minItems", offsetof(struct snode, min_items), N_ARR },
		{ "maxItems", offsetof(struct snode, max_items), N_ARR },
		{ "minContains", offsetof(struct snode, min_contains), 0 },
		{ "maxContains", offsetof(struct snode, max_contains), 0 },
		{ "minProperties", offsetof(struct snode, min_props), N_OBJ },
		{ "maxProperties", offsetof(struct snode, max_props), N_OBJ },
	};
	size_t i;
	int rc;

	n->max_len = n->max_items = n->max_props = n->max_contains = SIZE_MAX;
	n->min_contains = 1;
	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		rc = get_count(cs, info, counts[i].kw, (size_t *)((char *)n + counts[i].off));
		if (rc < 0)
			return rc;
		if (rc && counts[i].group)
			n->groups |= counts[i].group;
		else if (rc)
			n->has_contains_limits = true;
	}
	return 0;
}

static int compile_validation_kw(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	const json_t *js = info->js, *v;
	struct arena *a = &cs->s->arena;
	int rc;

	if ((rc = compile_type(cs, info, n)) < 0)
		return rc;
	if ((v = json_object_get(js, "const"))) {
		n->has_const = true;
		n->constv = v;
		n->groups |= N_GENERIC;
	}
	if ((v = json_object_get(js, "enum"))) {
		if (!json_is_array(v))
			return schema_cerr(cs, EINVAL, "%s: \"enum\" must be an array", info->loc);
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
		return schema_cerr(cs, EINVAL, "%s: \"multipleOf\" must be greater than 0", info->loc);
	if (n->has_min || n->has_max || n->has_exmin || n->has_exmax || n->has_mult)
		n->groups |= N_NUM;
	if ((rc = compile_counts(cs, info, n)) < 0)
		return rc;
	v = json_object_get(js, "uniqueItems");
	if (v) {
		if (!json_is_boolean(v))
			return schema_cerr(cs, EINVAL, "%s: \"uniqueItems\" must be a boolean", info->loc);
		n->unique = json_is_true(v);
		if (n->unique)
			n->groups |= N_ARR;
	}
	v = json_object_get(js, "pattern");
	if (v) {
		if (!json_is_string(v))
			return schema_cerr(cs, EINVAL, "%s: \"pattern\" must be a string", info->loc);
		n->pattern = schema_arena_alloc(a, sizeof(*n->pattern));
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
	return compile_dependent(cs, info, n, true);
}

static int add_pending(struct cstate *cs, struct snode *n, const json_t *ref, const char *base,
		       bool dynamic)
{
	if (!json_is_string(ref))
		return schema_cerr(cs, EINVAL, "%s: \"%s\" must be a string", n->loc,
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

/* allOf, anyOf, oneOf, not, if/then/else, prefixItems, items, contains and
 * the object applicators. */
static int compile_applicator_kw(struct cstate *cs, struct sinfo *info, struct snode *n)
{
	const json_t *js = info->js, *v;
	int rc;

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
	return compile_object_kw(cs, info, n);
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
	n = schema_arena_alloc(&cs->s->arena, sizeof(*n));
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

	if ((vocab & V_APPLICATOR) && (rc = compile_applicator_kw(cs, info, n)) < 0)
		return rc;
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
		n->format = (uint8_t)schema_format_kind(json_string_value(v));
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
	struct snode *n = schema_arena_alloc(&cs->s->arena, sizeof(*n));

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

		rc = schema_resolve_ref(cs, p.base, p.ref, &target, &dyn);
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
		return schema_cerr(cs, E2BIG, "%s: reference loop: this schema applies itself to the same "
			    "value forever", n->loc);
	if (depth > 4096)
		return schema_cerr(cs, E2BIG, "%s: references nested too deeply", n->loc);
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
	schema_arena_free(&s->arena);
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
	s->name = schema_arena_strndup(&s->arena, name ? name : "(unnamed)",
				strlen(name ? name : "(unnamed)"));
	s->max_depth = opts && opts->max_depth ? opts->max_depth : DEFAULT_MAX_DEPTH;
	s->max_steps = opts && opts->max_steps ? opts->max_steps : DEFAULT_MAX_STEPS;
	s->format_assert = opts ? opts->format_assert : 0;
	if (!s->name || schema_hold_doc(s, doc) < 0) {
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
	loc = schema_arena_strndup(&s->arena, "#", 1);
	if (!loc) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = schema_add_document(&cs, doc, uri, loc)) < 0)
		goto out;
	root = schema_hmap_get(&cs.infos, doc, 0);
	if (!root) {
		rc = schema_cerr(&cs, EINVAL, "a schema must be an object or a boolean");
		goto out;
	}
	if ((rc = compile_node(&cs, root, &s->root)) < 0 ||
	    (rc = resolve_pending(&cs)) < 0 ||
	    (rc = compile_dynamic_anchors(&cs)) < 0 ||
	    (rc = check_all_cycles(&cs)) < 0)
		goto out;
out:
	schema_hmap_free(&cs.infos);
	schema_hmap_free(&cs.anchors);
	schema_hmap_free(&cs.resmap);
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

/* A custom metaschema named by "$schema" @muri: it must itself be a 2020-12
 * schema, and it decides what a valid schema is for the document.  On
 * success *@out is a new schema the caller frees. */
static int compile_custom_meta(const char *muri, const char *label, stash_schema_loader loader,
			       void *ctx, struct stash_schema **out, struct stash_error *err)
{
	struct stash_error merr;
	json_t *mdoc;
	int rc;

	if (strstr(muri, "json-schema.org/") &&
	    (strstr(muri, "/draft-0") || strstr(muri, "/draft/2019-09")))
		return stash_error_set(err, EINVAL,
				       "schema %s: \"$schema\" %s: only draft 2020-12 is supported",
				       label, muri);
	mdoc = loader ? loader(ctx, muri) : NULL;
	if (!mdoc)
		return stash_error_set(err, EINVAL, "schema %s: unknown metaschema %s", label, muri);
	rc = stash_schema_compile(mdoc, muri, muri, loader, ctx, NULL, out, &merr);
	json_decref(mdoc);
	if (rc < 0)
		return stash_error_set(err, merr.code ? merr.code : -rc,
				       "schema %s: metaschema %s: %.300s", label, muri, merr.text);
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
		rc = compile_custom_meta(json_string_value(sk), label, loader, ctx, &meta, err);
		if (rc < 0) {
			json_decref(copy);
			return rc;
		}
	} else {
		json_decref(copy);
		return stash_error_set(err, EINVAL, "schema %s: \"$schema\" must be a string", label);
	}
	rc = schema_validate_with(meta, copy, &merr);
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

