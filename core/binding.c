// SPDX-License-Identifier: MIT
/*
 * binding.c - schemas under schemas/ and the stashes bound to them.
 *
 * A schema is compiled when it is written and kept in a small cache keyed
 * by name; an entry stays valid while the schema file and every schema it
 * loaded keep the versions they had when it was compiled (so a schema
 * replaced by another daemon is recompiled too).  References between
 * schemas resolve by name: with base "stashfs:///schemas/a", {"$ref":"b"}
 * loads schemas/b.  Nothing is fetched from anywhere else.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "stashfs/json.h"
#include "binding.h"
#include "commit.h"
#include "store_priv.h"

#define SCHEMA_URI_PREFIX "stashfs:///schemas/"
#define MAX_DEPS 32
/* Version of a dependency that was missing (or not JSON) when compiled. */
#define DEP_ABSENT UINT64_MAX

struct dep {
	char *name;
	uint64_t version;
};

struct cached {
	char *name;
	struct stash_schema *schema;
	struct dep deps[MAX_DEPS];      /* deps[0] is the schema itself */
	unsigned ndeps;
	unsigned refs;
	uint64_t gen;                   /* schemas generation it was checked at */
	struct cached *next;
};

struct schema_cache {
	pthread_mutex_t lock;
	atomic_uint_fast64_t gen;       /* bumped by every change under schemas/ here */
	struct cached *head;
};

/* What the loader sees while one schema compiles. */
struct load_ctx {
	struct stash_store *st;
	struct dep deps[MAX_DEPS];
	unsigned ndeps;
	const char *self;               /* the schema being written: not on disk yet */
};

/* Read schemas/@name: its text (caller frees) and version. */
static int read_schema_file(struct stash_store *st, const char *name, char **text, size_t *len,
			    uint64_t *version)
{
	char path[PATH_MAX], buf[32];
	struct stat sb;
	ssize_t n;
	int fd, r;

	snprintf(path, sizeof(path), STASH_SCHEMAS_DIR "/%s", name);
	fd = store_open_beneath(st, path, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return -ENOENT;
	}
	n = fgetxattr(fd, XATTR_VERSION, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	*version = strtoull(buf, NULL, 10);
	r = text ? backing_slurp(fd, sb.st_size, text, len) : 0;
	close(fd);
	return r;
}

static json_t *loader(void *data, const char *uri)
{
	struct load_ctx *ctx = data;
	const char *name;
	char *text = NULL;
	size_t len;
	uint64_t v;
	json_t *doc;

	if (strncmp(uri, SCHEMA_URI_PREFIX, strlen(SCHEMA_URI_PREFIX)) != 0)
		return NULL;
	name = uri + strlen(SCHEMA_URI_PREFIX);
	if (!backing_name_ok(name) || (ctx->self && strcmp(name, ctx->self) == 0))
		return NULL;
	doc = NULL;
	if (read_schema_file(ctx->st, name, &text, &len, &v) < 0)
		v = DEP_ABSENT;
	else
		doc = stash_json_parse(text, len, NULL);
	free(text);
	/*
	 * Missing ones too: the schema compiles with the reference unresolved
	 * (validation refuses what reaches it), and writing the missing schema
	 * changes this version, so the next validation recompiles.
	 */
	for (unsigned i = 0; i < ctx->ndeps; i++)
		if (ctx->deps[i].name && !strcmp(ctx->deps[i].name, name))
			return doc;     /* asked again: a missing one is not remembered */
	if (ctx->ndeps < MAX_DEPS) {
		ctx->deps[ctx->ndeps].name = strdup(name);
		ctx->deps[ctx->ndeps].version = v;
		ctx->ndeps++;
	}
	return doc;
}

static void free_deps(struct dep *deps, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(deps[i].name);
}

static int compile(struct stash_store *st, const char *name, const char *text, size_t len,
		   struct load_ctx *ctx, struct stash_schema **out, struct stash_error *err)
{
	/* Schemas are written one by one: one may refer to another not yet there. */
	const struct stash_schema_options opts = { .defer_missing = 1 };
	char uri[PATH_MAX];
	json_t *doc = stash_json_parse(text, len, err);
	int r;

	if (!doc)
		return stash_error_set(err, EINVAL, "schema %s is not JSON: %s", name,
				       err ? err->text : "");
	snprintf(uri, sizeof(uri), SCHEMA_URI_PREFIX "%s", name);
	r = stash_schema_compile(doc, name, uri, loader, ctx, &opts, out, err);
	json_decref(doc);
	if (r < 0 && err && !strstr(err->text, name)) {
		char why[STASH_ERROR_TEXT];

		snprintf(why, sizeof(why), "%s", err->text);
		stash_error_set(err, -r, "schema %s is not a valid JSON Schema: %s", name, why);
	}
	return r;
}

int binding_compile(struct stash_store *st, const char *name, const char *text, size_t len,
		    struct stash_error *err)
{
	struct load_ctx ctx = { .st = st, .self = name };
	struct stash_schema *s = NULL;
	int r = compile(st, name, text, len, &ctx, &s, err);

	/* The cache is refreshed by version at the next use; this only checks. */
	stash_schema_free(s);
	free_deps(ctx.deps, ctx.ndeps);
	return r < 0 ? (r == -E2BIG ? -EINVAL : r) : 0;
}

int binding_init(struct stash_store *st)
{
	st->schemas = calloc(1, sizeof(*st->schemas));
	if (!st->schemas)
		return -ENOMEM;
	pthread_mutex_init(&st->schemas->lock, NULL);
	return 0;
}

static void cached_put(struct cached *c)
{
	if (!c || --c->refs)
		return;
	stash_schema_free(c->schema);
	free_deps(c->deps, c->ndeps);
	free(c->name);
	free(c);
}

void binding_destroy(struct stash_store *st)
{
	if (!st->schemas)
		return;
	for (struct cached *c = st->schemas->head, *next; c; c = next) {
		next = c->next;
		cached_put(c);
	}
	pthread_mutex_destroy(&st->schemas->lock);
	free(st->schemas);
	st->schemas = NULL;
}

/* Do the files this entry was compiled from still have those versions? */
static bool fresh(struct stash_store *st, struct cached *c)
{
	uint64_t gen = atomic_load(&st->schemas->gen);

	/*
	 * Alone on its backing directory, the daemon sees every schema change
	 * itself: an unchanged generation needs no look at the files.  Shared,
	 * another daemon may have replaced one, so the versions are checked.
	 */
	if (!st->opts.shared && c->gen == gen)
		return true;
	for (unsigned i = 0; i < c->ndeps; i++) {
		uint64_t v;

		if (read_schema_file(st, c->deps[i].name, NULL, NULL, &v) < 0)
			v = DEP_ABSENT;
		if (v != c->deps[i].version)
			return false;
	}
	c->gen = gen;
	return true;
}

/* A compiled, current schema @name (a reference: cached_put it). */
static int lookup(struct stash_store *st, const char *name, struct cached **out,
		  struct stash_error *err)
{
	struct schema_cache *sc = st->schemas;
	struct load_ctx ctx = { .st = st };
	struct cached *c, **pp;
	char *text = NULL;
	size_t len;
	uint64_t v, gen;
	int r;

	pthread_mutex_lock(&sc->lock);
	for (pp = &sc->head; (c = *pp); pp = &c->next) {
		if (strcmp(c->name, name) == 0)
			break;
	}
	if (c && fresh(st, c)) {
		c->refs++;
		pthread_mutex_unlock(&sc->lock);
		*out = c;
		return 0;
	}
	if (c) {
		*pp = c->next;
		cached_put(c);
	}
	pthread_mutex_unlock(&sc->lock);

	gen = atomic_load(&sc->gen);
	r = read_schema_file(st, name, &text, &len, &v);
	if (r < 0)
		return stash_error_set(err, EINVAL,
			"schema %s is missing: writes to stashes bound to it are refused", name);
	c = calloc(1, sizeof(*c));
	if (!c) {
		free(text);
		return stash_error_set(err, ENOMEM, "out of memory");
	}
	ctx.deps[0].name = strdup(name);
	ctx.deps[0].version = v;
	ctx.ndeps = 1;
	r = compile(st, name, text, len, &ctx, &c->schema, err);
	free(text);
	memcpy(c->deps, ctx.deps, sizeof(ctx.deps));
	c->ndeps = ctx.ndeps;
	c->name = strdup(name);
	c->refs = 1;
	c->gen = gen;
	if (r < 0 || !c->name) {
		cached_put(c);
		return r < 0 ? r : -ENOMEM;
	}
	pthread_mutex_lock(&sc->lock);
	c->refs++;              /* one for the cache, one for the caller */
	c->next = sc->head;
	sc->head = c;
	pthread_mutex_unlock(&sc->lock);
	*out = c;
	return 0;
}

int binding_validate(struct stash_store *st, const char *name, const char *path,
		     const json_t *doc, const char *text, size_t len, struct stash_error *err)
{
	struct cached *c;
	json_t *parsed = NULL;
	int r = lookup(st, name, &c, err);

	if (r < 0)
		return r;
	if (!doc) {
		parsed = stash_json_parse(text, len, err);
		if (!parsed) {
			char why[STASH_ERROR_TEXT];

			snprintf(why, sizeof(why), "%s", err ? err->text : "");
			r = stash_error_set(err, EINVAL, "%s is bound to schema %s and must hold JSON: %s",
					    path, name, why);
			goto out;
		}
		doc = parsed;
	}
	r = stash_schema_validate(c->schema, doc, err);
	if (r == -E2BIG)
		r = -EINVAL;
out:
	json_decref(parsed);
	pthread_mutex_lock(&st->schemas->lock);
	cached_put(c);
	pthread_mutex_unlock(&st->schemas->lock);
	return r;
}

int binding_check(struct stash_store *st, const char *name, struct stash_error *err)
{
	return binding_each_dep(st, name, NULL, NULL, err);
}

void binding_changed(struct stash_store *st)
{
	atomic_fetch_add(&st->schemas->gen, 1);
}

uint64_t binding_generation(struct stash_store *st)
{
	return atomic_load(&st->schemas->gen);
}

int binding_each_dep(struct stash_store *st, const char *name,
		     int (*fn)(const char *schema, void *ctx), void *ctx, struct stash_error *err)
{
	struct cached *c;
	int r;

	if (!backing_name_ok(name))
		return stash_error_set(err, EINVAL, "bad schema name \"%s\"", name);
	r = lookup(st, name, &c, err);
	if (r < 0)
		return stash_error_set(err, EINVAL, "unknown schema \"%s\" (no valid schemas/%s)",
				       name, name);
	/* deps[0] is @name itself; the rest were loaded for its $refs. */
	for (unsigned i = 1; fn && r == 0 && i < c->ndeps; i++)
		r = fn(c->deps[i].name, ctx);
	/* More than the list holds: the others are unknown. */
	if (fn && r == 0 && c->ndeps == MAX_DEPS)
		r = fn(NULL, ctx);
	pthread_mutex_lock(&st->schemas->lock);
	cached_put(c);
	pthread_mutex_unlock(&st->schemas->lock);
	return r;
}

/*
 * The content about to be published as @path must be acceptable: a schema
 * under schemas/ must compile, a bound stash must validate.  @doc is the
 * parsed content when the caller has it.
 */
static int check_content(struct stash_store *st, const char *path, int fd, const json_t *doc,
			 struct stash_error *err)
{
	char schema[STASH_XATTR_MAX];
	bool is_schema = backing_is_schema_path(path);
	ssize_t n = fgetxattr(fd, XATTR_SCHEMA, schema, sizeof(schema) - 1);
	char *text = NULL;
	size_t len = 0;
	struct stat sb;
	int r = 0;

	/* A binding that cannot be read refuses: never publish as if unbound. */
	if (n < 0 && errno != ENODATA)
		return stash_error_set(err, errno, "%s: cannot read its user.stash.schema: %s",
				       path, strerror(errno));
	if (n <= 0 && !is_schema)
		return 0;
	if (!doc || is_schema) {
		if (fstat(fd, &sb) < 0)
			return -errno;
		r = backing_slurp(fd, sb.st_size, &text, &len);
		if (r < 0)
			return r;
	}
	if (is_schema)
		r = binding_compile(st, path + strlen(STASH_SCHEMAS_DIR) + 1, text, len, err);
	if (r == 0 && n > 0) {
		schema[n] = '\0';
		r = binding_validate(st, schema, path, doc, text, len, err);
	}
	free(text);
	return r;
}

/* Validate the content of @fd against schema @schema, for stash @path. */
int check_content_as(struct stash_store *st, const char *path, int fd, const char *schema,
		     struct stash_error *err)
{
	char *text = NULL;
	size_t len = 0;
	struct stat sb;
	int r;

	if (fstat(fd, &sb) < 0)
		return -errno;
	r = backing_slurp(fd, sb.st_size, &text, &len);
	if (r == 0)
		r = binding_validate(st, schema, path, NULL, text, len, err);
	free(text);
	return r;
}

/*
 * A rename over a stash replaces its content like a write does: the source
 * must validate against the target's schema (and a file moved into schemas/
 * must compile).  The target's binding carries over to the source, so an
 * editor's or sed's save keeps the stash bound.
 */
static int check_rename(struct commit *c)
{
	char schema[256];
	bool into_schemas = backing_is_schema_path(c->path);
	ssize_t n = c->oldfd >= 0 ? fgetxattr(c->oldfd, XATTR_SCHEMA, schema, sizeof(schema) - 1) : -1;
	struct stat sb;
	int r = 0;

	if ((c->flags & RENAME_EXCHANGE) && (n > 0 || into_schemas ||
	    fgetxattr(c->srcfd, XATTR_SCHEMA, schema, sizeof(schema) - 1) > 0))
		return stash_error_set(c->err, EPERM,
			"%s: exchanging bound stashes or schemas is not supported", c->path);
	if (into_schemas) {
		char *text = NULL;
		size_t len = 0;

		r = fstat(c->srcfd, &sb) < 0 ? -errno : backing_slurp(c->srcfd, sb.st_size, &text, &len);
		if (r == 0)
			r = binding_compile(c->st, c->path + strlen(STASH_SCHEMAS_DIR) + 1, text, len,
					    c->err);
		free(text);
		if (r < 0)
			return r;
	}
	if (n > 0) {
		schema[n] = '\0';
		r = check_content_as(c->st, c->path, c->srcfd, schema, c->err);
		if (r == 0 && fsetxattr(c->srcfd, XATTR_SCHEMA, schema, (size_t)n, 0) < 0)
			r = -errno;
	}
	return r;
}

/* Commit hooks: a schema must compile, a bound stash must validate. */
static int binding_commit_check(struct commit *c)
{
	if (c->op == COMMIT_RENAME)
		return check_rename(c);
	return c->validated ? 0 : check_content(c->st, c->path, c->tmpfd, c->doc, c->err);
}

/* Did the commit change a schema (or, by a rename, the schemas directory)? */
static bool changes_schemas(const char *path)
{
	return backing_is_schema_path(path) || strcmp(path, STASH_SCHEMAS_DIR) == 0;
}

static void binding_commit_published(struct commit *c, void *state)
{
	(void)state;
	if (changes_schemas(c->path) || (c->op == COMMIT_RENAME && changes_schemas(c->from)))
		binding_changed(c->st);
}

const struct commit_hook binding_commit_hook = {
	.check = binding_commit_check,
	.published = binding_commit_published,
};
