// @ts-check
/** Consumer groups: state, members, assignments, committed/end/lag per partition; reset
 * offsets (with a dry run, only when Empty) and delete, both as Kafka requests. */

import { get, post, del, enc } from "./api.js";
import { h, table, num, field, replace, showError } from "./dom.js";

/** @param {HTMLElement} main */
export function groups(main) {
  main.append(h("h1", {}, "Consumer groups"));
  get("groups").then((r) => {
    main.append(r.groups.length ? table(["Group", "State", "Protocol type"], r.groups.map((/** @type {any} */ g) => [
      h("a", { href: `#/groups/${enc(g.group_id)}` }, g.group_id), g.state, g.protocol_type,
    ])) : h("p", { class: "muted" }, "No groups coordinated by this broker."));
  }, showError);
}

/**
 * @param {HTMLElement} main
 * @param {{ readWrite: boolean }} ctx
 * @param {string} id
 */
export function group(main, ctx, id) {
  main.append(h("h1", {}, `Group ${id}`));
  get(`groups/${enc(id)}`).then((g) => {
    const totalLag = g.offsets.reduce((/** @type {number} */ s, /** @type {any} */ o) => s + (o.lag ?? 0), 0);
    main.append(h("p", {}, `State ${g.state} · protocol ${g.protocol || "–"} · total lag ${num(totalLag)}`));
    main.append(h("h2", {}, "Members"), g.members.length ? table(["Member", "Client", "Host", "Assignment"],
      g.members.map((/** @type {any} */ m) => [m.member_id, m.client_id, m.client_host,
        (m.assignment ?? []).map((/** @type {any} */ a) => `${a.topic}: ${a.partitions.join(", ")}`).join("; ")]))
      : h("p", { class: "muted" }, "No members."));
    main.append(h("h2", {}, "Offsets"), table(["Topic", "#Partition", "#Committed", "#End", "#Lag"],
      g.offsets.map((/** @type {any} */ o) => [o.topic, o.partition, num(o.committed), num(o.end), num(o.lag)])));
    if (!ctx.readWrite) return;
    const topics = [...new Set(g.offsets.map((/** @type {any} */ o) => String(o.topic)))];
    const preview = h("div", {});
    const form = /** @type {HTMLFormElement} */ (h("form", { class: "inline", id: "reset-offsets" },
      h("label", {}, "Topic", h("input", { name: "topic", value: topics[0] ?? "", required: true })),
      h("label", {}, "Reset to", h("select", { name: "to" }, ["earliest", "latest", "offset", "timestamp", "shift"]
        .map((t) => h("option", { value: t }, t)))),
      h("label", {}, "Value", h("input", { name: "value", placeholder: "offset, ms or ±n" })),
      h("label", {}, "Dry run", h("input", { name: "dry", type: "checkbox", checked: true })),
      h("button", { type: "submit", disabled: g.state !== "Empty" }, "Reset offsets")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = field(form, "value");
      post(`groups/${enc(id)}/reset`, {
        topic: field(form, "topic"), to: field(form, "to"),
        value: value === "" ? undefined : Number(value), dry_run: field(form, "dry") === "1",
      }).then((r) => {
        replace(preview, h("p", {}, r.dry_run ? "Dry run: nothing committed." : "Committed."),
          table(["Topic", "#Partition", "#Previous", "#Target"],
            r.offsets.map((/** @type {any} */ o) => [o.topic, o.partition, num(o.previous), num(o.target)])));
      }, showError);
    });
    const remove = h("button", { class: "danger", type: "button", disabled: g.state !== "Empty", onclick: () => {
      if (!confirm(`Delete group ${id} and its committed offsets?`)) return;
      del(`groups/${enc(id)}`).then(() => { location.hash = "#/groups"; }, showError);
    } }, "Delete group");
    main.append(h("h2", {}, "Actions"),
      g.state === "Empty" ? "" : h("p", { class: "muted" }, "Offsets can be reset and the group deleted only while it is Empty."),
      form, preview, remove);
  }, showError);
}
