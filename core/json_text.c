// SPDX-License-Identifier: MIT
/*
 * json_text.c - numbers as they were written, and the printer that writes
 * them back: a document prints as it was written wherever jansson's values
 * would print otherwise.
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
#include "json_priv.h"

/*
 * ---------------------------------------------------------------------
 * Numbers as written
 * ---------------------------------------------------------------------
 *
 * jansson keeps a number as a double or a 64-bit integer and nothing else,
 * and its values have no room for more.  The texts of numbers that would
 * print differently live in a table keyed by the value's address.  An
 * entry holds a reference to its value, so the address cannot be reused
 * while the entry exists; entries whose value nobody else holds any more
 * are dropped when the table is about to grow.  Merges share values
 * between patch and document, so a number keeps its text through any
 * number of merges.  Such numbers are rare (most texts already are what
 * the printer writes), so the table is small and usually empty.
 */

struct numtext {
	json_t *value;
	size_t len;
	char text[];
};

static struct {
	pthread_mutex_t lock;
	struct numtext **slots;         /* open addressing, cap a power of 2 */
	size_t cap, count;
} numtexts = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Read without the lock: printing skips the lookup while nothing is kept. */
static atomic_size_t numtexts_count;

static size_t numtext_slot(const json_t *v, size_t cap)
{
	uintptr_t h = (uintptr_t)v;

	h ^= h >> 17;
	h *= (uintptr_t)0x9e3779b97f4a7c15ULL;
	return (size_t)(h >> 7) & (cap - 1);
}

/* Only this table holds the value: nobody can print it any more. */
static bool numtext_dead(const struct numtext *e)
{
	return __atomic_load_n(&e->value->refcount, __ATOMIC_ACQUIRE) == 1;
}

static void numtext_put(struct numtext **slots, size_t cap, struct numtext *e)
{
	size_t i = numtext_slot(e->value, cap);

	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = e;
}

/* Drop dead entries and resize so that @more new ones fit.  Under the lock. */
static int numtexts_rehash(size_t more)
{
	struct numtext **slots;
	size_t cap = 64, live = 0, i;

	for (i = 0; i < numtexts.cap; i++) {
		struct numtext *e = numtexts.slots[i];

		if (!e)
			continue;
		if (numtext_dead(e)) {
			json_decref(e->value);
			free(e);
			numtexts.slots[i] = NULL;
		} else {
			live++;
		}
	}
	/* Room for twice what lives, so sweeps stay rare. */
	while (cap < 4 * (live + more))
		cap *= 2;
	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (i = 0; i < numtexts.cap; i++)
		if (numtexts.slots[i])
			numtext_put(slots, cap, numtexts.slots[i]);
	free(numtexts.slots);
	numtexts.slots = slots;
	numtexts.cap = cap;
	numtexts.count = live;
	atomic_store(&numtexts_count, live);
	return 0;
}

static int numtext_keep(json_t *v, const char *text, size_t len)
{
	struct numtext *e;
	int ret = 0;

	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->value = json_incref(v);
	e->len = len;
	memcpy(e->text, text, len);
	e->text[len] = '\0';
	pthread_mutex_lock(&numtexts.lock);
	if (2 * (numtexts.count + 1) > numtexts.cap && numtexts_rehash(1) < 0) {
		ret = -ENOMEM;
		json_decref(v);
		free(e);
		goto out;
	}
	numtext_put(numtexts.slots, numtexts.cap, e);
	numtexts.count++;
	atomic_store(&numtexts_count, numtexts.count);
out:
	pthread_mutex_unlock(&numtexts.lock);
	return ret;
}

static size_t format_real(double d, char *out, size_t size);

/* The next number in @buf from *@pos, skipping strings: its span. */
static bool next_number(const char *buf, size_t len, size_t *pos, size_t *start)
{
	size_t i = *pos;

	while (i < len) {
		char c = buf[i];

		if (c == '"') {
			for (i++; i < len && buf[i] != '"'; i++)
				if (buf[i] == '\\')
					i++;
			i++;
		} else if (c == '-' || is_digit((unsigned char)c)) {
			*start = i;
			while (i < len && (is_digit((unsigned char)buf[i]) || strchr("+-.eE", buf[i])))
				i++;
			*pos = i;
			return true;
		} else {
			i++;
		}
	}
	*pos = i;
	return false;
}

/*
 * Walk @v in document order alongside its text and keep the text of every
 * number that would print differently.  jansson keeps keys in the order
 * read, and duplicates were refused, so the n-th number of the tree is the
 * n-th number of the text.
 */
int json_keep_texts(json_t *v, const char *buf, size_t len, size_t *pos)
{
	char printed[48];
	size_t start, n;
	void *iter;
	int ret = 0;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		for (iter = json_object_iter(v); iter && !ret;
		     iter = json_object_iter_next(v, iter))
			ret = json_keep_texts(json_object_iter_value(iter), buf, len, pos);
		return ret;
	case JSON_ARRAY:
		for (n = 0; n < json_array_size(v) && !ret; n++)
			ret = json_keep_texts(json_array_get(v, n), buf, len, pos);
		return ret;
	case JSON_INTEGER:
	case JSON_REAL:
		break;
	default:
		return 0;
	}
	if (!next_number(buf, len, pos, &start))
		return -EINVAL;         /* cannot happen: the scanner saw them all */
	if (json_is_integer(v))
		n = (size_t)snprintf(printed, sizeof(printed), "%" JSON_INTEGER_FORMAT,
				     json_integer_value(v));
	else
		n = format_real(json_real_value(v), printed, sizeof(printed));
	if (n == *pos - start && memcmp(printed, buf + start, n) == 0)
		return 0;
	return numtext_keep(v, buf + start, *pos - start);
}

/*
 * ---------------------------------------------------------------------
 * Printing
 * ---------------------------------------------------------------------
 */

struct outbuf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

static bool out_reserve(struct outbuf *o, size_t more)
{
	size_t cap;
	char *data;

	if (o->failed)
		return false;
	if (o->cap - o->len > more)
		return true;
	cap = o->cap ? o->cap : 256;
	while (cap - o->len <= more) {
		if (cap > ((size_t)-1) / 2) {
			o->failed = true;
			return false;
		}
		cap *= 2;
	}
	data = realloc(o->data, cap);
	if (!data) {
		o->failed = true;
		return false;
	}
	o->data = data;
	o->cap = cap;
	return true;
}

static void out_bytes(struct outbuf *o, const char *p, size_t n)
{
	if (!out_reserve(o, n))
		return;
	memcpy(o->data + o->len, p, n);
	o->len += n;
}

static void out_char(struct outbuf *o, char c)
{
	if (!out_reserve(o, 1))
		return;
	o->data[o->len++] = c;
}

static void out_newline(struct outbuf *o, int indent, unsigned int depth)
{
	size_t n = (size_t)indent * depth;

	if (!indent || !out_reserve(o, n + 1))
		return;
	o->data[o->len++] = '\n';
	memset(o->data + o->len, ' ', n);
	o->len += n;
}

static void out_string(struct outbuf *o, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;
	char esc[6];

	out_char(o, '"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		out_bytes(o, p + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"':  esc[1] = '"';  break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b';  break;
		case '\f': esc[1] = 'f';  break;
		case '\n': esc[1] = 'n';  break;
		case '\r': esc[1] = 'r';  break;
		case '\t': esc[1] = 't';  break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			out_bytes(o, esc, 6);
			continue;
		}
		out_bytes(o, esc, 2);
	}
	out_bytes(o, p + run, n - run);
	out_char(o, '"');
}

/* Raise the last mantissa digit of a %e text by one; false on a carry out. */
static bool bump_last_digit(char *sci)
{
	char *p = strchr(sci, 'e');

	while (p-- > sci) {
		if (*p == '-')
			break;
		if (!is_digit((unsigned char)*p))
			continue;       /* the decimal point */
		if (*p < '9') {
			(*p)++;
			return true;
		}
		*p = '0';
	}
	return false;
}

/*
 * The shortest text that reads back to the very same double, so 0.1 prints
 * as 0.1, not 0.10000000000000001.  Bits are compared, not values, so -0.0
 * keeps its sign.  Layout follows Python's repr (what jq and most readers
 * show): positional for exponents -4..15, else 1.5e+300; always looks like a
 * real ("1.0", not "1") so a reader sees the type that was written.
 * (Long on purpose: finding the digits and laying them out are one pass
 * over one buffer, clearer read top to bottom than split.)
 */
static size_t format_real(double d, char *out, size_t size)
{
	char sci[40], pos[48];
	const char *best = sci;
	double back;
	int prec, exp2, exp10, decimals;
	size_t i, n = 0;
	bool real_looking = false, in_point = false;

	if (!isfinite(d))
		return (size_t)snprintf(out, size, "null");  /* jansson cannot hold these */

	/*
	 * For normal doubles: if any precision up to 15 digits reads back, 15
	 * does, and its text is that shorter one padded with zeros (15 digits
	 * resolve finer than a double's spacing).  So one try gives the length
	 * and only values needing 16 or 17 digits cost more.  Subnormals are
	 * spaced more coarsely, so they try every precision.
	 */
	prec = fabs(d) < DBL_MIN ? 1 : 15;
	for (; prec <= 17; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, d);
		back = strtod(sci, NULL);
		if (memcmp(&back, &d, sizeof(d)) == 0)
			break;
	}
	/* A power of two has a wider gap above it than below; the nearest
	 * 16-digit text may fall in the narrow one while the next one up
	 * still reads back (Python's repr finds it too). */
	if (prec == 17 && fabs(frexp(d, &exp2)) == 0.5) {
		snprintf(pos, sizeof(pos), "%.15e", d);
		back = bump_last_digit(pos) ? strtod(pos, NULL) : 0;
		if (memcmp(&back, &d, sizeof(d)) == 0) {
			memcpy(sci, pos, sizeof(sci));
			prec = 16;
		}
	}
	if (prec == 15 && fabs(d) >= DBL_MIN) {
		int digits = 0, zeros = 0;

		for (i = 0; sci[i] && sci[i] != 'e'; i++) {
			if (!is_digit((unsigned char)sci[i]))
				continue;
			digits++;
			zeros = sci[i] == '0' ? zeros + 1 : 0;
		}
		prec = digits - zeros;
		if (prec < 15)
			snprintf(sci, sizeof(sci), "%.*e", prec - 1, d);
	}
	exp10 = atoi(strchr(sci, 'e') + 1);
	if (exp10 >= -4 && exp10 < 16) {
		decimals = prec - 1 - exp10;
		snprintf(pos, sizeof(pos), "%.*f", decimals > 0 ? decimals : 0, d);
		/* Same digits on the same grid; checked anyway, it is cheap. */
		back = strtod(pos, NULL);
		if (memcmp(&back, &d, sizeof(d)) == 0)
			best = pos;
	}

	/* printf and strtod agree on the locale's decimal point; JSON wants
	 * '.'.  Anything but digits, signs and 'e' is that point. */
	for (i = 0; best[i] && n + 3 < size; i++) {
		char c = best[i];

		if (is_digit((unsigned char)c) || c == '-' || c == '+' || c == 'e') {
			out[n++] = c;
			in_point = false;
			if (c == 'e')
				real_looking = true;
		} else if (!in_point) {
			out[n++] = '.';
			in_point = true;
			real_looking = true;
		}
	}
	if (!real_looking) {
		out[n++] = '.';
		out[n++] = '0';
	}
	out[n] = '\0';
	return n;
}

/* Print the text @v was written with; false if none is kept. */
static bool numtext_print(struct outbuf *o, const json_t *v)
{
	struct numtext *e = NULL;
	size_t i;

	if (!atomic_load(&numtexts_count))
		return false;
	pthread_mutex_lock(&numtexts.lock);
	i = numtext_slot(v, numtexts.cap);
	for (; (e = numtexts.slots[i]); i = (i + 1) & (numtexts.cap - 1))
		if (e->value == v)
			break;
	/* Copied under the lock: another parse may replace the slot array. */
	if (e)
		out_bytes(o, e->text, e->len);
	pthread_mutex_unlock(&numtexts.lock);
	return e != NULL;
}

static void dump_value(struct outbuf *o, const json_t *v, int indent, unsigned int depth)
{
	char num[48];
	size_t i, n;
	void *iter;

	if (depth >= STASH_JSON_MAX_DEPTH) {
		o->failed = true;
		return;
	}

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (json_object_size(v) == 0) {
			out_bytes(o, "{}", 2);
			break;
		}
		out_char(o, '{');
		/* The iterator API wants a mutable object; nothing is changed. */
		iter = json_object_iter((json_t *)v);
		for (i = 0; iter; i++, iter = json_object_iter_next((json_t *)v, iter)) {
			if (i)
				out_char(o, ',');
			out_newline(o, indent, depth + 1);
			out_string(o, json_object_iter_key(iter), json_object_iter_key_len(iter));
			if (indent)
				out_bytes(o, ": ", 2);
			else
				out_char(o, ':');
			dump_value(o, json_object_iter_value(iter), indent, depth + 1);
		}
		out_newline(o, indent, depth);
		out_char(o, '}');
		break;
	case JSON_ARRAY:
		n = json_array_size(v);
		if (n == 0) {
			out_bytes(o, "[]", 2);
			break;
		}
		out_char(o, '[');
		for (i = 0; i < n; i++) {
			if (i)
				out_char(o, ',');
			out_newline(o, indent, depth + 1);
			dump_value(o, json_array_get(v, i), indent, depth + 1);
		}
		out_newline(o, indent, depth);
		out_char(o, ']');
		break;
	case JSON_STRING:
		out_string(o, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		if (numtext_print(o, v))
			break;
		n = (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
				     json_integer_value(v));
		out_bytes(o, num, n);
		break;
	case JSON_REAL:
		if (numtext_print(o, v))
			break;
		n = format_real(json_real_value(v), num, sizeof(num));
		out_bytes(o, num, n);
		break;
	case JSON_TRUE:
		out_bytes(o, "true", 4);
		break;
	case JSON_FALSE:
		out_bytes(o, "false", 5);
		break;
	case JSON_NULL:
		out_bytes(o, "null", 4);
		break;
	}
}

char *stash_json_dump(const json_t *doc, int indent, size_t *len)
{
	struct outbuf o = { 0 };

	if (!doc)
		goto fail;
	if (indent < 0)
		indent = 0;
	dump_value(&o, doc, indent, 0);
	out_char(&o, '\n');
	/* NUL-terminated as a courtesy; *len does not count it. */
	if (!out_reserve(&o, 1))
		goto fail;
	o.data[o.len] = '\0';
	*len = o.len;
	return o.data;
fail:
	free(o.data);
	return NULL;
}

/*
 * ---------------------------------------------------------------------
 * Merging
 * ---------------------------------------------------------------------
 */
