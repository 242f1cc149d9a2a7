// SPDX-License-Identifier: MIT
/*
 * test_error.c - struct stash_error: the return value is the negative
 * errno, a NULL error is allowed, text longer than the struct is cut (never
 * overflowed), and clearing empties every field.
 */
#include <errno.h>
#include <string.h>

#include "stashfs/error.h"
#include "check.h"

static void test_set_and_clear(void)
{
	struct stash_error e;

	memset(&e, 'x', sizeof(e));
	stash_error_clear(&e);
	CHECK(e.code == 0 && !e.text[0] && !e.pointer[0] && !e.keyword[0]);
	CHECK(stash_error_set(&e, ENOENT, "no stash %s (%d)", "notes", 7) == -ENOENT);
	CHECK(e.code == ENOENT);
	CHECK(!strcmp(e.text, "no stash notes (7)"));
	CHECK(stash_error_set(NULL, EINVAL, "nobody reads this") == -EINVAL);
	stash_error_clear(NULL);
}

static void test_long_text_is_cut(void)
{
	char longer[STASH_ERROR_TEXT * 2];
	struct stash_error e;

	memset(longer, 'y', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	memset(&e, 0, sizeof(e));
	memset(e.pointer, 'p', sizeof(e.pointer) - 1);
	CHECK(stash_error_set(&e, E2BIG, "%s", longer) == -E2BIG);
	CHECK(strlen(e.text) == STASH_ERROR_TEXT - 1);
	CHECK(e.text[0] == 'y' && e.text[STASH_ERROR_TEXT - 2] == 'y');
	/* the field after text is untouched */
	CHECK(strlen(e.pointer) == STASH_ERROR_POINTER - 1 && e.pointer[0] == 'p');
}

int main(void)
{
	test_set_and_clear();
	test_long_text_is_cut();
	return check_done();
}
