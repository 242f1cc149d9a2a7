/* SPDX-License-Identifier: MIT */
/*
 * json_priv.h - what json.c (parsing) and json_text.c (numbers as written,
 * printing) share.  Not a public header.
 */
#ifndef STASHFS_JSON_PRIV_H
#define STASHFS_JSON_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/*
 * Remember the text of every number in @v (parsed from the @len bytes at
 * @buf, scanning from *@pos) that would print differently: 0 or -ENOMEM.
 */
int json_keep_texts(json_t *v, const char *buf, size_t len, size_t *pos);

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

#endif
