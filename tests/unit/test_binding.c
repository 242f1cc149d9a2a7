// SPDX-License-Identifier: MIT
/*
 * test_binding.c - schemas under schemas/ and stashes bound to them: a
 * schema must compile to be written, a bound stash takes only documents
 * that validate (and keeps its content when refused), a binding to a
 * missing schema fails closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "binding.h"
#include "store_util.h"

static int bind(struct stash_store *st, const char *path, const char *schema,
		struct stash_error *err)
{
	return stash_store_setxattr(st, path, "user.stash.schema", schema, strlen(schema), 0,
				    &who, err);
}

int main(void)
{
	char backing[] = "/tmp/stashfs-binding-XXXXXX", cmd[300];
	struct stash_store *st = NULL;
	struct stash_error err;

	if (!mkdtemp(backing) || stash_store_open(backing, NULL, &st, &err) < 0)
		return 1;
	/* A schema compiles or is refused. */
	CHECK(put_err(st, "schemas/task", "{\"type\":\"object\",\"required\":[\"a\"]}", O_TRUNC,
		      &err) == 0);
	CHECK(put_err(st, "schemas/broken", "{\"type\":12}", O_TRUNC, &err) == -EINVAL);
	CHECK(reads_as(st, "schemas/broken", NULL));
	CHECK(binding_check(st, "task", &err) == 0);
	CHECK(binding_check(st, "nothing", &err) == -EINVAL);
	/* Bound: valid documents go in, others are refused with the reason. */
	CHECK(put_err(st, "p", "{\"a\":1}", O_TRUNC, &err) == 0);
	CHECK(bind(st, "p", "task", &err) == 0);
	CHECK(put_err(st, "p", "{\"a\":2}", O_TRUNC, &err) == 0);
	CHECK(put_err(st, "p", "{\"b\":2}", O_TRUNC, &err) == -EINVAL);
	CHECK_MSG(strstr(err.text, "\"a\"") != NULL, "%s", err.text);
	CHECK(reads_as(st, "p", "{\"a\":2}"));
	CHECK(put_err(st, "p", "not json", O_TRUNC, &err) == -EINVAL);
	/* A binding must name a schema that compiles now. */
	CHECK(put_err(st, "q", "{}", O_TRUNC, &err) == 0);
	CHECK(bind(st, "q", "nothing", &err) < 0);
	CHECK(bind(st, "q", "../task", &err) < 0);
	/* The schema removed behind the binding: fail closed. */
	CHECK(stash_store_unlink(st, "schemas/task", &who, &err) == 0);
	CHECK(put_err(st, "p", "{\"a\":3}", O_TRUNC, &err) == -EINVAL);
	CHECK(reads_as(st, "p", "{\"a\":2}"));
	stash_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backing);
	return check_done();
}
