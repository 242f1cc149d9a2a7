// SPDX-License-Identifier: MIT
/*
 * json.c - the JSON side of stashes: a strict parser (jansson behind our own
 * syntax scanner), a printer that keeps what was written, and the top-level
 * merge of DESIGN 2.2.
 *
 * The scanner exists because jansson can only say "premature end of input"
 * for some truncations and calls a UTF-8 character cut by the end of a
 * buffer invalid; write() needs to know whether more bytes can still make
 * the text valid.  It also pins errors to the byte that caused them and
 * refuses numbers that would change on the way in.  Building values and
 * refusing duplicate keys stay with jansson; the scanner applies jansson's
 * depth limit so the two never disagree.
 *
 * Not here: schemas, storage, anything about files.
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

enum scan_state {
	SC_VALUE,               /* a value must come */
	SC_VALUE_OR_END,        /* just after '[' */
	SC_KEY,                 /* after ',' in an object */
	SC_KEY_OR_END,          /* just after '{' */
	SC_COLON,
	SC_NEXT,                /* after a value inside a container */
	SC_DONE,                /* top-level value complete */
	SC_STRING,
	SC_UTF8,                /* inside a multi-byte character */
	SC_ESCAPE,              /* after a backslash */
	SC_HEX,                 /* inside \uXXXX */
	SC_PAIR_BACKSLASH,      /* a high surrogate wants "\u" next */
	SC_PAIR_U,
	SC_LITERAL,
	SC_MINUS,
	SC_ZERO,
	SC_INT,
	SC_DOT,
	SC_FRAC,
	SC_EXP_MARK,
	SC_EXP_SIGN,
	SC_EXP,
	SC_FAILED,
};

#define F_KEY     0x01          /* the string being read is an object key */
#define F_LOW     0x02          /* the \u escape being read must be a low surrogate */
#define F_REAL    0x04          /* the number has a fraction or an exponent */
#define F_NONZERO 0x08          /* the number's digits before the exponent are not all 0 */

enum num_problem {
	NUM_OK,
	NUM_INT_RANGE,
	NUM_TOO_BIG,
	NUM_TOO_SMALL,
};

/* Longest number text quoted in a message. */
#define NUM_QUOTE 40

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c - 'A' + 10;
}

/* Name a byte in a message so that even control bytes stay readable. */
static const char *describe(unsigned char c, char *buf, size_t size)
{
	if (c == '\'')
		snprintf(buf, size, "\"'\" (JSON strings take double quotes)");
	else if (c > 0x20 && c < 0x7f)
		snprintf(buf, size, "'%c'", c);
	else if (c == ' ')
		snprintf(buf, size, "a space");
	else if (c < 0x80)
		snprintf(buf, size, "control character 0x%02x", c);
	else
		snprintf(buf, size, "non-ASCII byte 0x%02x", c);
	return buf;
}

/* How a control character is written inside a JSON string. */
static const char *control_escape(unsigned char c, char *buf, size_t size)
{
	switch (c) {
	case '\t': return "\\t";
	case '\r': return "\\r";
	case '\b': return "\\b";
	case '\f': return "\\f";
	default:
		snprintf(buf, size, "\\u%04x", c);
		return buf;
	}
}

static bool is_lead(unsigned char c)
{
	return (c & 0xc0) != 0x80;
}

/*
 * ---------------------------------------------------------------------
 * The scanner
 * ---------------------------------------------------------------------
 */

static int scan_fail_at(struct stash_json_scan *s, struct stash_error *err,
			size_t offset, size_t line, size_t column,
			const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int scan_fail_at(struct stash_json_scan *s, struct stash_error *err,
			size_t offset, size_t line, size_t column,
			const char *fmt, ...)
{
	char reason[STASH_ERROR_TEXT];
	va_list ap;

	s->state = SC_FAILED;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	return stash_error_set(err, EINVAL,
			       "invalid JSON at line %zu, column %zu (byte %zu): %s",
			       line, column, offset, reason);
}

/* Errors at the byte being scanned now. */
#define scan_fail(s, err, c, ...) \
	scan_fail_at((s), (err), (s)->offset, (s)->line, \
		     (s)->column + (is_lead(c) ? 1 : 0), __VA_ARGS__)

/* Errors at the start of the current number or escape. */
#define scan_fail_mark(s, err, ...) \
	scan_fail_at((s), (err), (s)->mark_offset, (s)->mark_line, \
		     (s)->mark_column, __VA_ARGS__)

static void scan_mark(struct stash_json_scan *s)
{
	s->mark_offset = s->offset;
	s->mark_line = s->line;
	s->mark_column = s->column + 1;
}

void stash_json_scan_init(struct stash_json_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->line = 1;
	s->state = SC_VALUE;
}

static bool top_is_object(const struct stash_json_scan *s)
{
	unsigned int i = s->depth - 1;

	return s->stack[i / 8] & (1u << (i % 8));
}

static void push(struct stash_json_scan *s, bool object)
{
	unsigned int i = s->depth++;

	if (object)
		s->stack[i / 8] |= 1u << (i % 8);
	else
		s->stack[i / 8] &= ~(1u << (i % 8));
}

static void value_done(struct stash_json_scan *s)
{
	s->state = s->depth ? SC_NEXT : SC_DONE;
}

static void num_add(struct stash_json_scan *s, unsigned char c)
{
	/* Keep the text NUL-terminated while it fits; beyond that only its
	 * length matters, except for reals (see number_text). */
	if (s->numlen < sizeof(s->num) - 1) {
		s->num[s->numlen] = c;
		s->num[s->numlen + 1] = '\0';
	}
	s->numlen++;
	if (c >= '1' && c <= '9' && s->state != SC_EXP && s->state != SC_EXP_SIGN &&
	    s->state != SC_EXP_MARK)
		s->flags |= F_NONZERO;
}

/*
 * The current number's text: from our copy, or from the chunk being fed
 * when the copy was too small.  NULL when neither has it all.
 */
static const char *number_text(const struct stash_json_scan *s, const char *chunk,
			       size_t chunk_offset)
{
	if (s->numlen < sizeof(s->num))
		return s->num;
	if (chunk && s->mark_offset >= chunk_offset)
		return chunk + (s->mark_offset - chunk_offset);
	return NULL;
}

/*
 * strtod that reads '.' whatever LC_NUMERIC says, as jansson does; a
 * multi-byte decimal point is not supported (jansson has the same limit).
 * Sets *ok = false when it could not even try.
 */
static double strtod_c(const char *text, size_t len, bool *ok)
{
	char small[64];
	char *copy = small;
	const char *point = localeconv()->decimal_point;
	double value;
	size_t i;

	*ok = true;
	if (len >= sizeof(small)) {
		copy = malloc(len + 1);
		if (!copy) {
			*ok = false;
			return 0;
		}
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (point[0] && point[0] != '.' && !point[1])
		for (i = 0; i < len; i++)
			if (copy[i] == '.')
				copy[i] = point[0];
	value = strtod(copy, NULL);
	if (copy != small)
		free(copy);
	return value;
}

/*
 * Is the number just read representable without changing it?  jansson
 * refuses integers beyond 64 bits and reals beyond the double range; reals
 * that would silently become 0 are refused here too, since a stash keeps
 * values as written.
 */
static enum num_problem number_problem(const struct stash_json_scan *s,
				       const char *chunk, size_t chunk_offset)
{
	const char *text;
	size_t digits;
	bool ok;
	double d;

	if (!(s->flags & F_REAL)) {
		digits = s->numlen - (s->num[0] == '-');
		if (digits < 19)
			return NUM_OK;
		if (digits > 19)
			return NUM_INT_RANGE;
		/* 19 digits always fit in s->num; same length, so strcmp
		 * compares magnitudes. */
		if (strcmp(s->num + (s->num[0] == '-'),
			   s->num[0] == '-' ? "9223372036854775808" :
					      "9223372036854775807") > 0)
			return NUM_INT_RANGE;
		return NUM_OK;
	}

	text = number_text(s, chunk, chunk_offset);
	if (!text)
		return NUM_OK;  /* jansson still refuses an overflow */
	d = strtod_c(text, s->numlen, &ok);
	if (!ok)
		return NUM_OK;
	if (isinf(d))
		return NUM_TOO_BIG;
	if (d == 0 && (s->flags & F_NONZERO))
		return NUM_TOO_SMALL;
	return NUM_OK;
}

static int number_fail(struct stash_json_scan *s, struct stash_error *err,
		       enum num_problem problem, const char *chunk, size_t chunk_offset)
{
	const char *text = number_text(s, chunk, chunk_offset);
	char quoted[NUM_QUOTE + 8];

	if (!text)
		snprintf(quoted, sizeof(quoted), "of %zu characters", s->numlen);
	else if (s->numlen > NUM_QUOTE)
		snprintf(quoted, sizeof(quoted), "%.*s...", NUM_QUOTE, text);
	else
		snprintf(quoted, sizeof(quoted), "%.*s", (int)s->numlen, text);

	switch (problem) {
	case NUM_INT_RANGE:
		return scan_fail_mark(s, err,
			"integer %s does not fit in 64 bits; store it as a string",
			quoted);
	case NUM_TOO_BIG:
		return scan_fail_mark(s, err,
			"number %s is too large for a 64-bit float; store it as a string",
			quoted);
	default:
		return scan_fail_mark(s, err,
			"number %s is too small for a 64-bit float (it would become 0); "
			"store it as a string", quoted);
	}
}

/*
 * Might the printer render the number just read differently from its text?
 * A cheap test that errs towards yes; stash_json_parse then compares the
 * text with what would be printed, only when some number got a yes.  No for
 * an integer other than -0, and for a real without exponent of at most 15
 * digits (any such decimal survives a round trip through a double) whose
 * fraction ends in a non-zero digit or is a single 0, and which is not
 * below 0.0001 (those print with an exponent): the printer's shortest form
 * is then exactly those digits.
 */
static bool number_odd(const struct stash_json_scan *s)
{
	const char *t = s->num + (s->num[0] == '-');
	const char *point;

	if (!(s->flags & F_REAL))
		return s->num[0] == '-' && t[0] == '0';
	if (s->numlen >= sizeof(s->num) || strpbrk(t, "eE"))
		return true;
	point = strchr(t, '.');
	if (!point || strlen(t) - 1 > 15)
		return true;
	if (point[1] && point[2] && s->num[s->numlen - 1] == '0')
		return true;
	return strncmp(t, "0.0000", 6) == 0;
}

static bool number_complete(const struct stash_json_scan *s)
{
	return s->state == SC_ZERO || s->state == SC_INT || s->state == SC_FRAC ||
	       s->state == SC_EXP;
}

static bool starts_value(unsigned char c)
{
	return c == '{' || c == '[' || c == '"' || c == '-' || is_digit(c) ||
	       c == 't' || c == 'f' || c == 'n';
}

static int scan_value_start(struct stash_json_scan *s, unsigned char c,
			    struct stash_error *err)
{
	char what[64];

	if (!starts_value(c))
		return scan_fail(s, err, c, "expected a value%s, found %s",
				 s->state == SC_VALUE_OR_END ? " or ']'" : "",
				 describe(c, what, sizeof(what)));
	if (s->depth >= STASH_JSON_MAX_DEPTH)
		return scan_fail(s, err, c, "nesting deeper than %d levels",
				 STASH_JSON_MAX_DEPTH);

	switch (c) {
	case '{':
		push(s, true);
		s->state = SC_KEY_OR_END;
		break;
	case '[':
		push(s, false);
		s->state = SC_VALUE_OR_END;
		break;
	case '"':
		s->flags &= ~F_KEY;
		s->state = SC_STRING;
		break;
	case 't':
	case 'f':
	case 'n':
		s->literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
		s->count = 1;
		s->state = SC_LITERAL;
		break;
	default:
		scan_mark(s);
		s->numlen = 0;
		s->flags &= ~(F_REAL | F_NONZERO);
		s->state = c == '-' ? SC_MINUS : c == '0' ? SC_ZERO : SC_INT;
		num_add(s, c);
		break;
	}
	return 0;
}

static int scan_close(struct stash_json_scan *s, unsigned char c, struct stash_error *err)
{
	char want = top_is_object(s) ? '}' : ']';
	char what[64];

	if (c != want)
		return scan_fail(s, err, c, "expected ',' or '%c', found %s", want,
				 describe(c, what, sizeof(what)));
	s->depth--;
	value_done(s);
	return 0;
}

/* A \uXXXX escape has been read whole: check what it stands for. */
static int scan_escape_done(struct stash_json_scan *s, struct stash_error *err)
{
	unsigned int v = s->hex;

	if (s->flags & F_LOW) {
		s->flags &= ~F_LOW;
		if (v < 0xdc00 || v > 0xdfff)
			return scan_fail_mark(s, err,
				"invalid UTF-16 surrogate pair \\u%04X\\u%04X", s->high, v);
		s->state = SC_STRING;
		return 0;
	}
	if (v >= 0xd800 && v <= 0xdbff) {
		s->high = v;
		s->state = SC_PAIR_BACKSLASH;
		return 0;
	}
	if (v >= 0xdc00 && v <= 0xdfff)
		return scan_fail_mark(s, err,
			"unpaired UTF-16 surrogate \\u%04X (a low surrogate must follow a high one)",
			v);
	if (v == 0 && (s->flags & F_KEY))
		return scan_fail_mark(s, err, "object keys cannot contain \\u0000");
	s->state = SC_STRING;
	return 0;
}

static int scan_string_byte(struct stash_json_scan *s, unsigned char c,
			    struct stash_error *err)
{
	char what[64];

	if (c == '"') {
		if (s->flags & F_KEY) {
			s->flags &= ~F_KEY;
			s->state = SC_COLON;
		} else {
			value_done(s);
		}
		return 0;
	}
	if (c == '\\') {
		scan_mark(s);
		s->state = SC_ESCAPE;
		return 0;
	}
	if (c == '\n')
		return scan_fail(s, err, c, "line break inside a string (write it as \\n)");
	if (c < 0x20)
		return scan_fail(s, err, c,
				 "unescaped control character 0x%02x inside a string (write it as %s)",
				 c, control_escape(c, what, sizeof(what)));
	if (c < 0x80)
		return 0;

	/* Well-formed UTF-8 per Unicode table 3-7: no overlong forms, no
	 * surrogates, nothing above U+10FFFF. */
	s->lo = 0x80;
	s->hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		s->count = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		s->count = 2;
		if (c == 0xe0)
			s->lo = 0xa0;
		else if (c == 0xed)
			s->hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		s->count = 3;
		if (c == 0xf0)
			s->lo = 0x90;
		else if (c == 0xf4)
			s->hi = 0x8f;
	} else {
		return scan_fail(s, err, c, "invalid UTF-8: %s cannot start a character",
				 describe(c, what, sizeof(what)));
	}
	s->state = SC_UTF8;
	return 0;
}

static int scan_number_byte(struct stash_json_scan *s, unsigned char c,
			    const char *chunk, size_t chunk_offset,
			    struct stash_error *err, bool *ended)
{
	char what[64];
	enum num_problem problem;

	*ended = false;
	switch (s->state) {
	case SC_MINUS:
		if (!is_digit(c))
			return scan_fail(s, err, c, "expected a digit after '-', found %s",
					 describe(c, what, sizeof(what)));
		s->state = c == '0' ? SC_ZERO : SC_INT;
		num_add(s, c);
		return 0;
	case SC_DOT:
		if (!is_digit(c))
			return scan_fail(s, err, c,
					 "expected a digit after the decimal point, found %s",
					 describe(c, what, sizeof(what)));
		num_add(s, c);
		s->state = SC_FRAC;
		return 0;
	case SC_EXP_MARK:
		if (c == '+' || c == '-') {
			num_add(s, c);
			s->state = SC_EXP_SIGN;
			return 0;
		}
		/* fall through */
	case SC_EXP_SIGN:
		if (!is_digit(c))
			return scan_fail(s, err, c, "expected a digit in the exponent, found %s",
					 describe(c, what, sizeof(what)));
		s->state = SC_EXP;
		num_add(s, c);
		return 0;
	default:
		break;
	}

	/* SC_ZERO, SC_INT, SC_FRAC, SC_EXP: the number may end here. */
	if (is_digit(c)) {
		if (s->state == SC_ZERO)
			return scan_fail(s, err, c,
					 "a number cannot start with 0 followed by a digit");
		num_add(s, c);
		return 0;
	}
	if (c == '.' && (s->state == SC_ZERO || s->state == SC_INT)) {
		s->flags |= F_REAL;
		num_add(s, c);
		s->state = SC_DOT;
		return 0;
	}
	if ((c == 'e' || c == 'E') && s->state != SC_EXP) {
		s->flags |= F_REAL;
		num_add(s, c);
		s->state = SC_EXP_MARK;
		return 0;
	}
	problem = number_problem(s, chunk, chunk_offset);
	if (problem != NUM_OK)
		return number_fail(s, err, problem, chunk, chunk_offset);
	s->odd += number_odd(s);
	value_done(s);
	*ended = true;
	return 0;
}

static int scan_byte(struct stash_json_scan *s, unsigned char c, const char *chunk,
		     size_t chunk_offset, struct stash_error *err)
{
	char what[64];
	bool ended;
	int ret;

again:
	switch (s->state) {
	case SC_VALUE:
	case SC_VALUE_OR_END:
		if (is_ws(c))
			return 0;
		if (c == ']' && s->state == SC_VALUE_OR_END)
			return scan_close(s, c, err);
		return scan_value_start(s, c, err);

	case SC_KEY:
	case SC_KEY_OR_END:
		if (is_ws(c))
			return 0;
		if (c == '"') {
			s->flags |= F_KEY;
			s->state = SC_STRING;
			return 0;
		}
		if (c == '}' && s->state == SC_KEY_OR_END)
			return scan_close(s, c, err);
		return scan_fail(s, err, c, "expected a string key%s, found %s",
				 s->state == SC_KEY ? " after ','" : " or '}'",
				 describe(c, what, sizeof(what)));

	case SC_COLON:
		if (is_ws(c))
			return 0;
		if (c == ':') {
			s->state = SC_VALUE;
			return 0;
		}
		return scan_fail(s, err, c, "expected ':' after the key, found %s",
				 describe(c, what, sizeof(what)));

	case SC_NEXT:
		if (is_ws(c))
			return 0;
		if (c == ',') {
			s->state = top_is_object(s) ? SC_KEY : SC_VALUE;
			return 0;
		}
		return scan_close(s, c, err);

	case SC_DONE:
		if (is_ws(c))
			return 0;
		return scan_fail(s, err, c,
				 "unexpected %s after the end of the value (only one value is allowed)",
				 describe(c, what, sizeof(what)));

	case SC_STRING:
		return scan_string_byte(s, c, err);

	case SC_UTF8:
		if (c < s->lo || c > s->hi)
			return scan_fail(s, err, c,
					 "invalid UTF-8: byte 0x%02x cannot continue this character",
					 c);
		s->lo = 0x80;
		s->hi = 0xbf;
		if (--s->count == 0)
			s->state = SC_STRING;
		return 0;

	case SC_ESCAPE:
		switch (c) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			s->state = SC_STRING;
			return 0;
		case 'u':
			s->hex = 0;
			s->count = 0;
			s->state = SC_HEX;
			return 0;
		default:
			return scan_fail_mark(s, err, "invalid escape: backslash followed by %s",
					      describe(c, what, sizeof(what)));
		}

	case SC_HEX:
		if (!is_hex(c))
			return scan_fail(s, err, c, "a \\u escape needs 4 hex digits, found %s",
					 describe(c, what, sizeof(what)));
		s->hex = s->hex << 4 | hex_value(c);
		if (++s->count == 4)
			return scan_escape_done(s, err);
		return 0;

	case SC_PAIR_BACKSLASH:
	case SC_PAIR_U:
		if (c == (s->state == SC_PAIR_BACKSLASH ? '\\' : 'u')) {
			if (s->state == SC_PAIR_U) {
				s->hex = 0;
				s->count = 0;
				s->flags |= F_LOW;
				s->state = SC_HEX;
			} else {
				s->state = SC_PAIR_U;
			}
			return 0;
		}
		return scan_fail_mark(s, err,
			"unpaired UTF-16 surrogate \\u%04X (a high surrogate must be followed by a \\u escape of a low one)",
			s->high);

	case SC_LITERAL:
		if (c != (unsigned char)s->literal[s->count])
			return scan_fail(s, err, c,
					 "invalid literal: expected '%s', found %s",
					 s->literal, describe(c, what, sizeof(what)));
		if (s->literal[++s->count] == '\0')
			value_done(s);
		return 0;

	case SC_MINUS:
	case SC_ZERO:
	case SC_INT:
	case SC_DOT:
	case SC_FRAC:
	case SC_EXP_MARK:
	case SC_EXP_SIGN:
	case SC_EXP:
		ret = scan_number_byte(s, c, chunk, chunk_offset, err, &ended);
		if (ret < 0 || !ended)
			return ret;
		/* The byte that ended the number belongs to what follows. */
		goto again;

	default:
		return stash_error_set(err, EINVAL, "invalid JSON (already refused)");
	}
}

static int scan_bytes(struct stash_json_scan *s, const char *buf, size_t len,
		      struct stash_error *err)
{
	size_t chunk_offset = s->offset;
	size_t i;
	int ret;

	if (s->state == SC_FAILED)
		return stash_error_set(err, EINVAL, "invalid JSON (already refused)");
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		ret = scan_byte(s, c, buf, chunk_offset, err);
		if (ret < 0)
			return ret;
		s->offset++;
		if (c == '\n') {
			s->line++;
			s->column = 0;
		} else if (is_lead(c)) {
			s->column++;
		}
	}
	return 0;
}

/* Status after a chunk, knowing more bytes may follow. */
static int scan_status(struct stash_json_scan *s, const char *chunk, size_t chunk_offset,
		       struct stash_error *err)
{
	enum num_problem problem;

	if (s->state == SC_DONE)
		return 1;
	if (s->depth || !number_complete(s))
		return 0;

	/* A bare top-level number: complete, unless it is out of range.  An
	 * integer or a real without exponent may still be cured by what
	 * follows ("1" + 400 zeros, then "e-400"); once the exponent has
	 * digits, more of them only make it worse. */
	problem = number_problem(s, chunk, chunk_offset);
	if (problem == NUM_OK)
		return 1;
	if (s->state == SC_EXP)
		return number_fail(s, err, problem, chunk, chunk_offset);
	return 0;
}

int stash_json_scan_feed(struct stash_json_scan *s, const char *buf, size_t len,
			 struct stash_error *err)
{
	size_t chunk_offset = s->offset;
	int ret;

	ret = scan_bytes(s, buf, len, err);
	if (ret < 0)
		return ret;
	return scan_status(s, buf, chunk_offset, err);
}

static const char *scan_expected(const struct stash_json_scan *s)
{
	switch (s->state) {
	case SC_VALUE:
		return s->depth ? "a value" : "a JSON value";
	case SC_VALUE_OR_END:
		return "a value or ']'";
	case SC_KEY:
		return "a string key";
	case SC_KEY_OR_END:
		return "a string key or '}'";
	case SC_COLON:
		return "':'";
	case SC_NEXT:
		return top_is_object(s) ? "',' or '}'" : "',' or ']'";
	case SC_STRING:
	case SC_UTF8:
	case SC_ESCAPE:
	case SC_HEX:
	case SC_PAIR_BACKSLASH:
	case SC_PAIR_U:
		return "the end of a string";
	case SC_LITERAL:
		return s->literal;
	default:
		return "more digits";
	}
}

/* The whole text has been fed: it must be one complete value now. */
static int scan_finish(struct stash_json_scan *s, const char *chunk, size_t chunk_offset,
		       struct stash_error *err)
{
	enum num_problem problem;

	if (s->state == SC_FAILED)
		return stash_error_set(err, EINVAL, "invalid JSON (already refused)");
	if (number_complete(s)) {
		problem = number_problem(s, chunk, chunk_offset);
		if (problem != NUM_OK)
			return number_fail(s, err, problem, chunk, chunk_offset);
		s->odd += number_odd(s);
		value_done(s);
	}
	if (s->state == SC_DONE)
		return 0;
	return scan_fail_at(s, err, s->offset, s->line, s->column + 1,
			    "unexpected end of input, expected %s", scan_expected(s));
}

/*
 * ---------------------------------------------------------------------
 * Parsing with jansson
 * ---------------------------------------------------------------------
 */

static void locate(const char *buf, size_t offset, size_t *line, size_t *column)
{
	size_t i;

	*line = 1;
	*column = 1;
	for (i = 0; i < offset; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*column = 1;
		} else if (is_lead((unsigned char)buf[i])) {
			(*column)++;
		}
	}
}

/* jansson reports the offset after a key; find its opening quote. */
static size_t key_start(const char *buf, size_t end)
{
	size_t i, k;

	if (end < 2 || buf[end - 1] != '"')
		return end;
	for (i = end - 1; i-- > 0;) {
		if (buf[i] != '"')
			continue;
		for (k = i; k > 0 && buf[k - 1] == '\\'; k--)
			;
		if ((i - k) % 2 == 0)
			return i;
	}
	return end;
}

/*
 * jansson's half: build the value, refuse duplicate keys.  The scanner has
 * already passed the text, so failures here are mostly duplicates; the
 * others keep jansson's words.
 */
static int load(const char *buf, size_t len, json_t **out, struct stash_error *err)
{
	json_error_t je;
	char reason[STASH_ERROR_TEXT];
	size_t offset, start, line, column;
	int code = EINVAL;

	*out = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL,
			  &je);
	if (*out)
		return 0;

	offset = je.position < 0 ? 0 : (size_t)je.position;
	if (offset > len)
		offset = len;
	start = offset;

	switch (json_error_code(&je)) {
	case json_error_duplicate_key:
		start = key_start(buf, offset);
		if (start < offset && offset - start <= 66)
			snprintf(reason, sizeof(reason),
				 "duplicate key %.*s (a key may appear only once in an object)",
				 (int)(offset - start), buf + start);
		else
			snprintf(reason, sizeof(reason),
				 "duplicate key (a key may appear only once in an object)");
		break;
	case json_error_stack_overflow:
		snprintf(reason, sizeof(reason), "nesting deeper than %d levels",
			 STASH_JSON_MAX_DEPTH);
		break;
	case json_error_null_byte_in_key:
		start = key_start(buf, offset);
		snprintf(reason, sizeof(reason), "object keys cannot contain \\u0000");
		break;
	case json_error_numeric_overflow:
		/* Normally caught by the scanner, which quotes the number. */
		snprintf(reason, sizeof(reason),
			 "number out of range (%s); store it as a string", je.text);
		break;
	case json_error_out_of_memory:
		code = ENOMEM;
		snprintf(reason, sizeof(reason), "out of memory");
		break;
	default:
		/* jansson leaves the text empty when an allocation failed. */
		if (!je.text[0]) {
			code = ENOMEM;
			snprintf(reason, sizeof(reason), "out of memory");
		} else {
			snprintf(reason, sizeof(reason), "%s", je.text);
		}
		break;
	}

	locate(buf, start, &line, &column);
	return stash_error_set(err, code, "invalid JSON at line %zu, column %zu (byte %zu): %s",
			       line, column, start, reason);
}

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
static int keep_texts(json_t *v, const char *buf, size_t len, size_t *pos)
{
	char printed[48];
	size_t start, n;
	void *iter;
	int ret = 0;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		for (iter = json_object_iter(v); iter && !ret;
		     iter = json_object_iter_next(v, iter))
			ret = keep_texts(json_object_iter_value(iter), buf, len, pos);
		return ret;
	case JSON_ARRAY:
		for (n = 0; n < json_array_size(v) && !ret; n++)
			ret = keep_texts(json_array_get(v, n), buf, len, pos);
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

json_t *stash_json_parse(const char *buf, size_t len, struct stash_error *err)
{
	struct stash_json_scan s;
	json_t *doc = NULL;
	size_t pos = 0;
	int r;

	stash_json_scan_init(&s);
	if (scan_bytes(&s, buf, len, err) < 0 || scan_finish(&s, buf, 0, err) < 0)
		goto out;
	if (load(buf, len, &doc, err) < 0 || !s.odd)
		goto out;
	r = keep_texts(doc, buf, len, &pos);
	if (r < 0) {
		/* A number we cannot keep as written is not taken at all. */
		json_decref(doc);
		doc = NULL;
		stash_error_set(err, -r, r == -ENOMEM ? "out of memory keeping the text of numbers" :
				"the numbers of the text and of its value disagree");
	}
out:
	return doc;
}

int stash_json_progress(const char *buf, size_t len, struct stash_error *err)
{
	struct stash_json_scan s;
	json_t *doc = NULL;
	int ret;

	stash_json_scan_init(&s);
	ret = stash_json_scan_feed(&s, buf, len, err);
	if (ret != 1)
		goto out;
	/* Complete: only a full parse can see duplicate keys, and no further
	 * bytes could repair those. */
	ret = load(buf, len, &doc, err);
	if (ret == 0)
		ret = 1;
out:
	json_decref(doc);
	return ret;
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
