/* The conformance extension in C: the same behaviour as conformance-rust. */

#include <stdio.h>

#include "plinth.h"

#define SCHEMA "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL NOT NULL)"

typedef plinth_extension_types_error_t error_t;

static extension_list_string_t strings(int n, const char **items) {
  extension_list_string_t list = {.ptr = calloc(n, sizeof(plinth_string_t)), .len = n};
  for (int i = 0; i < n; i++) list.ptr[i] = plinth_str(items[i]);
  return list;
}

void exports_plinth_extension_manifest_describe(
    exports_plinth_extension_manifest_descriptor_t *ret) {
  static const char *uses[] = {"cache", "db:write", "broadcast", "log"};
  static const char *handles[] = {"order.*"};
  static const char *actions[][2] = {{"loop", "Spins forever."},
                                     {"memory-bomb", "Allocates until it cannot."},
                                     {"panic", "Fails the way the language fails."}};
  memset(ret, 0, sizeof *ret);
  ret->id = plinth_str("conformance");
  ret->name = plinth_str("Conformance");
  ret->version = plinth_str("1.0.0");
  ret->description = plinth_str("Orders today: the widget every SDK implements alike.");
  ret->category = plinth_str("testing");
  ret->icon = plinth_str("check");
  ret->default_size.width = 4;
  ret->default_size.height = 2;
  ret->config_schema =
      plinth_str("{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\"}}}");
  ret->refresh_interval_ms.is_some = true;
  ret->refresh_interval_ms.val = 1000;
  ret->capabilities = strings(4, uses);
  ret->event_patterns = strings(1, handles);
  ret->actions.len = 3;
  ret->actions.ptr = calloc(3, sizeof *ret->actions.ptr);
  for (int i = 0; i < 3; i++) {
    ret->actions.ptr[i].name = plinth_str(actions[i][0]);
    ret->actions.ptr[i].description = plinth_str(actions[i][1]);
  }
}

/* Runs a statement; on failure the capability's error becomes the export's. */
static bool execute(const char *sql, plinth_value_t *params, size_t n, error_t *err) {
  plinth_string_t text = plinth_borrow(sql);
  plinth_extension_db_list_value_t list = {.ptr = params, .len = n};
  uint64_t changed;
  return plinth_extension_db_execute(&text, &list, &changed, err);
}

static bool query(const char *sql, plinth_value_t *params, size_t n,
                  plinth_extension_db_rows_t *rows, error_t *err) {
  plinth_string_t text = plinth_borrow(sql);
  plinth_extension_db_list_value_t list = {.ptr = params, .len = n};
  return plinth_extension_db_query(&text, &list, rows, err);
}

static bool publish(const char *topic, const char *payload, error_t *err) {
  plinth_string_t t = plinth_borrow(topic), p = plinth_borrow(payload);
  return plinth_extension_broadcast_publish(&t, &p, err);
}

static double number(plinth_value_t *v) {
  return v->tag == PLINTH_EXTENSION_TYPES_VALUE_INTEGER ? (double)v->val.integer
         : v->tag == PLINTH_EXTENSION_TYPES_VALUE_REAL  ? v->val.real
                                                        : 0;
}

bool exports_plinth_extension_widget_exports_render(
    exports_plinth_extension_widget_exports_render_request_t *request,
    exports_plinth_extension_widget_exports_list_view_t *ret, error_t *err) {
  const char *config = (const char *)request->config.ptr;
  size_t config_len = request->config.len;
  char *title = NULL;
  if (plinth_json_string(config, config_len, "title", &title) < 0)
    return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_INVALID_INPUT,
                       "config.title must be a string");
  int64_t limit = 10;
  for (size_t i = 0; i < request->params.len; i++) {
    extension_tuple2_string_string_t *param = &request->params.ptr[i];
    if (param->f0.len == 5 && memcmp(param->f0.ptr, "limit", 5) == 0) {
      char digits[24] = {0};
      memcpy(digits, param->f1.ptr, param->f1.len < 23 ? param->f1.len : 23);
      limit = strtoll(digits, NULL, 10);
    }
  }
  int64_t renders;
  plinth_string_t key = plinth_borrow("renders");
  if (!plinth_extension_cache_incr(&key, 1, &renders, err)) return false;
  if (!execute(SCHEMA, NULL, 0, err)) return false;
  plinth_value_t bound = plinth_integer(limit);
  plinth_extension_db_rows_t rows, count;
  if (!query("SELECT id, total FROM orders ORDER BY id LIMIT $1", &bound, 1, &rows, err))
    return false;
  if (!query("SELECT COUNT(*) FROM orders", NULL, 0, &count, err)) return false;

  ret->len = 2;
  ret->ptr = calloc(2, sizeof(plinth_view_t));
  ret->ptr[0] = plinth_metric_card(title ? title : "Orders", (double)renders, "renders");
  free(title);
  plinth_extension_view_table_t *table = &ret->ptr[1].val.table;
  ret->ptr[1].tag = PLINTH_EXTENSION_VIEW_VIEW_TABLE;
  table->title = plinth_str("Orders");
  table->columns.len = 2;
  table->columns.ptr = calloc(2, sizeof *table->columns.ptr);
  table->columns.ptr[0].key = plinth_str("id");
  table->columns.ptr[0].title = plinth_str("Order");
  table->columns.ptr[1].key = plinth_str("total");
  table->columns.ptr[1].title = plinth_str("Total");
  /* The query's rows become the table's: the two list types have one layout. */
  table->rows.ptr = (plinth_extension_view_list_value_t *)rows.rows.ptr;
  table->rows.len = rows.rows.len;
  rows.rows.ptr = NULL;
  rows.rows.len = 0;
  plinth_extension_db_rows_free(&rows);
  table->total_rows.is_some = true;
  table->total_rows.val = (uint64_t)number(&count.rows.ptr[0].ptr[0]);
  plinth_extension_db_rows_free(&count);
  exports_plinth_extension_widget_exports_render_request_free(request);
  return true;
}

bool exports_plinth_extension_widget_exports_on_tick(
    exports_plinth_extension_widget_exports_tick_t *tick, error_t *err) {
  if (!execute(SCHEMA, NULL, 0, err)) return false;
  plinth_extension_db_rows_t rows;
  if (!query("SELECT COUNT(*), COALESCE(SUM(total), 0.0) FROM orders", NULL, 0, &rows, err))
    return false;
  long long count = (long long)number(&rows.rows.ptr[0].ptr[0]);
  double revenue = number(&rows.rows.ptr[0].ptr[1]);
  plinth_extension_db_rows_free(&rows);
  char summary[160];
  snprintf(summary, sizeof summary, "{\"sequence\":%llu,\"orders\":%lld,\"revenue\":%.17g}",
           (unsigned long long)tick->sequence, count, revenue);
  plinth_string_t key = plinth_borrow("summary");
  extension_list_u8_t value = {.ptr = (uint8_t *)summary, .len = strlen(summary)};
  if (!plinth_extension_cache_set(&key, &value, NULL, err)) return false;
  if (!publish("orders", summary, err)) return false;
  char line[80];
  snprintf(line, sizeof line, "tick %llu: %lld orders", (unsigned long long)tick->sequence,
           count);
  plinth_string_t message = plinth_borrow(line);
  plinth_extension_log_write(PLINTH_EXTENSION_LOG_LEVEL_INFO, &message);
  exports_plinth_extension_widget_exports_tick_free(tick);
  return true;
}

static bool named(extension_string_t *name, const char *text) {
  return name->len == strlen(text) && memcmp(name->ptr, text, name->len) == 0;
}

bool exports_plinth_extension_widget_exports_invoke(
    exports_plinth_extension_widget_exports_action_request_t *request,
    exports_plinth_extension_widget_exports_action_response_t *ret, error_t *err) {
  (void)ret;
  if (named(&request->name, "loop")) {
    /* volatile: an empty infinite loop is undefined behaviour the compiler may drop. */
    for (volatile uint64_t spins = 0;; spins++) {
    }
  }
  if (named(&request->name, "memory-bomb")) {
    for (;;) {
      volatile char *block = malloc(1 << 20);
      if (!block) abort();
      for (size_t i = 0; i < (1 << 20); i += 4096) block[i] = 1;
    }
  }
  if (named(&request->name, "panic")) {
    fputs("fails on purpose\n", stderr);
    abort();
  }
  char message[120];
  snprintf(message, sizeof message, "no action %.*s", (int)request->name.len,
           (const char *)request->name.ptr);
  return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_NOT_FOUND, message);
}

bool exports_plinth_extension_handler_handle(exports_plinth_extension_handler_event_t *event,
                                             error_t *err) {
  if (!named(&event->name, "order.completed")) return true;
  const char *payload = (const char *)event->payload.ptr;
  size_t len = event->payload.len;
  char *id = NULL;
  double total = 0;
  if (plinth_json_string(payload, len, "id", &id) != 1 ||
      plinth_json_number(payload, len, "total", &total) != 1) {
    free(id);
    return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_REJECTED,
                       "an order needs a string id and a numeric total");
  }
  if (!execute(SCHEMA, NULL, 0, err)) return false;
  plinth_value_t params[2] = {plinth_text(id), plinth_real(total)};
  bool ok = execute("INSERT INTO orders (id, total) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    params, 2, err);
  plinth_extension_types_value_free(&params[0]);
  if (!ok) {
    free(id);
    return false;
  }
  uint64_t removed;
  plinth_string_t prefix = plinth_borrow("summary");
  if (!plinth_extension_cache_invalidate_prefix(&prefix, &removed, err)) {
    free(id);
    return false;
  }
  /* The id is the sender's text: escaped, so any id publishes valid JSON. */
  size_t id_len = strlen(id);
  char *completed = malloc(id_len * 6 + 32), *w = completed;
  if (!completed) abort();
  w += sprintf(w, "{\"completed\":\"");
  for (const unsigned char *c = (const unsigned char *)id; *c; c++) {
    if (*c == '"' || *c == '\\') {
      *w++ = '\\';
      *w++ = (char)*c;
    } else if (*c < 0x20) {
      w += sprintf(w, "\\u%04x", *c);
    } else {
      *w++ = (char)*c;
    }
  }
  strcpy(w, "\"}");
  free(id);
  exports_plinth_extension_handler_event_free(event);
  bool published = publish("orders", completed, err);
  free(completed);
  return published;
}
