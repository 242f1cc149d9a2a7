/* SPDX-License-Identifier: MIT */
/*
 * binding.h - schema bindings: schemas under schemas/ and bound stashes (binding.c).
 * Not a public header.
 */
#ifndef STASHFS_BINDING_H
#define STASHFS_BINDING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

struct commit_hook;

/* Set up / tear down the compiled-schema cache. */
int binding_init(struct stash_store *st);
void binding_destroy(struct stash_store *st);

/*
 * Compile the text written to schemas/@name; -EINVAL with the reason if it
 * is not a valid JSON Schema.
 */
int binding_compile(struct stash_store *st, const char *name, const char *text, size_t len,
		    struct stash_error *err);

/* Counts the changes under schemas/ made through this daemon. */
uint64_t binding_generation(struct stash_store *st);

/* Something under schemas/ changed through this daemon: recheck cached schemas. */
void binding_changed(struct stash_store *st);

/* Does schema @name exist and compile?  -EINVAL with the reason if not. */
int binding_check(struct stash_store *st, const char *name, struct stash_error *err);

/*
 * binding_check, then call @fn (if not NULL) with the name of every schema
 * that schema @name refers to, as it compiles now (not @name itself), and
 * with NULL for "and maybe others not listed" (31 or more); stop at and return
 * @fn's first nonzero answer.
 */
int binding_each_dep(struct stash_store *st, const char *name,
		     int (*fn)(const char *schema, void *ctx), void *ctx, struct stash_error *err);

/*
 * Validate @doc (or, if NULL, the @len bytes at @text) against schema
 * @name for stash @path.  A missing schema refuses (fail closed).
 */
int binding_validate(struct stash_store *st, const char *name, const char *path,
		     const json_t *doc, const char *text, size_t len, struct stash_error *err);

/* Validate the content of @fd against schema @schema, for stash @path. */
int check_content_as(struct stash_store *st, const char *path, int fd, const char *schema,
		     struct stash_error *err);

/* What binding does at every commit (registered by the store). */
extern const struct commit_hook binding_commit_hook;

#endif
