// The console's one WebSocket: subscriptions that survive reconnects, a state the
// header shows (Live / Reconnecting / Offline), and reconnects with exponential
// backoff and jitter. The token goes in the offered subprotocols, never in the URL.

const MAX_BACKOFF_MS = 30_000;

// A topic's last handler going away unsubscribes only after this long, and not at all if
// a handler comes back first: tiles re-rendered in edit mode drop and take their topics
// again at once, and every frame counts against the socket's rate limit (the server
// closes a socket over 20 messages a second with 4029).
const UNSUBSCRIBE_AFTER_MS = 2_000;

export class Live {
  /** `token`: the session's; `onUnauthenticated`: the token stopped working (4401);
   *  `onRefused`: a connection failed before it opened (the token may have stopped
   *  working while the socket was down: a browser does not say why an upgrade failed). */
  constructor(token, onUnauthenticated, onRefused = () => {}) {
    this.token = token;
    this.onUnauthenticated = onUnauthenticated;
    this.onRefused = onRefused;
    this.topics = new Map(); // key → {topic, tenant, handlers: Set, leaving: timer or null}
    this.stateListeners = new Set();
    this.resyncListeners = new Set();
    this.state = "connecting";
    this.failures = 0;
    this.closed = false;
    this.connect();
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws`, ["plinth.v1", "plinth.token." + this.token]);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.failures = 0;
      this.setState("live");
      for (const entry of this.topics.values()) this.send(subscription(entry));
      // Whatever was pushed while the socket was down is lost: subscribers fetch anew.
      for (const listener of this.resyncListeners) listener();
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "message") {
        // By tenant too: an operator may watch the same topic of two tenants.
        for (const entry of this.topics.values()) {
          if (entry.topic !== message.topic) continue;
          if (entry.tenant && message.tenant && entry.tenant !== message.tenant) continue;
          for (const handler of entry.handlers) handler(message.payload);
        }
      } else if (message.type === "resync") {
        for (const listener of this.resyncListeners) listener();
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === 4401) {
        this.setState("offline");
        this.onUnauthenticated();
        return;
      }
      if (!opened) this.onRefused();
      this.retry();
    };
  }

  retry() {
    if (this.closed) return;
    this.failures += 1;
    // Offline when the browser says so or after a few failed attempts; it keeps trying.
    this.setState(!navigator.onLine || this.failures > 4 ? "offline" : "reconnecting");
    const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (this.failures - 1));
    const delay = backoff / 2 + Math.random() * (backoff / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || this.socket) return;
    clearTimeout(this.timer);
    this.connect();
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  setState(state) {
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  /** Calls `listener(state)` now and on every change; returns the unsubscribe. */
  watchState(listener) {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  /** Calls `listener()` whenever pushed messages may have been missed. */
  onResync(listener) {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /** `handler(payload)` for every message on `topic` (of `tenant`, for operators). */
  subscribe(topic, tenant, handler) {
    const key = `${tenant ?? ""}\u0000${topic}`;
    let entry = this.topics.get(key);
    if (!entry) {
      entry = { topic, tenant, handlers: new Set(), leaving: null };
      this.topics.set(key, entry);
      this.send(subscription(entry));
    }
    clearTimeout(entry.leaving);
    entry.leaving = null;
    entry.handlers.add(handler);
    return () => {
      entry.handlers.delete(handler);
      if (entry.handlers.size > 0 || entry.leaving) return;
      entry.leaving = setTimeout(() => {
        entry.leaving = null;
        if (entry.handlers.size > 0 || this.topics.get(key) !== entry) return;
        this.topics.delete(key);
        this.send({ type: "unsubscribe", topic, ...(tenant ? { tenant } : {}) });
      }, UNSUBSCRIBE_AFTER_MS);
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    for (const entry of this.topics.values()) clearTimeout(entry.leaving);
    window.removeEventListener("online", this.onOnline);
    this.socket?.close(1000);
    this.socket = null;
  }
}

function subscription(entry) {
  return { type: "subscribe", topic: entry.topic, ...(entry.tenant ? { tenant: entry.tenant } : {}) };
}
