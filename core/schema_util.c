// SPDX-License-Identifier: MIT
/*
 * schema_util.c - the small containers schema compilation and validation
 * stand on: an arena for a compiled schema's nodes and strings, a hash map
 * (by pointer or by bytes) for the compile-time tables, a growable buffer.
 * No schema knowledge here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_priv.h"

/* ------------------------------------------------------------------ */
/* Arena: every node and string of a compiled schema lives in one, so
 * freeing is one walk and nodes sit close together in memory. */



void *schema_arena_alloc(struct arena *a, size_t n)
{
	struct chunk *c = a->head;
	void *p;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!c || c->size - c->used < n) {
		size_t size = n > 16384 ? n : 16384;

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->size = size;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

char *schema_arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = schema_arena_alloc(a, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

void schema_arena_free(struct arena *a)
{
	struct chunk *c, *next;

	for (c = a->head; c; c = next) {
		next = c->next;
		free(c);
	}
	a->head = NULL;
}

/* ------------------------------------------------------------------ */
/* Hash map used while compiling.  len == 0 means the key is a pointer
 * compared by identity (json_t nodes); otherwise it is a byte string that
 * the caller keeps alive. */



uint32_t schema_hash(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *s++;
		h *= 16777619u;
	}
	return h;
}

static uint32_t hkey(const void *key, size_t len)
{
	if (len)
		return schema_hash(key, len);
	uintptr_t v = (uintptr_t)key;

	v ^= v >> 17;
	v *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(v >> 29);
}

static struct hent *hmap_find(const struct hmap *m, const void *key, size_t len)
{
	size_t i;

	if (!m->cap)
		return NULL;
	for (i = hkey(key, len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct hent *e = &m->e[i];

		if (!e->key)
			return NULL;
		if (e->len == len && (len ? !memcmp(e->key, key, len) : e->key == key))
			return e;
	}
}

void *schema_hmap_get(const struct hmap *m, const void *key, size_t len)
{
	struct hent *e = hmap_find(m, key, len);

	return e ? e->val : NULL;
}

/* Insert or replace; returns -ENOMEM on failure. */
int schema_hmap_put(struct hmap *m, const void *key, size_t len, void *val)
{
	struct hent *e;
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct hent *ne = calloc(ncap, sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		for (i = 0; i < m->cap; i++) {
			struct hent *o = &m->e[i];
			size_t j;

			if (!o->key)
				continue;
			for (j = hkey(o->key, o->len) & (ncap - 1); ne[j].key; j = (j + 1) & (ncap - 1))
				;
			ne[j] = *o;
		}
		free(m->e);
		m->e = ne;
		m->cap = ncap;
	}
	e = hmap_find(m, key, len);
	if (e) {
		e->val = val;
		return 0;
	}
	for (i = hkey(key, len) & (m->cap - 1); m->e[i].key; i = (i + 1) & (m->cap - 1))
		;
	m->e[i].key = key;
	m->e[i].len = len;
	m->e[i].val = val;
	m->n++;
	return 0;
}

void schema_hmap_free(struct hmap *m)
{
	free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}

/* ------------------------------------------------------------------ */
/* Growable byte buffer for URIs, pointers and regex translation. */


void schema_buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		char *np;

		while (ncap < b->n + n + 1)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

void schema_buf_str(struct buf *b, const char *s)
{
	schema_buf_add(b, s, strlen(s));
}

void schema_buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		schema_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Returns the string (caller frees) or NULL when out of memory. */
char *schema_buf_take(struct buf *b)
{
	if (b->oom) {
		free(b->p);
		return NULL;
	}
	if (!b->p)
		return strdup("");
	return b->p;
}


int schema_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
