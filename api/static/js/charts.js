// The device panel's SVG line chart: the mean with a min/max band; gaps break the line.

import { $, el } from "./dom.js";
import { fmtHour, fmtNum } from "./format.js";
import { unitOf } from "./catalog.js";

export function renderChartMessage(text, isProblem) {
  const svg = $("#device-chart");
  svg.setAttribute("viewBox", "0 0 480 150");
  svg.replaceChildren(el("svg:text", { x: "240", y: "75", "text-anchor": "middle", class: isProblem ? "problem" : "muted", text }));
}

export function renderChart(hist, start, end) {
  const W = Math.max(320, Math.round($("#device-chart").clientWidth || 480)), H = 150, L = 44, R = 10, T = 14, B = 20;
  const pts = (hist.points || []).filter((p) => p.mean != null && Number.isFinite(p.mean));
  if (pts.length === 0) {
    renderChartMessage(`No ${hist.field} data in the last 24 h.`, false);
    return;
  }
  let lo = Math.min(...pts.map((p) => (p.min ?? p.mean)));
  let hi = Math.max(...pts.map((p) => (p.max ?? p.mean)));
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const padY = (hi - lo) * 0.08;
  lo -= padY; hi += padY;
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  // Split into runs wherever a gap is longer than two intervals.
  const gap = 2.5 * (hist.interval_s || 300);
  const runs = [];
  for (const p of pts) {
    const run = runs[runs.length - 1];
    if (run && p.ts - run[run.length - 1].ts <= gap) run.push(p);
    else runs.push([p]);
  }
  const svg = $("#device-chart");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const parts = [];
  const step = niceStep((hi - lo) / 4);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    parts.push(el("svg:line", { x1: L, x2: W - R, y1: y(v).toFixed(1), y2: y(v).toFixed(1), class: "grid" }));
    parts.push(el("svg:text", { x: L - 4, y: (y(v) + 3).toFixed(1), "text-anchor": "end", text: fmtNum(v, 2) }));
  }
  for (let h = 0; h <= 24; h += 6) {
    const t = start + h * 3600;
    parts.push(el("svg:text", { x: x(t).toFixed(1), y: H - 6, "text-anchor": h === 0 ? "start" : h === 24 ? "end" : "middle", text: fmtHour(t) }));
  }
  for (const run of runs) {
    const upper = run.map((p) => `${x(p.ts).toFixed(1)},${y(p.max ?? p.mean).toFixed(1)}`);
    const lower = run.slice().reverse().map((p) => `${x(p.ts).toFixed(1)},${y(p.min ?? p.mean).toFixed(1)}`);
    parts.push(el("svg:polygon", { points: [...upper, ...lower].join(" "), class: "band" }));
  }
  for (const run of runs) {
    const line = run.map((p) => `${x(p.ts).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ");
    parts.push(run.length > 1
      ? el("svg:polyline", { points: line, class: "mean" })
      : el("svg:circle", { cx: x(run[0].ts).toFixed(1), cy: y(run[0].mean).toFixed(1), r: 2, class: "mean-dot" }));
  }
  const unit = unitOf(hist.field) ? ` (${unitOf(hist.field)})` : "";
  parts.push(el("svg:text", { x: L + 4, y: T - 3, class: "chart-title", text: `${hist.field}${unit}: mean, min–max band per ${Math.round((hist.interval_s || 300) / 60)} min` }));
  svg.setAttribute("data-field", hist.field);
  svg.setAttribute("data-points", String(pts.length));
  svg.replaceChildren(...parts);
}

function niceStep(raw) {
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}
