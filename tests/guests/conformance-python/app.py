"""The conformance extension in Python: the same behaviour as conformance/rust."""

import plinth

SCHEMA = "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL NOT NULL)"


class Conformance(plinth.Extension):
    def describe(self):
        return (
            plinth.Descriptor("conformance", "Conformance")
            .version("1.0.0")
            .description("Orders today: the widget every SDK implements alike.")
            .category("testing")
            .icon("check")
            .size(4, 2)
            .config_schema({"type": "object", "properties": {"title": {"type": "string"}}})
            .refresh_every_ms(1000)
            .uses("cache").uses("db:write").uses("broadcast").uses("log")
            .handles("order.*")
            .action("loop", "Spins forever.")
            .action("memory-bomb", "Allocates until it cannot.")
            .action("panic", "Fails the way the language fails.")
        )

    def render(self, request):
        title = request.config.get("title", "Orders")
        if not isinstance(title, str):
            raise plinth.invalid("config.title must be a string")
        limit = int(request.param("limit") or "10")
        renders = plinth.cache.incr("renders", 1)
        plinth.db.execute(SCHEMA)
        rows = plinth.db.query("SELECT id, total FROM orders ORDER BY id LIMIT $1", limit)
        count = plinth.db.query("SELECT COUNT(*) FROM orders").rows[0][0]
        return [
            plinth.metric_card(title, renders, caption="renders"),
            plinth.table("Orders", [("id", "Order"), ("total", "Total")], rows.rows,
                         total_rows=count),
        ]

    def on_tick(self, tick):
        plinth.db.execute(SCHEMA)
        count, revenue = plinth.db.query(
            "SELECT COUNT(*), COALESCE(SUM(total), 0.0) FROM orders").rows[0]
        summary = {"sequence": tick.sequence, "orders": count, "revenue": revenue}
        plinth.cache.set_json("summary", summary)
        plinth.broadcast.publish("orders", summary)
        plinth.log.info(f"tick {tick.sequence}: {count} orders")

    def invoke(self, request):
        if request.name == "loop":
            while True:
                pass
        if request.name == "memory-bomb":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if request.name == "panic":
            raise RuntimeError("fails on purpose")
        raise plinth.not_found(f"no action {request.name}")

    def handle(self, event):
        if event.name != "order.completed":
            return
        order = event.payload
        if not isinstance(order, dict) or not isinstance(order.get("id"), str) \
                or not isinstance(order.get("total"), (int, float)):
            raise plinth.reject("an order needs a string id and a numeric total")
        plinth.db.execute(SCHEMA)
        plinth.db.execute("INSERT INTO orders (id, total) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                          order["id"], float(order["total"]))
        plinth.cache.invalidate_prefix("summary")
        plinth.broadcast.publish("orders", {"completed": order["id"]})


Manifest, WidgetExports, Handler = plinth.export(Conformance())
