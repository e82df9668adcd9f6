// @ts-check
/** The console's entry point: hash routes (#/, #/brokers, #/topics/NAME, #/messages/NAME,
 * #/groups/ID, #/chain) to pages; each page renders into <main> and returns a function that stops its
 * timers when the route changes. */

import { get } from "./api.js";
import { replace, showError } from "./dom.js";
import { overview } from "./overview.js";
import { brokers } from "./brokers.js";
import { topics, topic } from "./topics.js";
import { messages } from "./messages.js";
import { groups, group } from "./groups.js";
import { chain } from "./chain.js";

/** @typedef {{ readWrite: boolean }} Context */
/** @typedef {(main: HTMLElement, ctx: Context, arg: string) => (void | (() => void))} Page */

/** @type {[RegExp, string, Page][]} */
const ROUTES = [
  [/^\/?$/, "overview", overview],
  [/^\/brokers$/, "brokers", brokers],
  [/^\/topics$/, "topics", topics],
  [/^\/topics\/(.+)$/, "topics", topic],
  [/^\/messages(?:\/(.*))?$/, "messages", messages],
  [/^\/groups$/, "groups", groups],
  [/^\/groups\/(.+)$/, "groups", group],
  [/^\/chain$/, "chain", chain],
];

/** @type {(() => void) | void} */
let stopPage;
/** @type {Context} */
const ctx = { readWrite: false };

function route() {
  const main = /** @type {HTMLElement} */ (document.getElementById("main"));
  if (stopPage) stopPage();
  stopPage = undefined;
  const path = location.hash.replace(/^#/, "");
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) {
    replace(main, "No such page.");
    return;
  }
  const [re, name, page] = found;
  const arg = decodeURIComponent(path.match(re)?.[1] ?? "");
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("data-page") === name);
  }
  replace(main);
  stopPage = page(main, ctx, arg);
}

async function start() {
  try {
    const cluster = await get("cluster");
    ctx.readWrite = cluster.console === "read-write";
    const mode = document.getElementById("mode");
    if (mode) mode.textContent = `node ${cluster.node_id} · ${cluster.console}`;
  } catch (e) {
    showError(e);
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
