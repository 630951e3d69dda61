// The trend charts: the six dimension scores over the last 30 days (GET /api/v1/reports/scores)
// and this month's daily figures (GET /api/v1/reports/monthly) for the shown scope, with a link
// to the printable monthly report. Re-read when the scope changes or every TRENDS_REFRESH_MS.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { fmtNum } from "./format.js";
import { state } from "./state.js";

export const TRENDS_REFRESH_MS = 10 * 60 * 1000;
const DAYS = 30;
const DAILY = [
  { key: "ispu_max", title: "ISPU max per day" },
  { key: "flood_hours_siaga_or_above", title: "Hours at Siaga or Awas per day" },
  { key: "completeness", title: "Data completeness per day (%)", scale: 100, max: 100 },
];

const trends = { scope: null, loadedAt: 0, loading: false, timeZone: undefined };

// This month (YYYY-MM) in the deployment's time zone (the page's formatters know it).
function thisMonth(timeZone) {
  try {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit" }).formatToParts(new Date());
    return `${parts.find((p) => p.type === "year").value}-${parts.find((p) => p.type === "month").value}`;
  } catch {
    return new Date().toISOString().slice(0, 7);
  }
}

function reportHref(month) {
  const q = new URLSearchParams({ month });
  if (state.scope) q.set("district", state.scope);
  return `/reports/monthly?${q}`;
}

// A line of one dimension's score (0..100) over [start, end]; gaps longer than 3 h break it.
function sparkline(name, points, start, end) {
  const W = 340, H = 34, L = 2, R = 2, T = 3, B = 3;
  const pts = points.filter((p) => p.value != null && Number.isFinite(p.value));
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
  const y = (v) => T + (1 - Math.max(0, Math.min(100, v)) / 100) * (H - T - B);
  const runs = [];
  for (const p of pts) {
    const run = runs[runs.length - 1];
    if (run && p.ts - run[run.length - 1].ts <= 3 * 3600) run.push(p);
    else runs.push([p]);
  }
  const shapes = runs.map((run) => (run.length > 1
    ? el("svg:polyline", { points: run.map((p) => `${x(p.ts).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "), class: "trend-line" })
    : el("svg:circle", { cx: x(run[0].ts).toFixed(1), cy: y(run[0].value).toFixed(1), r: 1.5, class: "trend-dot" })));
  const last = pts[pts.length - 1];
  return el("div", { class: "trend-row", "data-dimension": name, "data-points": String(pts.length) },
    el("span", { class: "trend-label", text: name }),
    el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "spark", preserveAspectRatio: "none", role: "img", "aria-label": `${name}, last ${DAYS} days` },
      el("svg:line", { x1: L, x2: W - R, y1: y(50), y2: y(50), class: "mid" }), ...shapes),
    el("span", { class: "trend-last", text: last ? fmtNum(last.value, 1) : "–" }));
}

// Small daily bars of one figure over the month's days (a slot for every day of the month).
function dailyBars(spec, days, month) {
  const W = 340, H = 46, T = 12, B = 2;
  const [y, m] = month.split("-").map(Number);
  const inMonth = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const vals = days.map((d) => (d[spec.key] == null ? null : d[spec.key] * (spec.scale || 1)));
  const hi = spec.max ?? Math.max(1, ...vals.filter((v) => v != null));
  const slot = W / Math.max(inMonth, days.length, 1);
  const bars = [el("svg:line", { x1: 0, x2: W, y1: H - B, y2: H - B, class: "axis" })];
  vals.forEach((v, i) => {
    if (v == null || !Number.isFinite(v)) return;
    const h = (Math.min(v, hi) / hi) * (H - T - B);
    const slotOf = Number(days[i].date.slice(8, 10)) - 1;
    bars.push(el("svg:rect", { x: (slotOf * slot + slot * 0.1).toFixed(1), y: (H - B - h).toFixed(1), width: (slot * 0.8).toFixed(1), height: Math.max(0.5, h).toFixed(1), class: "trend-bar", "data-date": days[i].date },
      el("svg:title", { text: `${days[i].date}: ${fmtNum(v, 1)}` })));
  });
  return el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "daily", role: "img", "aria-label": spec.title, "data-figure": spec.key },
    el("svg:text", { x: "0", y: "9", class: "trend-title", text: `${spec.title} (max ${fmtNum(hi, 0)})` }), ...bars);
}

async function loadTrends() {
  const scope = state.scope;
  if (trends.timeZone === undefined) {
    // The month is the deployment's, not the browser's.
    trends.timeZone = await api("/settings/public").then((s) => s.time_zone || null, () => null);
  }
  const month = thisMonth(trends.timeZone || undefined);
  $("#report-link").href = reportHref(month);
  const end = Math.floor(Date.now() / 1000);
  const start = end - DAYS * 86400;
  const q = new URLSearchParams({ start: String(start), end: String(end) });
  if (scope) q.set("district", scope);
  const mq = new URLSearchParams({ month });
  if (scope) mq.set("district", scope);
  const [scores, monthly] = await Promise.allSettled([api(`/reports/scores?${q}`), api(`/reports/monthly?${mq}`)]);
  if (state.scope !== scope) return; // the scope changed meanwhile: its own load follows
  const target = $("#trends");
  const parts = [];
  if (scores.status === "fulfilled") {
    const points = scores.value.points || [];
    const names = [...new Set(points.flatMap((p) => Object.keys(p.dimensions || {})))];
    parts.push(...(names.length
      ? names.map((n) => sparkline(n, points.map((p) => ({ ts: p.ts, value: (p.dimensions || {})[n] })), start, end))
      : [el("p", { class: "muted", text: "No stored dimension scores in the last 30 days." })]));
  } else {
    parts.push(el("p", { class: "problem", text: `Score history could not be loaded: ${scores.reason.message}` }));
  }
  if (monthly.status === "fulfilled") {
    const areas = monthly.value.areas || [];
    const area = areas.find((a) => (scope ? a.district === scope : a.area === "regency")) || areas[0];
    const days = (area && area.days) || [];
    if (days.length) parts.push(el("div", { class: "dailies" }, ...DAILY.map((spec) => dailyBars(spec, days, month))));
  } else {
    parts.push(el("p", { class: "problem", text: `This month's figures could not be loaded: ${monthly.reason.message}` }));
  }
  target.replaceChildren(...parts);
  target.dataset.scope = scope;
}

// Called at every dashboard refresh: loads when the scope changed or the charts are old.
export async function refreshTrends() {
  if (trends.loading) return;
  if (trends.scope === state.scope && Date.now() - trends.loadedAt < TRENDS_REFRESH_MS) return;
  trends.loading = true;
  trends.scope = state.scope;
  trends.loadedAt = Date.now();
  try {
    await loadTrends();
  } finally {
    trends.loading = false;
  }
}
