// The conformance extension in JavaScript: the same behaviour as conformance-rust.

import * as plinth from '../.plinth/plinth.js';

const SCHEMA = 'CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL NOT NULL)';

export const { manifest, widgetExports, handler } = plinth.defineExtension({
  describe: () => ({
    id: 'conformance',
    name: 'Conformance',
    version: '1.0.0',
    description: 'Orders today: the widget every SDK implements alike.',
    category: 'testing',
    icon: 'check',
    size: { width: 4, height: 2 },
    configSchema: { type: 'object', properties: { title: { type: 'string' } } },
    refreshEveryMs: 1000,
    uses: ['cache', 'db:write', 'broadcast', 'log'],
    handles: ['order.*'],
    actions: {
      loop: 'Spins forever.',
      'memory-bomb': 'Allocates until it cannot.',
      panic: 'Fails the way the language fails.',
    },
  }),

  render({ config, params }) {
    const title = config.title ?? 'Orders';
    if (typeof title !== 'string') throw plinth.invalid('config.title must be a string');
    const limit = Number(params.limit ?? '10');
    const renders = plinth.cache.incr('renders', 1);
    plinth.db.execute(SCHEMA);
    const rows = plinth.db.query('SELECT id, total FROM orders ORDER BY id LIMIT $1', limit);
    const count = plinth.db.query('SELECT COUNT(*) FROM orders').rows[0][0];
    return [
      plinth.metricCard(title, renders, { caption: 'renders' }),
      plinth.table('Orders', [['id', 'Order'], ['total', 'Total']], rows.rows, { totalRows: count }),
    ];
  },

  onTick(tick) {
    plinth.db.execute(SCHEMA);
    const [count, revenue] = plinth.db.query(
      'SELECT COUNT(*), COALESCE(SUM(total), 0.0) FROM orders',
    ).rows[0];
    const summary = { sequence: tick.sequence, orders: count, revenue };
    plinth.cache.setJson('summary', summary);
    plinth.broadcast.publish('orders', summary);
    plinth.log.info(`tick ${tick.sequence}: ${count} orders`);
  },

  invoke(request) {
    if (request.name === 'loop') {
      for (;;) {}
    }
    if (request.name === 'memory-bomb') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (request.name === 'panic') throw new Error('fails on purpose');
    throw plinth.notFound(`no action ${request.name}`);
  },

  handle(event) {
    if (event.name !== 'order.completed') return;
    const order = event.payload;
    if (
      order === null || typeof order !== 'object' || typeof order.id !== 'string' ||
      typeof order.total !== 'number'
    ) {
      throw plinth.reject('an order needs a string id and a numeric total');
    }
    plinth.db.execute(SCHEMA);
    plinth.db.execute(
      'INSERT INTO orders (id, total) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      order.id,
      order.total,
    );
    plinth.cache.invalidatePrefix('summary');
    plinth.broadcast.publish('orders', { completed: order.id });
  },
});
