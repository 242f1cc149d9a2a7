/* SPDX-License-Identifier: MIT */
/*
 * store_priv.h - what the store's own files share: the store struct and
 * the safe path helpers.  Not a public header.
 */
#ifndef STASHFS_STORE_PRIV_H
#define STASHFS_STORE_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <jansson.h>

#include "stashfs/schema.h"
#include "stashfs/store.h"

#define LOCK_STRIPES 1024
#define XATTR_SCHEMA "user.stash.schema"

struct schema_cache;

struct stash_store {
	struct stash_store_options opts;
	int root_fd;            /* the backing directory */
	int tmp_fd;             /* .stashfs/tmp/<instance> */
	int lock_fd;            /* .stashfs/lock, OFD byte-range locks */
	int instance_lock_fd;   /* held while this instance's temp dir lives */
	char instance[64];
	atomic_uint_fast64_t tmp_seq;
	pthread_mutex_t stripes[LOCK_STRIPES];
	struct schema_cache *schemas;   /* binding.c */
};

/* Open @path beneath the backing root, never through a symlink; "" is the root. */
int store_open_beneath(struct stash_store *st, const char *path, int flags, mode_t mode);

/* Read @size bytes of @fd into a new NUL-terminated buffer; caller frees. */
int store_slurp(int fd, off_t size, char **out, size_t *len);

/* ---- schema bindings (binding.c) ---- */

/* Set up / tear down the compiled-schema cache. */
int binding_init(struct stash_store *st);
void binding_destroy(struct stash_store *st);

/* Is @name an acceptable schema name (a path under schemas/, no "..")? */
bool binding_name_ok(const char *name);

/*
 * Compile the text written to schemas/@name; -EINVAL with the reason if it
 * is not a valid JSON Schema.
 */
int binding_compile(struct stash_store *st, const char *name, const char *text, size_t len,
		    struct stash_error *err);

/* Does schema @name exist and compile?  -EINVAL with the reason if not. */
int binding_check(struct stash_store *st, const char *name, struct stash_error *err);

/*
 * Validate @doc (or, if NULL, the @len bytes at @text) against schema
 * @name for stash @path.  A missing schema refuses (fail closed).
 */
int binding_validate(struct stash_store *st, const char *name, const char *path,
		     const json_t *doc, const char *text, size_t len, struct stash_error *err);

#endif
