// Types of Plinth's JavaScript SDK (plinth.js). Editors read them; the build does not.

export type ErrorTag =
  | 'invalid-input' | 'not-found' | 'denied' | 'quota-exceeded'
  | 'unavailable' | 'timeout' | 'rejected' | 'internal';
/** The contract's error: throw it from an export. */
export interface PlinthError { tag: ErrorTag; val: string }
export function invalid(message: string): PlinthError;
export function notFound(message: string): PlinthError;
export function retry(message: string): PlinthError;
export function reject(message: string): PlinthError;
export function internal(message: string): PlinthError;

export type Cell = null | number | bigint | string | Uint8Array;
export type Value =
  | { tag: 'null' } | { tag: 'integer'; val: bigint } | { tag: 'real'; val: number }
  | { tag: 'text'; val: string } | { tag: 'blob'; val: Uint8Array };
export function value(v: Cell | boolean | undefined): Value;
export function fromValue(v: Value): Cell;

/** Counts are numbers; bigints only beyond 2^53. */
export interface Statistics {
  hits: number; misses: number; keys: number; memoryBytes: number;
  topKeys: { key: string; sizeBytes: number; hits: number }[];
}
export const cache: {
  get(key: string): Uint8Array | undefined;
  set(key: string, data: string | Uint8Array, ttlMs?: number): void;
  delete(key: string): boolean;
  incr(key: string, delta?: number): number;
  invalidatePrefix(prefix: string): number;
  stats(top?: number): Statistics;
  getJson<T = unknown>(key: string): T | undefined;
  setJson(key: string, document: unknown, ttlMs?: number): void;
};
export class Rows {
  columns: string[];
  rows: Cell[][];
  column(name: string): number | undefined;
  objects(): Record<string, Cell>[];
}
export const db: {
  query(sql: string, ...params: (Cell | boolean)[]): Rows;
  execute(sql: string, ...params: (Cell | boolean)[]): number;
};
export const broadcast: { publish(topic: string, payload: unknown): void };
export const log: {
  trace(message: string): void; debug(message: string): void; info(message: string): void;
  warn(message: string): void; error(message: string): void;
};

export type Status = 'ok' | 'warning' | 'critical';
/** One panel of a widget, as the contract's `view` variant. */
export interface View { tag: string; val: unknown }
export function metricCard(title: string, value: number,
  options?: { unit?: string; change?: number; caption?: string }): View;
export function kpiCard(title: string, value: number, target: number,
  options?: { unit?: string; status?: Status }): View;
export function lineChart(title: string, labels: string[], series: Record<string, number[]>,
  options?: { unit?: string }): View;
export function barChart(title: string, labels: string[], series: Record<string, number[]>,
  options?: { unit?: string }): View;
export function pieChart(title: string, slices: [string, number][]): View;
export function sparkline(title: string, points: number[]): View;
export function table(title: string, columns: [string, string][], rows: (Cell | boolean)[][],
  options?: { totalRows?: number }): View;
export function gauge(title: string, value: number, min: number, max: number,
  options?: { unit?: string; thresholds?: [number, Status][] }): View;
export function progressBar(title: string, value: number, max: number,
  options?: { label?: string }): View;
export function heatmap(title: string, xLabels: string[], yLabels: string[], values: number[][]): View;
export function custom(document: unknown): View;

export interface ActionResponse { contentType: string; body: Uint8Array; filename?: string }
export const response: {
  json(document: unknown, filename?: string): ActionResponse;
  text(contentType: string, body: string, filename?: string): ActionResponse;
};

export interface Descriptor {
  id: string; name: string; version?: string; description?: string; category?: string;
  icon?: string; size?: { width: number; height: number }; configSchema?: object;
  refreshEveryMs?: number; uses?: string[]; handles?: string[];
  /** Action name to description. */
  actions?: Record<string, string>;
}
export interface RenderRequest { config: Record<string, unknown>; params: Record<string, string> }
export interface Tick { config: Record<string, unknown>; sequence: number; scheduledAtMs: number }
export interface ActionRequest { name: string; config: Record<string, unknown>; body: unknown }
export interface Event {
  id: string; name: string; payload: unknown; occurredAtMs: number; attempt: number;
}
export interface Extension {
  describe(): Descriptor;
  render?(request: RenderRequest): View[];
  onTick?(tick: Tick): void;
  invoke?(request: ActionRequest): ActionResponse;
  handle?(event: Event): void;
}
export function defineExtension(extension: Extension): {
  manifest: unknown; widgetExports: unknown; handler: unknown;
};
