/* SPDX-License-Identifier: MIT */
/*
 * error.h - the human side of a refusal.
 *
 * Core functions return a negative errno; when the caller passes a
 * struct stash_error, the reason is written into it as well.  The struct is
 * fixed-size so filling it never allocates and never fails.
 */
#ifndef STASHFS_ERROR_H
#define STASHFS_ERROR_H

#include <stdarg.h>

#define STASH_ERROR_TEXT 512
#define STASH_ERROR_POINTER 256
#define STASH_ERROR_KEYWORD 64

struct stash_error {
	int code;                             /* positive errno, 0 = none */
	char text[STASH_ERROR_TEXT];          /* full sentence for users */
	char pointer[STASH_ERROR_POINTER];    /* JSON pointer of the value, or "" */
	char keyword[STASH_ERROR_KEYWORD];    /* schema keyword, or "" */
};

/* Clear @err (may be NULL). */
void stash_error_clear(struct stash_error *err);

/*
 * Record a refusal: @code is a positive errno.  Returns -code so callers can
 * write `return stash_error_set(err, EINVAL, "...")`.  @err may be NULL.
 */
int stash_error_set(struct stash_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
