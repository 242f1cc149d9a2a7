/* SPDX-License-Identifier: MIT */
/*
 * schema.h - JSON Schema draft 2020-12: compile once, validate many.
 *
 * A compiled schema is immutable and may be used by many threads at once.
 * Nothing is ever fetched from the network: the 2020-12 metaschemas are
 * built in, everything else comes through the caller's loader.
 */
#ifndef STASHFS_SCHEMA_H
#define STASHFS_SCHEMA_H

#include <jansson.h>

#include "stashfs/error.h"

struct stash_schema;

/*
 * Loader for a resource that is neither in the schema being compiled nor a
 * built-in metaschema.  @uri is absolute, without fragment.  Returns a new
 * reference to the resource's JSON, or NULL if unknown.
 */
typedef json_t *(*stash_schema_loader)(void *ctx, const char *uri);

struct stash_schema_options {
	int format_assert;          /* 1: `format` is an assertion, 0: annotation */
	unsigned max_depth;         /* recursion limit while validating (0 = default) */
	unsigned long max_steps;    /* evaluation step limit per validation (0 = default) */
	size_t max_schema_bytes;    /* limit on the serialized schema size (0 = default) */
	/* 1: a $ref into a document the loader returns NULL for compiles; a
	 * validation that reaches it fails with -EINVAL, "unresolved reference
	 * to schema NAME".  0: such a schema is refused at compile time. */
	int defer_missing;
};

/*
 * Compile @doc (borrowed) whose retrieval URI is @base_uri (e.g.
 * "stashfs:///schemas/task-progress"; NULL = no base).  @name is used in
 * error messages.  @loader/@ctx resolve external references (may be NULL).
 * @opts may be NULL for defaults.  On success stores a new schema in *@out
 * (free with stash_schema_free) and returns 0; on failure returns -EINVAL
 * (or -ENOMEM) with @err saying why, or -E2BIG when the schema is over a
 * limit (max_schema_bytes, nesting) or applies itself to the same value in
 * a loop ({"$ref": "#"}).
 */
int stash_schema_compile(const json_t *doc, const char *name, const char *base_uri,
			 stash_schema_loader loader, void *ctx,
			 const struct stash_schema_options *opts,
			 struct stash_schema **out, struct stash_error *err);

/*
 * Validate @instance (borrowed).  Returns 0 if valid; -EINVAL if not, with
 * @err->text like
 *   `/status: value "done" is not one of the enum (schema task-progress, #/properties/status/enum)`
 * and @err->pointer / @err->keyword set; -E2BIG if a limit was hit (the
 * text says which).  Thread-safe on a shared schema.
 */
int stash_schema_validate(const struct stash_schema *schema, const json_t *instance,
			  struct stash_error *err);

/* Free a compiled schema (NULL is fine). */
void stash_schema_free(struct stash_schema *schema);

#endif
