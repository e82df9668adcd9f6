// @ts-check
/** Building the page: elements from data, text only (never HTML strings), so nothing a record
 * or a topic name contains can run as markup. */

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * Creates an element with attributes (`on*` functions become listeners) and children.
 * @param {string} tag
 * @param {Record<string, string | number | boolean | EventListener | undefined>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {(Child | Child[])[]} children
 */
function append(el, children) {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c === null || c === undefined || c === false) continue;
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * A table from column heads and rows of cells; a head starting with "#" is numeric.
 * @param {string[]} heads
 * @param {Child[][]} rows
 * @returns {HTMLElement}
 */
export function table(heads, rows) {
  const num = heads.map((x) => x.startsWith("#"));
  return h("table", {},
    h("thead", {}, h("tr", {}, heads.map((x, i) =>
      h("th", { class: num[i] ? "num" : undefined }, num[i] ? x.slice(1) : x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) =>
      h("td", { class: num[i] ? "num" : undefined }, c))))));
}

/**
 * A labelled figure.
 * @param {string} label
 * @param {Child} value
 */
export function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value));
}

/**
 * Bytes for people.
 * @param {number | null | undefined} n
 */
export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/**
 * @param {number | null | undefined} n
 */
export function num(n) {
  return n === null || n === undefined ? "–" : n.toLocaleString("en-US");
}

/**
 * Replaces `el`'s content.
 * @param {Element} el
 * @param {...(Child | Child[])} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * A form field's current value.
 * @param {HTMLFormElement} form
 * @param {string} name
 * @returns {string}
 */
export function field(form, name) {
  const el = form.elements.namedItem(name);
  if (el instanceof HTMLInputElement && el.type === "checkbox") return el.checked ? "1" : "";
  if (el instanceof HTMLInputElement || el instanceof HTMLSelectElement) return el.value;
  return "";
}

/**
 * Shows an error (a failed action or read) for a few seconds.
 * @param {unknown} e
 */
export function showError(e) {
  const box = document.getElementById("error");
  if (!box) return;
  box.textContent = e instanceof Error ? e.message : String(e);
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 8000);
}
