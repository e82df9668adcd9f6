// @ts-check
/** Brokers: endpoint, rack, fenced, log dirs and dynamic configs with their source. */

import { get } from "./api.js";
import { h, table, bytes, num, showError } from "./dom.js";

/** @param {any[]} configs */
function configTable(configs) {
  return table(["Name", "Value", "Source"], configs.map((c) =>
    [c.name, c.sensitive ? "(sensitive)" : c.value ?? "", c.source]));
}

/** @param {HTMLElement} main */
export function brokers(main) {
  main.append(h("h1", {}, "Brokers"));
  get("brokers").then((r) => {
    main.append(table(["#Id", "Endpoint", "Rack", "State", "#Epoch", "Log dirs"], r.brokers.map((/** @type {any} */ b) => [
      b.id, `${b.host}:${b.port}`, b.rack ?? "–",
      h("span", { class: b.fenced ? "bad" : "ok" }, b.fenced ? "fenced" : b.in_controlled_shutdown ? "shutting down" : "unfenced"),
      b.epoch,
      b.log_dirs ? b.log_dirs.map((/** @type {any} */ d) => `${d.path} (${num(d.partitions)} partitions, ${bytes(d.size_bytes)})`).join(", ") : "–",
    ])));
    for (const b of r.brokers) {
      const dynamic = b.configs.filter((/** @type {any} */ c) => c.source !== "DEFAULT_CONFIG");
      main.append(h("h2", {}, `Broker ${b.id}: configs not at their default`),
        dynamic.length ? configTable(dynamic) : h("p", { class: "muted" }, "none"));
      if (b.this_node) {
        const all = h("details", {}, h("summary", {}, "All configs"), configTable(b.configs));
        main.append(all);
      }
    }
  }, showError);
}
