// SPDX-License-Identifier: MIT
/*
 * schema_resolve.c - the first pass of compiling: walk every document
 * reachable from a schema and record its resources ($id), anchors
 * ($anchor, $dynamicAnchor) and the vocabularies its $schema turns on, so
 * that a $ref can be resolved to the subschema it names.  Documents come
 * from the built-in metaschemas or the caller's loader; never the network.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

/* ------------------------------------------------------------------ */
/* Gathering resources and anchors. */

int schema_cerr(struct cstate *cs, int code, const char *fmt, ...)
{
	char msg[STASH_ERROR_TEXT - 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return stash_error_set(cs->err, code, "schema %s: %s", cs->s->name, msg);
}

int schema_hold_doc(struct stash_schema *s, json_t *doc)
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
		return schema_cerr(cs, EINVAL, "\"$schema\" must be a string");
	if (!strcmp(uri, DRAFT_2020_12) || !strcmp(uri, DRAFT_2020_12 "#")) {
		*out = V_ALL_2020;
		return 0;
	}
	if (strstr(uri, "json-schema.org/") && (strstr(uri, "/draft-0") || strstr(uri, "/draft/2019-09")))
		return schema_cerr(cs, EINVAL, "\"$schema\" %s: only draft 2020-12 is supported", uri);
	meta = find_metaschema(cs, uri);
	if (!meta)
		return schema_cerr(cs, EINVAL, "\"$schema\" %s: unknown metaschema", uri);
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
			return schema_cerr(cs, EINVAL, "metaschema %s requires unsupported vocabulary %s", uri, k);
	}
	*out = bits;
	return 0;
}

static struct resource *add_resource(struct cstate *cs, const char *uri, const json_t *root,
				     unsigned vocab)
{
	struct stash_schema *s = cs->s;
	struct resource *r = schema_hmap_get(&cs->resmap, uri, strlen(uri));

	if (r)
		return r;       /* first definition wins */
	r = schema_arena_alloc(&s->arena, sizeof(*r));
	if (!r)
		return NULL;
	r->uri = schema_arena_strndup(&s->arena, uri, strlen(uri));
	if (!r->uri)
		return NULL;
	r->root = root;
	r->vocab = vocab;
	r->next = s->resources;
	s->resources = r;
	if (schema_hmap_put(&cs->resmap, r->uri, strlen(r->uri), r) < 0)
		return NULL;
	return r;
}

static int add_anchor(struct cstate *cs, struct sinfo *info, const char *name, bool dynamic)
{
	struct stash_schema *s = cs->s;
	struct resource *r = info->res;
	size_t n = strlen(info->base) + strlen(name) + 2;
	char *key = schema_arena_alloc(&s->arena, n);

	if (!key)
		return -ENOMEM;
	snprintf(key, n, "%s#%s", info->base, name);
	if (schema_hmap_put(&cs->anchors, key, n - 1, info) < 0)
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

	schema_buf_str(&b, loc);
	schema_buf_str(&b, "/");
	if (key) {
		for (; *key; key++) {
			if (*key == '~')
				schema_buf_str(&b, "~0");
			else if (*key == '/')
				schema_buf_str(&b, "~1");
			else
				schema_buf_add(&b, key, 1);
		}
	} else {
		schema_buf_printf(&b, "%zu", idx);
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	out = schema_arena_strndup(&cs->s->arena, b.p, b.n);
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

/* A subschema with "$id" @id starts a new resource: it and what lies below
 * resolve relative to its URI, with the vocabularies its "$schema" names. */
static int enter_resource(struct cstate *cs, struct sinfo *info, const char *id)
{
	char *uri = schema_uri_resolve(info->base, id);
	struct resource *res;
	char *hash;
	unsigned vocab;
	int rc;

	if (!uri)
		return -ENOMEM;
	hash = strchr(uri, '#');
	if (hash && hash[1]) {
		free(uri);
		return schema_cerr(cs, EINVAL, "%s: \"$id\" must not have a fragment", info->loc);
	}
	if (hash)
		*hash = '\0';
	rc = vocab_for(cs, json_object_get(info->js, "$schema"), info->res->vocab, &vocab);
	if (rc < 0) {
		free(uri);
		return rc;
	}
	res = add_resource(cs, uri, info->js, vocab);
	free(uri);
	if (!res)
		return -ENOMEM;
	info->base = res->uri;
	info->res = res;
	return 0;
}

static int gather(struct cstate *cs, const json_t *js, const char *base, struct resource *res,
		  const char *loc, int depth);

/* The subschemas below @js, in the keywords that hold schemas. */
static int gather_children(struct cstate *cs, const json_t *js, const char *base,
			   struct resource *res, const char *loc, int depth)
{
	const json_t *v;
	size_t i;
	int rc;

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

static int gather(struct cstate *cs, const json_t *js, const char *base, struct resource *res,
		  const char *loc, int depth)
{
	struct stash_schema *s = cs->s;
	struct sinfo *info;
	const json_t *v;
	int rc;

	if (!json_is_object(js) && !json_is_boolean(js))
		return 0;
	if (schema_hmap_get(&cs->infos, js, 0))
		return 0;
	if (depth > MAX_SCHEMA_NESTING)
		return schema_cerr(cs, E2BIG, "schema nested deeper than %d levels", MAX_SCHEMA_NESTING);
	info = schema_arena_alloc(&s->arena, sizeof(*info));
	if (!info)
		return -ENOMEM;
	info->js = js;
	info->base = base;
	info->res = res;
	info->loc = loc;
	if (schema_hmap_put(&cs->infos, js, 0, info) < 0)
		return -ENOMEM;
	if (!json_is_object(js))
		return 0;

	v = json_object_get(js, "$id");
	if (json_is_string(v) && (rc = enter_resource(cs, info, json_string_value(v))) < 0)
		return rc;
	v = json_object_get(js, "$anchor");
	if (json_is_string(v) && (rc = add_anchor(cs, info, json_string_value(v), false)) < 0)
		return rc;
	v = json_object_get(js, "$dynamicAnchor");
	if (json_is_string(v) && (rc = add_anchor(cs, info, json_string_value(v), true)) < 0)
		return rc;
	return gather_children(cs, js, info->base, info->res, loc, depth);
}

/* Register a whole document retrieved as @uri. */
int schema_add_document(struct cstate *cs, const json_t *doc, const char *uri, const char *loc)
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
	struct resource *r = schema_hmap_get(&cs->resmap, uri, strlen(uri));
	const json_t *b;
	json_t *doc;
	char *loc;

	*rc = 0;
	if (r)
		return r;
	b = schema_builtin_doc(uri);
	if (b) {
		doc = json_incref((json_t *)b);
	} else {
		doc = cs->loader ? cs->loader(cs->lctx, uri) : NULL;
		if (!doc && cs->defer_missing) {
			cs->missing = schema_arena_strndup(&cs->s->arena, uri, strlen(uri));
			*rc = cs->missing ? -ENOENT : -ENOMEM;
			return NULL;
		}
		if (!doc) {
			*rc = schema_cerr(cs, EINVAL, "cannot resolve reference to %s", uri);
			return NULL;
		}
	}
	if (schema_hold_doc(cs->s, doc) < 0) {
		json_decref(doc);
		*rc = -ENOMEM;
		return NULL;
	}
	loc = schema_arena_alloc(&cs->s->arena, strlen(uri) + 2);
	if (!loc) {
		*rc = -ENOMEM;
		return NULL;
	}
	sprintf(loc, "%s#", uri);
	*rc = schema_add_document(cs, doc, uri, loc);
	if (*rc < 0)
		return NULL;
	r = schema_hmap_get(&cs->resmap, uri, strlen(uri));
	if (!r)
		*rc = schema_cerr(cs, EINVAL, "cannot resolve reference to %s", uri);
	return r;
}

static const json_t *find_metaschema(struct cstate *cs, const char *uri)
{
	struct resource *r = schema_hmap_get(&cs->resmap, uri, strlen(uri));
	const json_t *b;
	json_t *doc;

	if (r)
		return r->root;
	b = schema_builtin_doc(uri);
	if (b)
		return b;
	if (!cs->loader)
		return NULL;
	doc = cs->loader(cs->lctx, uri);
	if (!doc)
		return NULL;
	/* Kept so that a later $ref to it finds the same document. */
	if (schema_hold_doc(cs->s, doc) < 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* Follow the JSON pointer @tok (after its leading '/', changed in place)
 * from @cur, the root of a resource whose info is @info; *@out is the
 * schema it names, or NULL. */
static int follow_pointer(struct cstate *cs, const json_t *cur, struct sinfo *info, char *tok,
			  struct sinfo **out)
{
	char *next;
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
		struct sinfo *ci = schema_hmap_get(&cs->infos, cur, 0);

		if (ci) {
			info = ci;
			loc = ci->loc;
		} else {
			loc = loc_child(cs, loc, tok, 0);
			if (!loc)
				return -ENOMEM;
		}
		if (!next)
			break;
		tok = next + 1;
	}
	if (cur && !schema_hmap_get(&cs->infos, cur, 0) && info) {
		/* A schema outside the keywords we walk ("$ref" into an
		 * unknown keyword): register it on the spot. */
		int rc = gather(cs, cur, info->base, info->res, loc, 0);

		if (rc < 0)
			return rc;
	}
	*out = cur ? schema_hmap_get(&cs->infos, cur, 0) : NULL;
	return 0;
}

/* The plain-name fragment @frag of document @full: an $anchor or a
 * $dynamicAnchor (then *@dyn_anchor is set); *@out NULL when none. */
static int find_anchor(struct cstate *cs, const struct resource *res, const char *full,
		       const char *frag, struct sinfo **out, bool *dyn_anchor)
{
	size_t n = strlen(full) + strlen(frag) + 2;
	char *key = malloc(n);

	if (!key)
		return -ENOMEM;
	snprintf(key, n, "%s#%s", full, frag);
	*out = schema_hmap_get(&cs->anchors, key, n - 1);
	free(key);
	if (*out) {
		size_t i;

		for (i = 0; i < res->ndyn; i++)
			if (res->dyn[i].info == *out && !strcmp(res->dyn[i].name, frag))
				*dyn_anchor = true;
	}
	return 0;
}

/* Resolve @ref against @base to the schema it names. */
int schema_resolve_ref(struct cstate *cs, const char *base, const char *ref,
		       struct sinfo **out, bool *dyn_anchor)
{
	char *full = schema_uri_resolve(base, ref);
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
		schema_pct_decode(frag);
	}
	res = load_resource(cs, full, &rc);
	if (!res)
		goto out;
	info = schema_hmap_get(&cs->infos, res->root, 0);
	if (!frag || !*frag) {
		*out = info;
	} else if (frag[0] == '/') {
		if ((rc = follow_pointer(cs, res->root, info, frag + 1, out)) < 0)
			goto out;
	} else if ((rc = find_anchor(cs, res, full, frag, out, dyn_anchor)) < 0) {
		goto out;
	}
	if (!*out)
		rc = schema_cerr(cs, EINVAL, "cannot resolve reference \"%s\"", ref);
out:
	free(full);
	return rc;
}

