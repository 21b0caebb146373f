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

/* A contract string owning a copy of `text`. */
static inline plinth_string_t plinth_str(const char *text) {
  plinth_string_t s;
  extension_string_dup(&s, text);
  return s;
}

/* A contract string borrowing `text` (for arguments to imports; never freed). */
static inline plinth_string_t plinth_borrow(const char *text) {
  plinth_string_t s;
  extension_string_set(&s, text);
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
 * Enough to read the top-level fields of a config or a payload: strings (with escapes
 * other than \u kept as the escaped character), numbers, and skipping anything else. */

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
    if ((size_t)(name_end - 1 - name) == key_len && memcmp(name, key, key_len) == 0) return p;
    p = plinth__skip(p, end);
    if (!p) return NULL;
    p = plinth__ws(p, end);
    if (p < end && *p == ',') p++;
    else return NULL;
  }
}

/* 1 and a malloc'd copy in `out` when `key` is a string; 0 when missing; -1 when it is
 * something else. */
static int plinth_json_string(const char *json, size_t len, const char *key, char **out) {
  const char *end = json + len, *p = plinth_json_field(json, len, key);
  if (!p) return 0;
  if (*p != '"') return -1;
  const char *stop = plinth__string_end(p, end);
  if (!stop) return -1;
  char *copy = malloc(stop - p), *w = copy;
  for (p++; p < stop - 1; p++) {
    if (*p == '\\') {
      p++;
      *w++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
    } else {
      *w++ = *p;
    }
  }
  *w = 0;
  *out = copy;
  return 1;
}

/* 1 and the value in `out` when `key` is a number; 0 when missing; -1 otherwise. */
static int plinth_json_number(const char *json, size_t len, const char *key, double *out) {
  const char *p = plinth_json_field(json, len, key);
  if (!p) return 0;
  if (!(*p == '-' || (*p >= '0' && *p <= '9'))) return -1;
  *out = strtod(p, NULL);
  return 1;
}

/* Whether `json` is an object (its first character after whitespace is `{`). */
static inline bool plinth_json_is_object(const char *json, size_t len) {
  const char *p = plinth__ws(json, json + len);
  return p < json + len && *p == '{';
}

#endif
