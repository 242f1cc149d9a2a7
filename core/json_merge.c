// SPDX-License-Identifier: MIT
/*
 * json_merge.c - the top-level merge of DESIGN 2.2 (RFC 7396 merge patch),
 * with its reasons for refusing a patch.
 */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stashfs/json.h"

static const char *kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:  return "an object";
	case JSON_ARRAY:   return "an array";
	case JSON_STRING:  return "a string";
	case JSON_INTEGER:
	case JSON_REAL:    return "a number";
	case JSON_TRUE:    return "true";
	case JSON_FALSE:   return "false";
	default:           return "null";
	}
}

/*
 * Values are shared with @patch, not copied: merges replace whole values and
 * never edit one in place, so sharing is safe and saves a deep copy.
 * jansson keeps an existing key's position when its value is replaced
 * (checked against 2.14) and appends new keys, which is the order we owe.
 * On -ENOMEM @doc may hold part of the patch; callers drop it.
 */
int stash_merge_apply(json_t *doc, const json_t *patch, struct stash_error *err)
{
	json_t *p = (json_t *)patch;   /* iteration needs it; never modified */
	void *iter, *next;
	int ret = 0;

	if (!json_is_object(patch)) {
		ret = stash_error_set(err, EINVAL, "patch is not a JSON object (it is %s)",
				      patch ? kind(patch) : "missing");
		goto out;
	}
	if (!json_is_object(doc)) {
		ret = stash_error_set(err, EINVAL, "the stash is not a JSON object (it is %s)",
				      doc ? kind(doc) : "missing");
		goto out;
	}

	/* Take the next position first: when @doc is @patch, a deletion
	 * would free the current one. */
	for (iter = json_object_iter(p); iter; iter = next) {
		const char *key = json_object_iter_key(iter);
		size_t klen = json_object_iter_key_len(iter);
		json_t *value = json_object_iter_value(iter);

		next = json_object_iter_next(p, iter);
		if (json_is_null(value)) {
			json_object_deln(doc, key, klen);  /* absent is fine */
		} else if (json_object_setn(doc, key, klen, value)) {
			ret = stash_error_set(err, ENOMEM, "out of memory while merging");
			goto out;
		}
	}
out:
	return ret;
}
