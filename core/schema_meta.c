// SPDX-License-Identifier: MIT
/*
 * schema_meta.c - the draft 2020-12 metaschemas built into the library
 * (schema_meta.h), parsed once so that "$schema" and "$ref" find them
 * without a loader.  Compiling the main metaschema is schema_compile.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "schema_priv.h"
#include "schema_meta.h"

#define NMETA (sizeof(schema_meta_docs) / sizeof(schema_meta_docs[0]))

static json_t *meta_json[NMETA];

int schema_builtin_parse(char *why, size_t cap)
{
	json_error_t je;
	size_t i;

	for (i = 0; i < NMETA; i++) {
		meta_json[i] = json_loads(schema_meta_docs[i].text, 0, &je);
		if (!meta_json[i]) {
			snprintf(why, cap, "built-in metaschema %s: %s", schema_meta_docs[i].uri,
				 je.text);
			return -EINVAL;
		}
	}
	return 0;
}

const json_t *schema_builtin_doc(const char *uri)
{
	size_t i, n = strlen(uri);

	/* "…/schema#" names the same document as "…/schema". */
	if (n && uri[n - 1] == '#')
		n--;
	for (i = 0; i < NMETA; i++)
		if (strlen(schema_meta_docs[i].uri) == n && !strncmp(schema_meta_docs[i].uri, uri, n))
			return meta_json[i];
	return NULL;
}

/* Free them at exit so leak checkers see a clean heap. */
__attribute__((destructor)) static void builtin_fini(void)
{
	size_t i;

	for (i = 0; i < NMETA; i++) {
		json_decref(meta_json[i]);
		meta_json[i] = NULL;
	}
}
