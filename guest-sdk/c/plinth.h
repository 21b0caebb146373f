/* Plinth's C helpers, over the bindings `plinth build` generates (extension.h).
 *
 * The bindings carry the whole contract; these helpers make the common steps short:
 * strings from C strings, the contract's error, a metric card, table cells, and reading
 * a top-level field of a JSON document (config, event payload). Header-only: include it
 * in one or more .c files of the project. */
#ifndef PLINTH_H
#define PLINTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "extension.h"

typedef extension_string_t plinth_string_t;
typedef plinth_extension_types_error_t plinth_error_t;
typedef plinth_extension_types_value_t plinth_value_t;
typedef plinth_extension_view_view_t plinth_view_t;

/* A contract string owning a copy of `text` (NULL gives the empty string). */
static inline plinth_string_t plinth_str(const char *text) {
  plinth_string_t s;
  extension_string_dup(&s, text ? text : "");
  return s;
}

/* A contract string borrowing `text` (for arguments to imports; never freed). */
static inline plinth_string_t plinth_borrow(const char *text) {
  plinth_string_t s;
  extension_string_set(&s, text ? text : "");
  return s;
}

/* Fills `err` with a case of the contract's error and returns false, so an export can
 * `return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_INVALID_INPUT, "...")`. The
 * error's layout is the same in every interface of the bindings. */
static inline bool plinth_fail(void *err, uint8_t tag, const char *message) {
  plinth_error_t *e = (plinth_error_t *)err;
  e->tag = tag;
  e->val.invalid_input = plinth_str(message);
  return false;
}

static inline plinth_value_t plinth_null(void) {
  plinth_value_t v = {.tag = PLINTH_EXTENSION_TYPES_VALUE_NULL};
  return v;
}
static inline plinth_value_t plinth_integer(int64_t i) {
  plinth_value_t v = {.tag = PLINTH_EXTENSION_TYPES_VALUE_INTEGER};
  v.val.integer = i;
  return v;
}
static inline plinth_value_t plinth_real(double d) {
  plinth_value_t v = {.tag = PLINTH_EXTENSION_TYPES_VALUE_REAL};
  v.val.real = d;
  return v;
}
static inline plinth_value_t plinth_text(const char *text) {
  plinth_value_t v = {.tag = PLINTH_EXTENSION_TYPES_VALUE_TEXT};
  v.val.text = plinth_str(text);
  return v;
}

/* A metric card; `caption` may be NULL. */
static inline plinth_view_t plinth_metric_card(const char *title, double value,
                                               const char *caption) {
  plinth_view_t view;
  memset(&view, 0, sizeof view);
  view.tag = PLINTH_EXTENSION_VIEW_VIEW_METRIC_CARD;
  view.val.metric_card.title = plinth_str(title);
  view.val.metric_card.value = value;
  if (caption) {
    view.val.metric_card.caption.is_some = true;
    view.val.metric_card.caption.val = plinth_str(caption);
  }
  return view;
}

/* --- reading JSON ------------------------------------------------------------------
 * Enough to read the top-level fields of a config or a payload: strings (escapes decoded,
 * \u included, to UTF-8), numbers, and skipping anything else. Documents are the host's
 * pointer + length, not NUL-terminated: nothing here reads past `len`. */

static const char *plinth__ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Past the end of the string starting at `p` (a quote), or NULL. */
static const char *plinth__string_end(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '\\') p++;
    else if (*p == '"') return p + 1;
  }
  return NULL;
}

/* Past the end of the value starting at `p`, or NULL. */
static const char *plinth__skip(const char *p, const char *end) {
  p = plinth__ws(p, end);
  if (p >= end) return NULL;
  if (*p == '"') return plinth__string_end(p, end);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    for (; p < end; p++) {
      if (*p == '"') {
        p = plinth__string_end(p, end);
        if (!p) return NULL;
        p--;
      } else if (*p == '{' || *p == '[') depth++;
      else if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
    }
    return NULL;
  }
  while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
  return p;
}

/* The value of top-level `key` in the object `json` (len bytes), or NULL when the
 * document is not an object or has no such key. */
static const char *plinth_json_field(const char *json, size_t len, const char *key) {
  const char *p = json, *end = json + len;
  size_t key_len = strlen(key);
  p = plinth__ws(p, end);
  if (p >= end || *p != '{') return NULL;
  p++;
  for (;;) {
    p = plinth__ws(p, end);
    if (p >= end || *p != '"') return NULL;
    const char *name = p + 1, *name_end = plinth__string_end(p, end);
    if (!name_end) return NULL;
    p = plinth__ws(name_end, end);
    if (p >= end || *p != ':') return NULL;
    p = plinth__ws(p + 1, end);
    if (p >= end) return NULL;
    if ((size_t)(name_end - 1 - name) == key_len && memcmp(name, key, key_len) == 0) return p;
    p = plinth__skip(p, end);
    if (!p) return NULL;
    p = plinth__ws(p, end);
    if (p < end && *p == ',') p++;
    else return NULL;
  }
}

static int plinth__hex4(const char *p, const char *end, unsigned *out) {
  if (end - p < 4) return 0;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static char *plinth__utf8(char *w, unsigned cp) {
  if (cp < 0x80) {
    *w++ = (char)cp;
  } else if (cp < 0x800) {
    *w++ = (char)(0xC0 | (cp >> 6));
    *w++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *w++ = (char)(0xE0 | (cp >> 12));
    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *w++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *w++ = (char)(0xF0 | (cp >> 18));
    *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *w++ = (char)(0x80 | (cp & 0x3F));
  }
  return w;
}

/* 1 and a malloc'd, NUL-terminated copy in `out` when `key` is a string; 0 when missing;
 * -1 when it is something else, malformed, or memory ran out. */
static int plinth_json_string(const char *json, size_t len, const char *key, char **out) {
  const char *end = json + len, *p = plinth_json_field(json, len, key);
  if (!p) return 0;
  if (*p != '"') return -1;
  const char *stop = plinth__string_end(p, end);
  if (!stop) return -1;
  /* Decoded text is never longer than its escaped form. */
  char *copy = malloc((size_t)(stop - p)), *w = copy;
  if (!copy) return -1;
  for (p++; p < stop - 1; p++) {
    if (*p != '\\') {
      *w++ = *p;
      continue;
    }
    p++;
    switch (*p) {
      case 'n': *w++ = '\n'; break;
      case 't': *w++ = '\t'; break;
      case 'r': *w++ = '\r'; break;
      case 'b': *w++ = '\b'; break;
      case 'f': *w++ = '\f'; break;
      case 'u': {
        unsigned cp, low;
        if (!plinth__hex4(p + 1, stop - 1, &cp)) goto bad;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {
          if (stop - 1 - p < 7 || p[1] != '\\' || p[2] != 'u' ||
              !plinth__hex4(p + 3, stop - 1, &low) || low < 0xDC00 || low > 0xDFFF)
            goto bad;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          goto bad;
        }
        w = plinth__utf8(w, cp);
        break;
      }
      default: *w++ = *p; /* \" \\ \/ */
    }
  }
  *w = 0;
  *out = copy;
  return 1;
bad:
  free(copy);
  return -1;
}

/* 1 and the value in `out` when `key` is a JSON number; 0 when missing; -1 otherwise. */
static int plinth_json_number(const char *json, size_t len, const char *key, double *out) {
  const char *end = json + len, *p = plinth_json_field(json, len, key);
  if (!p) return 0;
  /* The token, copied so strtod stops at its end; JSON's grammar checked first. */
  char token[64];
  size_t n = 0;
  const char *q = p;
  if (q < end && *q == '-') q++;
  if (q >= end || *q < '0' || *q > '9') return -1;
  while (q < end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                     *q == '+' || *q == '-'))
    q++;
  n = (size_t)(q - p);
  if (n >= sizeof token) return -1;
  memcpy(token, p, n);
  token[n] = 0;
  char *stop;
  double value = strtod(token, &stop);
  if (stop != token + n) return -1;
  *out = value;
  return 1;
}

/* Whether `json` is an object (its first character after whitespace is `{`). */
static inline bool plinth_json_is_object(const char *json, size_t len) {
  const char *p = plinth__ws(json, json + len);
  return p < json + len && *p == '{';
}

#endif
