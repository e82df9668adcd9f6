// @ts-check
/** Reading the few /metrics families the overview charts, and turning counters into rates. */

/** @typedef {{ labels: Record<string, string>, value: number }} Sample */

/**
 * Parses OpenMetrics text into samples by metric name (comments skipped).
 * @param {string} text
 * @returns {Map<string, Sample[]>}
 */
export function parse(text) {
  /** @type {Map<string, Sample[]>} */
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    if (space < 0) continue;
    const name = brace >= 0 && brace < space ? line.slice(0, brace) : line.slice(0, space);
    /** @type {Record<string, string>} */
    const labels = {};
    if (brace >= 0 && brace < space) {
      const body = line.slice(brace + 1, line.lastIndexOf("}"));
      for (const m of body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
    }
    const value = Number(line.slice(space + 1));
    let list = out.get(name);
    if (!list) { list = []; out.set(name, list); }
    list.push({ labels, value });
  }
  return out;
}

/**
 * The sum of every sample of a family.
 * @param {Map<string, Sample[]>} m
 * @param {string} name
 */
export function total(m, name) {
  return (m.get(name) ?? []).reduce((s, x) => s + x.value, 0);
}

/**
 * The sum of a family's samples per value of one label (`topic` -> total).
 * @param {Map<string, Sample[]>} m
 * @param {string} name
 * @param {string} label
 * @returns {Map<string, number>}
 */
export function byLabel(m, name, label) {
  /** @type {Map<string, number>} */
  const out = new Map();
  for (const s of m.get(name) ?? []) {
    const key = s.labels[label];
    if (key !== undefined) out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/**
 * Cumulative request-latency buckets per API (versions summed): api -> [[le, count]...].
 * @param {Map<string, Sample[]>} m
 * @returns {Map<string, [number, number][]>}
 */
export function latencyBuckets(m) {
  /** @type {Map<string, Map<number, number>>} */
  const acc = new Map();
  for (const s of m.get("josefine_request_duration_seconds_bucket") ?? []) {
    const api = s.labels.api ?? "?";
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    let b = acc.get(api);
    if (!b) { b = new Map(); acc.set(api, b); }
    b.set(le, (b.get(le) ?? 0) + s.value);
  }
  /** @type {Map<string, [number, number][]>} */
  const out = new Map();
  for (const [api, b] of acc) out.set(api, [...b.entries()].sort((x, y) => x[0] - y[0]));
  return out;
}

/**
 * The p99 (seconds, bucket upper bound) of the requests between two scrapes' buckets, or
 * null when none arrived.
 * @param {[number, number][]} before
 * @param {[number, number][]} after
 * @returns {number | null}
 */
export function p99(before, after) {
  const prev = new Map(before);
  const deltas = after.map(([le, n]) => /** @type {[number, number]} */ ([le, n - (prev.get(le) ?? 0)]));
  const count = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (count <= 0) return null;
  for (const [le, n] of deltas) {
    if (n >= 0.99 * count) return Number.isFinite(le) ? le : null;
  }
  return null;
}
