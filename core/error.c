// SPDX-License-Identifier: MIT
/* error.c - filling struct stash_error; never allocates. */
#include <stdio.h>
#include <string.h>

#include "stashfs/error.h"

void stash_error_clear(struct stash_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->text[0] = '\0';
	err->pointer[0] = '\0';
	err->keyword[0] = '\0';
}

int stash_error_set(struct stash_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof(err->text), fmt, ap);
		va_end(ap);
	}
	return -code;
}
