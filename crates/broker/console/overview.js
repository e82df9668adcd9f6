// @ts-check
/** Overview: the cluster at a glance and live charts from /metrics polled every 2 s. */

import { get, metricsText } from "./api.js";
import { h, card, replace, num, bytes, showError } from "./dom.js";
import { lineChart } from "./charts.js";
import { parse, total, latencyBuckets, p99 } from "./metrics.js";

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;
/** The busiest APIs drawn on the latency chart. */
const LATENCY_APIS_SHOWN = 6;

/** @typedef {{ t: number, bytesIn: number, bytesOut: number, recordsIn: number, recordsOut: number, latency: Map<string, [number, number][]> }} Scrape */
/** @typedef {{ t: number, bytesIn: number, bytesOut: number, recordsIn: number, recordsOut: number, p99: Map<string, number | null> }} Point */

/** Kept across visits to the page, so the charts do not start empty each time. */
/** @type {Point[]} */
const history = [];
/** @type {Scrape | null} */
let last = null;

/** @param {string} text @returns {Scrape} */
function scrape(text) {
  const m = parse(text);
  return {
    t: Date.now(),
    bytesIn: total(m, "josefine_topic_bytes_in_total"),
    bytesOut: total(m, "josefine_topic_bytes_out_total"),
    recordsIn: total(m, "josefine_topic_records_in_total"),
    recordsOut: total(m, "josefine_topic_records_out_total"),
    latency: latencyBuckets(m),
  };
}

/** @param {Scrape} now */
function record(now) {
  if (last && now.t > last.t) {
    const dt = (now.t - last.t) / 1000;
    const prev = last;
    /** @type {Map<string, number | null>} */
    const lat = new Map();
    for (const [api, b] of now.latency) lat.set(api, p99(prev.latency.get(api) ?? [], b));
    history.push({
      t: now.t,
      bytesIn: Math.max(0, (now.bytesIn - prev.bytesIn) / dt),
      bytesOut: Math.max(0, (now.bytesOut - prev.bytesOut) / dt),
      recordsIn: Math.max(0, (now.recordsIn - prev.recordsIn) / dt),
      recordsOut: Math.max(0, (now.recordsOut - prev.recordsOut) / dt),
      p99: lat,
    });
    while (history.length && history[0].t < now.t - WINDOW_MS) history.shift();
  }
  last = now;
}

/** @param {HTMLElement} el */
function drawCharts(el) {
  /** @param {(p: Point) => number} f @returns {[number, number][]} */
  const series = (f) => history.map((p) => [p.t, f(p)]);
  /** @type {Map<string, number>} */
  const seen = new Map();
  for (const p of history) for (const [api, v] of p.p99) if (v !== null) seen.set(api, (seen.get(api) ?? 0) + 1);
  const apis = [...seen.entries()].sort((a, b) => b[1] - a[1]).slice(0, LATENCY_APIS_SHOWN).map(([a]) => a);
  replace(el,
    lineChart("Bytes per second", [
      { name: "in", points: series((p) => p.bytesIn) },
      { name: "out", points: series((p) => p.bytesOut) },
    ], (v) => bytes(v), WINDOW_MS),
    lineChart("Records per second", [
      { name: "in", points: series((p) => p.recordsIn) },
      { name: "out", points: series((p) => p.recordsOut) },
    ], (v) => num(Math.round(v)), WINDOW_MS),
    lineChart("p99 request latency per API", apis.map((api) => ({
      name: api,
      points: history.filter((p) => p.p99.get(api) != null)
        .map((p) => /** @type {[number, number]} */ ([p.t, p.p99.get(api) ?? 0])),
    })), (v) => `${(v * 1000).toFixed(1)} ms`, WINDOW_MS));
}

/**
 * @param {HTMLElement} main
 * @returns {() => void}
 */
export function overview(main) {
  const summary = h("div", {});
  const charts = h("div", { class: "charts" });
  main.append(h("h1", {}, "Overview"), summary, h("h2", {}, "Traffic (last 5 minutes)"), charts);
  let stopped = false;
  const tick = async () => {
    try {
      const [cluster, text] = await Promise.all([get("cluster"), metricsText()]);
      if (stopped) return;
      record(scrape(text));
      const p = cluster.partitions;
      const byState = cluster.groups.by_state ?? {};
      const groupCount = Object.values(byState).reduce((a, b) => Number(a) + Number(b), 0);
      replace(summary,
        h("div", { class: "cards" },
          card("Cluster id", cluster.cluster_id ?? "–"),
          card("Version", cluster.version),
          card("Brokers", `${cluster.brokers.filter((/** @type {any} */ b) => !b.fenced).length} / ${cluster.brokers.length} unfenced`),
          card("Controller", `broker ${cluster.controller_id}`),
          card("Topics", num(cluster.topics)),
          card("Partitions", num(p.total)),
          card("Offline", h("span", { class: p.offline ? "bad" : "ok" }, num(p.offline))),
          card("Under-replicated", h("span", { class: p.under_replicated ? "bad" : "ok" }, num(p.under_replicated))),
          card("Under min ISR", h("span", { class: p.under_min_isr ? "bad" : "ok" }, num(p.under_min_isr))),
          card("Groups", `${num(Number(groupCount))} (${num(cluster.groups.members)} members)`),
          card("Chain", `term ${cluster.chain.term} · commit ${num(cluster.chain.commit_height)} · head ${num(cluster.chain.head_height)}`)));
      drawCharts(charts);
    } catch (e) {
      showError(e);
    }
  };
  tick();
  const timer = setInterval(tick, POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}
