// SPDX-License-Identifier: MIT
/*
 * json.c - the JSON side of stashes: a strict parser (jansson behind our own
 * syntax scanner).  Printing what was written is json_text.c's, the
 * top-level merge of DESIGN 2.2 json_merge.c's.
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
#include "json_priv.h"
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

/*
 * One byte through the scanner's state machine.  Long on purpose: one
 * switch case per state, each a few lines, read as the grammar's table.
 */
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
	r = json_keep_texts(doc, buf, len, &pos);
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
