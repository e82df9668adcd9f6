// @ts-check
/** Talking to /api/v1 and /metrics. Errors carry the broker's Kafka error name. */

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} name Kafka's error name (TOPIC_ALREADY_EXISTS) or the API's own
   * @param {string} message
   */
  constructor(status, name, message) {
    super(`${name}: ${message}`);
    this.status = status;
    this.name = name;
  }
}

/**
 * @param {string} method
 * @param {string} path under /api/v1/
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function call(method, path, body) {
  /** @type {RequestInit} */
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const r = await fetch(`/api/v1/${path}`, init);
  const text = await r.text();
  /** @type {any} */
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) {
    throw new ApiError(r.status, json?.error ?? `HTTP_${r.status}`, json?.message ?? text);
  }
  return json;
}

/** @param {string} path @returns {Promise<any>} */
export const get = (path) => call("GET", path);
/** @param {string} path @param {unknown} body @returns {Promise<any>} */
export const post = (path, body) => call("POST", path, body);
/** @param {string} path @returns {Promise<any>} */
export const del = (path) => call("DELETE", path);

/** @param {string} s */
export const enc = (s) => encodeURIComponent(s);

/** @returns {Promise<string>} the OpenMetrics text of /metrics */
export async function metricsText() {
  const r = await fetch("/metrics");
  if (!r.ok) throw new ApiError(r.status, `HTTP_${r.status}`, "cannot read /metrics");
  return r.text();
}
