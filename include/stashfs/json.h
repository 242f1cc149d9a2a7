/* SPDX-License-Identifier: MIT */
/*
 * json.h - JSON documents of stashes: strict parsing, faithful printing and
 * the top-level merge of DESIGN 2.2.
 *
 * Parsing is strict (one value, UTF-8 checked, duplicate keys refused,
 * integers that do not fit 64 bits, and reals that would become infinite
 * or 0, refused with a reason rather than changed).  Every number keeps
 * the text it was written with: a parsed number whose text differs from
 * what the printer would make of its value (`-0`, `1E+2`, `0.50`, more
 * digits than a double holds) carries that text along, and printing copies
 * it.  Other numbers print as integers, or reals in the shortest form that
 * reads back to the same double, which is their text as written too.
 */
#ifndef STASHFS_JSON_H
#define STASHFS_JSON_H

#include <stddef.h>
#include <jansson.h>

#include "stashfs/error.h"

/*
 * Parse @len bytes at @buf as one complete JSON text (surrounding whitespace
 * allowed).  Returns a new reference, or NULL with @err filled (EINVAL; the
 * text names line, column and byte offset).
 */
json_t *stash_json_parse(const char *buf, size_t len, struct stash_error *err);

/*
 * How far a partly received JSON text is: 1 = a complete value (only
 * whitespace after it), 0 = a valid prefix that may still be completed,
 * -EINVAL = no continuation can make it valid (@err says why).
 * Used to refuse bad patches at write() time, before close().
 */
int stash_json_progress(const char *buf, size_t len, struct stash_error *err);

/*
 * Render @doc with @indent spaces per level (0 = compact, one line) and a
 * trailing newline.  Returns a malloc'ed, NUL-terminated buffer (caller
 * frees) and its length without the NUL in *@len, or NULL on allocation
 * failure or nesting deeper than STASH_JSON_MAX_DEPTH.
 */
char *stash_json_dump(const json_t *doc, int indent, size_t *len);

/*
 * Top-level merge (RFC 7386 at depth one): each key of @patch replaces the
 * key in @doc, a null value deletes it; existing keys keep their order, new
 * keys are appended.  Both must be objects (-EINVAL otherwise).  @doc is
 * changed in place; @patch is borrowed.  Returns 0 or a negative errno.
 */
int stash_merge_apply(json_t *doc, const json_t *patch, struct stash_error *err);

/*
 * Deepest nesting accepted, counted as jansson counts it (every value,
 * scalars included, is one level deeper than its container).
 */
#define STASH_JSON_MAX_DEPTH JSON_PARSER_MAX_DEPTH

/* Bytes of a number kept for its range check when it spans two chunks. */
#define STASH_JSON_NUMBUF 48

/*
 * Incremental syntax scanner behind stash_json_progress, for callers that
 * receive a text in appended chunks and do not want to rescan it each time.
 * Plain data: no allocation, nothing to free.  It checks syntax, UTF-8,
 * escapes, nesting depth and number ranges, but not duplicate keys (those
 * need the whole object; stash_json_parse refuses them).  The fields are
 * json.c's own: callers only init and feed.
 */
struct stash_json_scan {
	size_t offset;              /* bytes consumed so far */
	size_t line;                /* 1-based line of the next byte */
	size_t column;              /* characters already on that line */
	size_t mark_offset;         /* start of the current number or escape */
	size_t mark_line;
	size_t mark_column;
	size_t numlen;              /* length of the current number */
	unsigned int depth;         /* open containers */
	unsigned int hex;           /* \u escape being read */
	unsigned int high;          /* high surrogate awaiting its pair */
	unsigned char state;
	unsigned char count;        /* literal index, hex digits, UTF-8 bytes due */
	unsigned char lo, hi;       /* range of the next UTF-8 continuation byte */
	unsigned char flags;
	unsigned int odd;           /* numbers the printer might not render as written */
	const char *literal;
	char num[STASH_JSON_NUMBUF];
	unsigned char stack[(STASH_JSON_MAX_DEPTH + 7) / 8];  /* 1 bit = object */
};

/* Start scanning a new text. */
void stash_json_scan_init(struct stash_json_scan *s);

/*
 * Feed the next @len bytes.  Returns what stash_json_progress would return
 * for everything fed so far, except that duplicate keys are not detected.
 * After -EINVAL the scanner stays failed.
 */
int stash_json_scan_feed(struct stash_json_scan *s, const char *buf, size_t len,
			 struct stash_error *err);

#endif
