// @ts-check
/** Messages: one partition's records from a seek point (earliest, latest−N, offset,
 * timestamp), shown as JSON, text or hex, with a filter and a live tail. The broker bounds
 * every page (500 records, 4 MiB, values cut at 64 KiB) and never reads past the high
 * watermark. */

import { get, enc } from "./api.js";
import { h, table, replace, field, showError } from "./dom.js";

const TAIL_MS = 2000;

/** @param {any} v a shown key/value `{encoding, data, size, truncated}` or null */
function shown(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "null");
  const text = v.encoding === "json" ? JSON.stringify(v.data, null, 1) : String(v.data);
  return h("div", {}, h("pre", {}, text),
    h("span", { class: "muted" }, `${v.encoding}, ${v.size} B${v.truncated ? ", truncated" : ""}`));
}

/** @param {any} r a record */
function row(r) {
  return [r.offset, new Date(r.timestamp).toISOString(), r.timestamp_type, shown(r.key), shown(r.value),
    r.headers.map((/** @type {any} */ x) => `${x.key}=${x.value ? String(x.value.data) : "null"}`).join(", ")];
}

/**
 * @param {HTMLElement} main
 * @param {{ readWrite: boolean }} _ctx
 * @param {string} arg "TOPIC" or "TOPIC?partition=N"
 */
export function messages(main, _ctx, arg) {
  const [topicArg, qs] = arg.split("?");
  const initial = new URLSearchParams(qs ?? "");
  main.append(h("h1", {}, "Messages"));
  const topicSelect = /** @type {HTMLSelectElement} */ (h("select", { name: "topic" }));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "inline", id: "browse" },
    h("label", {}, "Topic", topicSelect),
    h("label", {}, "Partition", h("input", { name: "partition", type: "number", min: 0, value: initial.get("partition") ?? "0" })),
    h("label", {}, "Seek", h("select", { name: "seek" },
      h("option", { value: "earliest" }, "earliest"), h("option", { value: "latest" }, "latest − N"),
      h("option", { value: "offset" }, "offset"), h("option", { value: "timestamp" }, "timestamp (ms)"))),
    h("label", {}, "Value", h("input", { name: "value", placeholder: "N, offset or ms" })),
    h("label", {}, "Limit", h("input", { name: "limit", type: "number", min: 1, max: 500, value: 50 })),
    h("label", {}, "Format", h("select", { name: "format" },
      h("option", { value: "auto" }, "auto"), h("option", { value: "json" }, "json"),
      h("option", { value: "text" }, "text"), h("option", { value: "hex" }, "hex"))),
    h("label", {}, "Filter", h("input", { name: "filter", placeholder: "text in key or value" })),
    h("label", {}, "Live tail", h("input", { name: "tail", type: "checkbox" })),
    h("button", { type: "submit" }, "Read")));
  const status = h("p", { class: "muted" });
  const results = h("div", {});
  main.append(form, status, results);
  /** @type {any[]} */
  let shownRecords = [];
  let next = 0;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let timer;

  /** @param {string} seek @param {string} value @param {boolean} append */
  const read = (seek, value, append) => {
    const params = new URLSearchParams({
      partition: field(form, "partition"), seek, limit: field(form, "limit") || "50", format: field(form, "format"),
    });
    if (value !== "") params.set("value", value);
    if (field(form, "filter")) params.set("filter", field(form, "filter"));
    return get(`topics/${enc(topicSelect.value)}/messages?${params}`).then((page) => {
      shownRecords = append ? shownRecords.concat(page.records).slice(-500) : page.records;
      next = page.next_offset;
      replace(status, `Offsets ${page.log_start_offset}–${page.high_watermark} (high watermark); showing ${shownRecords.length} records; next offset ${next}.`);
      replace(results, table(["#Offset", "Timestamp", "Type", "Key", "Value", "Headers"], shownRecords.map(row)));
    }, showError);
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (timer) clearInterval(timer);
    timer = undefined;
    read(field(form, "seek"), field(form, "value"), false).then(() => {
      if (field(form, "tail")) timer = setInterval(() => read("offset", String(next), true), TAIL_MS);
    });
  });

  get("topics").then((r) => {
    for (const t of r.topics) topicSelect.append(h("option", { value: t.name }, t.name));
    if (topicArg) topicSelect.value = topicArg;
    if (topicSelect.value) form.requestSubmit();
  }, showError);
  return () => { if (timer) clearInterval(timer); };
}
