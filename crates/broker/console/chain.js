// @ts-check
/** Chain: this node's view of the metadata chain: role, term, leader, head, commit and (on the
 * leader) each voter's progress; the blocks above the commit point drawn as a tree in SVG
 * (the branch to the head on the first row, forks as side rows, each block with its kind and
 * metadata command); the last dead branches the core collected. Polled every 2 s. */

import { get } from "./api.js";
import { h, table, card, replace, num, showError } from "./dom.js";

const POLL_MS = 2000;
const NS = "http://www.w3.org/2000/svg";
const BLOCK_W = 132;
const BLOCK_H = 40;
const GAP_X = 28;
const GAP_Y = 18;
/** Blocks drawn at most; beyond them the tree says how many it left out. */
const BLOCKS_DRAWN_MAX = 60;

/** @typedef {{ height: number, term: number }} Id */
/** @typedef {{ height: number, term: number, parent: Id, kind: string, command: string | null }} TreeBlock */

/** @param {Id | null | undefined} id */
const label = (id) => (id ? `${num(id.height)} (term ${id.term})` : "–");
/** @param {Id} id */
const key = (id) => `${id.height}/${id.term}`;

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 */
function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Rows for the blocks above the commit point: the branch ending at the head gets row 0, every
 * other branch a row of its own, a block continuing its parent's row where it can.
 * @param {TreeBlock[]} blocks
 * @param {Id} commit
 * @param {Id} head
 * @returns {Map<string, number>} block key -> row
 */
export function layout(blocks, commit, head) {
  const byKey = new Map(blocks.map((b) => [key(b), b]));
  /** @type {Map<string, number>} */
  const row = new Map([[key(commit), 0]]);
  // The head's branch first.
  /** @type {TreeBlock | undefined} */
  let b = byKey.get(key(head));
  while (b) {
    row.set(key(b), 0);
    b = byKey.get(key(b.parent));
  }
  /** Rows whose last block is this key and that may still be continued. */
  /** @type {Map<string, number>} */
  const tips = new Map();
  let rows = 1;
  for (const x of [...blocks].sort((a, c) => a.height - c.height || a.term - c.term)) {
    if (row.has(key(x))) continue;
    const parentRow = tips.get(key(x.parent));
    if (parentRow !== undefined) {
      tips.delete(key(x.parent));
      row.set(key(x), parentRow);
      tips.set(key(x), parentRow);
    } else {
      row.set(key(x), rows);
      tips.set(key(x), rows);
      rows++;
    }
  }
  return row;
}

/**
 * The uncommitted tree as SVG: the commit point at the left, one column per height.
 * @param {TreeBlock[]} blocks
 * @param {Id} commit
 * @param {Id} head
 */
function treeSvg(blocks, commit, head) {
  const shown = [...blocks].sort((a, b) => a.height - b.height).slice(0, BLOCKS_DRAWN_MAX);
  const rows = layout(shown, commit, head);
  const rowCount = Math.max(1, ...[...rows.values()].map((r) => r + 1));
  const cols = Math.max(1, ...shown.map((b) => b.height - commit.height + 1));
  const W = cols * (BLOCK_W + GAP_X) + 8;
  const H = rowCount * (BLOCK_H + GAP_Y) + 8;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "tree" });
  /** @param {Id} id */
  const pos = (id) => ({
    x: 4 + (id.height - commit.height) * (BLOCK_W + GAP_X),
    y: 4 + (rows.get(key(id)) ?? 0) * (BLOCK_H + GAP_Y),
  });
  for (const b of shown) {
    const from = pos(b.parent);
    const to = pos(b);
    svg.append(s("path", {
      d: `M${from.x + BLOCK_W},${from.y + BLOCK_H / 2} C${to.x - GAP_X / 2},${from.y + BLOCK_H / 2} ${to.x - GAP_X / 2},${to.y + BLOCK_H / 2} ${to.x},${to.y + BLOCK_H / 2}`,
      fill: "none", stroke: "#98a2b3",
    }));
  }
  /**
   * @param {Id} id
   * @param {string} cls
   * @param {string} line2
   */
  const block = (id, cls, line2) => {
    const p = pos(id);
    const g = s("g", { class: `block ${cls}`, "data-height": id.height, "data-term": id.term });
    g.append(s("rect", { x: p.x, y: p.y, width: BLOCK_W, height: BLOCK_H, rx: 5 }),
      s("text", { x: p.x + 8, y: p.y + 16 }, `#${id.height} · term ${id.term}`),
      s("text", { x: p.x + 8, y: p.y + 32, class: "kind" }, line2));
    svg.append(g);
  };
  block(commit, "committed", "commit point");
  const headKey = key(head);
  for (const b of shown) {
    const fork = (rows.get(key(b)) ?? 0) > 0;
    block(b, `${fork ? "fork" : "main"}${key(b) === headKey ? " head" : ""}`, b.command ?? b.kind);
  }
  const box = h("div", { class: "tree-box" });
  box.append(svg);
  if (blocks.length > shown.length) {
    box.append(h("p", { class: "muted" }, `${num(blocks.length - shown.length)} more blocks not drawn.`));
  }
  return box;
}

/** @param {any} c the GET /chain answer */
function render(c) {
  /** @type {TreeBlock[]} */
  const blocks = c.uncommitted;
  const forks = new Set(blocks.map((b) => b.height)).size !== blocks.length;
  return [
    h("div", { class: "cards" },
      card("Role", c.role),
      card("Term", num(c.term)),
      card("Leader", c.leader === null ? "none" : `node ${c.leader}`),
      card("Head", label(c.head)),
      card("Commit", label(c.commit)),
      card("Uncommitted", num(blocks.length)),
      card("Dead blocks collected", num(c.dead_blocks_collected))),
    h("h2", {}, "Voters"),
    c.voter_ids.length === 1
      ? h("p", { class: "muted", id: "single-voter" }, `A single voter (node ${c.voter_ids[0]}): a block commits once this node has persisted it.`)
      : "",
    c.voters.length
      ? table(["#Voter", "Matched", "#Behind the head"], c.voters.map((/** @type {any} */ v) => [
        v.id, label(v.matched), v.lag_blocks === null ? "–" : num(v.lag_blocks)]))
      : h("p", { class: "muted" }, c.leader === null
        ? "No leader: voter progress is known to the leader only."
        : `Voter progress is known to the leader (node ${c.leader}) only.`),
    h("h2", {}, "Uncommitted tree"),
    blocks.length
      ? h("div", {}, forks ? h("p", { class: "bad" }, "Forks above the commit point: side rows lose to the branch the leader extends.") : "",
        treeSvg(blocks, c.commit, c.head))
      : h("p", { class: "muted", id: "no-uncommitted" }, `Nothing above the commit point (${label(c.commit)}).`),
    h("h2", {}, `Collected dead branches (the last ${c.dead_branches_kept})`),
    c.dead_branches.length
      ? table(["Collected at", "#Blocks", "Blocks"], c.dead_branches.map((/** @type {any} */ d) => [
        new Date(d.collected_at_ms).toISOString(), d.blocks.length,
        d.blocks.map((/** @type {any} */ b) => `#${b.height} · term ${b.term}: ${b.command ?? b.kind ?? "?"}`).join(", ")]))
      : h("p", { class: "muted", id: "no-dead-branches" }, "None since this node started."),
  ];
}

/** @param {HTMLElement} main */
export function chain(main) {
  const body = h("div", {}, "Loading…");
  main.append(h("h1", {}, "Chain"), body);
  let stopped = false;
  const tick = () => get("chain").then((c) => {
    if (stopped) return;
    replace(body, render(c));
  }, showError);
  tick();
  const timer = setInterval(tick, POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}
