/* jsval.h - the pieces of JavaScript's value semantics that deepstream's
 * permission rules (common/rules.c) reach, on UTF-8 text: Number to string
 * and string to Number as ECMAScript defines them, string order by UTF-16
 * code units, string lengths and positions in UTF-16 code units, the
 * white space String.prototype.trim removes, and case mapping.
 *
 * Strings are UTF-8 byte runs with a length (NUL bytes allowed). A byte that
 * does not start a valid UTF-8 sequence counts as one character. Not for the
 * rule language itself (rules.c) nor for JSON (jansson, jsonpath.c).
 *
 * Case mapping is Unicode's simple (one to one) mapping, from the C library's
 * C.UTF-8 locale, plus JavaScript's special cases U+00DF -> "SS" and U+0130
 * -> "i" U+0307; the context-dependent ones (final sigma) and the other
 * one-to-many mappings are left out. Without a C.UTF-8 locale only ASCII
 * letters change. */
#ifndef EDDY_JSVAL_H
#define EDDY_JSVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Enough for any Number written by js_number_format ("-1.2345678901234567e-308"). */
#define JS_NUMBER_BUF 32

/* Writes d as Number.prototype.toString() does (shortest round trip,
 * "1e+21", "1e-7", "NaN", "-Infinity", "0" for -0) to buf, NUL-terminated;
 * returns its length. */
size_t js_number_format(double d, char buf[JS_NUMBER_BUF]);

/* ToNumber of a string: trims JavaScript white space, "" is 0, decimal
 * literals, "Infinity" with a sign, 0x/0o/0b integers (unsigned); anything
 * else is NaN. */
double js_string_to_number(const char *s, size_t len);

/* Decodes one character at s (len > 0): its code point and byte length (1
 * and the byte itself for a byte that does not start valid UTF-8). */
uint32_t js_utf8_decode(const char *s, size_t len, size_t *size);
/* Appends cp as UTF-8 to out (at least 4 bytes; surrogates as 3-byte
 * sequences, as WTF-8); returns the bytes written. */
size_t js_utf8_encode(uint32_t cp, char *out);

/* The length in UTF-16 code units (String.prototype.length). */
size_t js_utf16_length(const char *s, size_t len);
/* The byte offset of UTF-16 index idx (clamped to the end; an index inside a
 * surrogate pair gives the pair's start). */
size_t js_utf16_to_byte(const char *s, size_t len, size_t idx);
/* The UTF-16 index of byte offset off (a character boundary). */
size_t js_byte_to_utf16(const char *s, size_t len, size_t off);

/* <0, 0, >0 as JavaScript orders a and b (UTF-16 code unit order). */
int js_string_compare(const char *a, size_t alen, const char *b, size_t blen);

/* True for JavaScript's WhiteSpace and LineTerminator code points. */
bool js_is_space(uint32_t cp);
/* Shrinks [*start, *end) of s to drop leading and trailing white space. */
void js_trim(const char *s, size_t *start, size_t *end);

/* Maps s to upper (upper true) or lower case into out (out_cap bytes).
 * Returns the length of the mapped text, which may exceed out_cap: then
 * nothing past out_cap is written (call with out NULL, out_cap 0 to size). */
size_t js_case_map(const char *s, size_t len, bool upper, char *out, size_t out_cap);

#endif
