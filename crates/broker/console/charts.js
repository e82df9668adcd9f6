// @ts-check
/** Line charts drawn as SVG by hand: no chart library (the console has no dependencies). */

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f5bd3", "#e07b00", "#0f8a5f", "#b42318", "#7a43b6", "#4f6475", "#c2185b", "#00838f"];
const W = 600;
const H = 160;
const PAD = { left: 56, right: 8, top: 8, bottom: 18 };

/** @typedef {{ name: string, points: [number, number][] }} Series */

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @returns {SVGElement}
 */
function s(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * Draws `series` (x: ms timestamps, y: values) over the last `windowMs` into a new element.
 * @param {string} title
 * @param {Series[]} series
 * @param {(v: number) => string} format y-axis label format
 * @param {number} windowMs
 * @returns {HTMLElement}
 */
export function lineChart(title, series, format, windowMs) {
  const box = document.createElement("div");
  box.className = "chart";
  const h3 = document.createElement("h3");
  h3.textContent = title;
  box.appendChild(h3);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  const now = Date.now();
  const x0 = now - windowMs;
  let ymax = 0;
  for (const se of series) for (const [, y] of se.points) ymax = Math.max(ymax, y);
  if (ymax <= 0) ymax = 1;
  const x = (/** @type {number} */ t) => PAD.left + ((t - x0) / windowMs) * (W - PAD.left - PAD.right);
  const y = (/** @type {number} */ v) => H - PAD.bottom - (v / ymax) * (H - PAD.top - PAD.bottom);
  for (const frac of [0, 0.5, 1]) {
    const yy = y(ymax * frac);
    svg.appendChild(s("line", { x1: PAD.left, x2: W - PAD.right, y1: yy, y2: yy, stroke: "#e4e7ec" }));
    const label = s("text", { x: PAD.left - 4, y: yy + 4, "text-anchor": "end", "font-size": 10, fill: "#667085" });
    label.textContent = format(ymax * frac);
    svg.appendChild(label);
  }
  const ago = s("text", { x: PAD.left, y: H - 4, "font-size": 10, fill: "#667085" });
  ago.textContent = `-${Math.round(windowMs / 60000)} min`;
  svg.appendChild(ago);
  series.forEach((se, i) => {
    const pts = se.points.filter(([t]) => t >= x0).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (pts.length) {
      svg.appendChild(s("polyline", {
        points: pts.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5,
      }));
    }
  });
  box.appendChild(svg);
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((se, i) => {
    const span = document.createElement("span");
    span.textContent = `■ ${se.name}`;
    span.style.color = COLORS[i % COLORS.length];
    legend.appendChild(span);
  });
  box.appendChild(legend);
  return box;
}
