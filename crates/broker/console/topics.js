// @ts-check
/** Topics: the list (create in read-write), one topic's partitions and configs (edit, delete
 * after typing its name). Every action is a Kafka request on the broker's side. */

import { get, post, del, enc, metricsText } from "./api.js";
import { h, table, bytes, num, field, showError } from "./dom.js";
import { parse, byLabel } from "./metrics.js";

/** Rates are the difference of two /metrics scrapes this far apart. */
const RATE_POLL_MS = 2000;
const RATE_FAMILIES = {
  bytesIn: "josefine_topic_bytes_in_total",
  bytesOut: "josefine_topic_bytes_out_total",
  recordsIn: "josefine_topic_records_in_total",
};

/** @typedef {{ t: number, bytesIn: Map<string, number>, bytesOut: Map<string, number>, recordsIn: Map<string, number> }} TopicCounters */

/** @param {string} text @returns {TopicCounters} */
function topicCounters(text) {
  const m = parse(text);
  return {
    t: Date.now(),
    bytesIn: byLabel(m, RATE_FAMILIES.bytesIn, "topic"),
    bytesOut: byLabel(m, RATE_FAMILIES.bytesOut, "topic"),
    recordsIn: byLabel(m, RATE_FAMILIES.recordsIn, "topic"),
  };
}

/**
 * Per-second rate of one topic's counter between two scrapes ("–" before the second).
 * @param {TopicCounters | null} a
 * @param {TopicCounters | null} b
 * @param {"bytesIn" | "bytesOut" | "recordsIn"} k
 * @param {string} topic
 * @param {(v: number) => string} format
 */
function rate(a, b, k, topic, format) {
  if (!a || !b || b.t <= a.t) return "–";
  const v = ((b[k].get(topic) ?? 0) - (a[k].get(topic) ?? 0)) / ((b.t - a.t) / 1000);
  return format(Math.max(0, v));
}

/**
 * @param {HTMLElement} main
 * @param {{ readWrite: boolean }} ctx
 */
export function topics(main, ctx) {
  main.append(h("h1", {}, "Topics"));
  if (ctx.readWrite) {
    const form = /** @type {HTMLFormElement} */ (h("form", { class: "inline", id: "create-topic" },
      h("label", {}, "Name", h("input", { name: "name", required: true, placeholder: "orders" })),
      h("label", {}, "Partitions", h("input", { name: "partitions", type: "number", min: 1, value: 1 })),
      h("label", {}, "Replication factor", h("input", { name: "rf", type: "number", min: 1, placeholder: "default" })),
      h("button", { type: "submit" }, "Create topic")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const rf = field(form, "rf");
      post("topics", {
        name: field(form, "name"),
        partitions: Number(field(form, "partitions")),
        replication_factor: rf ? Number(rf) : undefined,
      }).then(() => { location.hash = `#/topics/${enc(field(form, "name"))}`; }, showError);
    });
    main.append(form);
  }
  const list = h("div", {}, "Loading…");
  main.append(list);
  /** @type {any[] | null} */
  let shown = null;
  /** @type {TopicCounters | null} */
  let prev = null;
  /** @type {TopicCounters | null} */
  let last = null;
  let stopped = false;
  const draw = () => {
    if (!shown) return;
    list.replaceChildren(table(
      ["Name", "#Partitions", "#RF", "#Under-replicated", "#Offline", "#Records", "#Size",
        "#Bytes in/s", "#Bytes out/s", "#Records in/s"],
      shown.map((/** @type {any} */ t) => [
        h("a", { href: `#/topics/${enc(t.name)}` }, t.name, t.internal ? " (internal)" : ""),
        t.partitions, t.replication_factor,
        h("span", { class: t.under_replicated ? "bad" : undefined }, t.under_replicated),
        h("span", { class: t.offline ? "bad" : undefined }, t.offline),
        num(t.records), bytes(t.size_bytes),
        rate(prev, last, "bytesIn", t.name, (v) => `${bytes(v)}/s`),
        rate(prev, last, "bytesOut", t.name, (v) => `${bytes(v)}/s`),
        rate(prev, last, "recordsIn", t.name, (v) => num(Math.round(v))),
      ])));
  };
  const poll = () => metricsText().then((text) => {
    if (stopped) return;
    prev = last;
    last = topicCounters(text);
    draw();
  }, showError);
  get("topics").then((r) => {
    shown = r.topics;
    draw();
    poll();
  }, showError);
  const timer = setInterval(poll, RATE_POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}

/**
 * @param {HTMLElement} main
 * @param {{ readWrite: boolean }} ctx
 * @param {string} name
 */
export function topic(main, ctx, name) {
  main.append(h("h1", {}, `Topic ${name}`),
    h("p", {}, h("a", { href: `#/messages/${enc(name)}` }, "Browse messages")));
  get(`topics/${enc(name)}`).then((t) => {
    main.append(h("h2", {}, "Partitions"), table(
      ["#Partition", "#Leader", "#Epoch", "Replicas", "ISR", "#Log start", "#High watermark", "#Log end", "#Size", "#Segments"],
      t.partitions.map((/** @type {any} */ p) => [
        h("a", { href: `#/messages/${enc(name)}?partition=${p.partition}` }, String(p.partition)),
        p.leader, p.leader_epoch, p.replicas.join(", "),
        h("span", { class: p.isr.length < p.replicas.length ? "bad" : undefined }, p.isr.join(", ")),
        num(p.log_start_offset), num(p.high_watermark), num(p.log_end_offset), bytes(p.size_bytes), num(p.segments),
      ])));
    main.append(h("h2", {}, "Configs"), table(["Name", "Value", "Source", ""],
      t.configs.map((/** @type {any} */ c) => [c.name, c.sensitive ? "(sensitive)" : c.value ?? "", c.source,
        ctx.readWrite && !c.read_only ? editButton(name, c.name, c.value ?? "") : ""])));
    if (ctx.readWrite) {
      const confirm = /** @type {HTMLInputElement} */ (h("input", { placeholder: "type the topic name", name: "confirm" }));
      const button = /** @type {HTMLButtonElement} */ (h("button", { class: "danger", type: "submit", disabled: true }, "Delete topic"));
      confirm.addEventListener("input", () => { button.disabled = confirm.value !== name; });
      const form = h("form", { class: "inline", id: "delete-topic" }, h("label", {}, "Delete", confirm), button);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        del(`topics/${enc(name)}`).then(() => { location.hash = "#/topics"; }, showError);
      });
      main.append(h("h2", {}, "Danger zone"), form);
    }
  }, showError);
}

/**
 * @param {string} topicName
 * @param {string} key
 * @param {string} value
 */
function editButton(topicName, key, value) {
  return h("button", {
    type: "button",
    onclick: () => {
      const next = prompt(`New value of ${key} (empty: back to the default)`, value);
      if (next === null) return;
      const body = next === "" ? { delete: [key] } : { set: { [key]: next } };
      post(`topics/${enc(topicName)}/configs`, body).then(() => {
        window.dispatchEvent(new HashChangeEvent("hashchange"));
      }, showError);
    },
  }, "Edit");
}
