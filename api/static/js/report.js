// The printable monthly report of one kecamatan (or the whole regency): figures from
// GET /api/v1/reports/monthly, labelled in Bahasa Indonesia, with small daily trend charts (SVG).
// The page address is /reports/monthly?district=NAME&month=YYYY-MM; the token is read as the
// dashboard reads it (#token=... in the address, then localStorage).

import { API, ApiError, api, currentToken, onUnauthorized, readToken, setToken, storeToken } from "./api.js";
import { $, el, showStatus } from "./dom.js";

const MONTHS = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober", "November", "Desember"];
export const ISPU_CATEGORIES = ["Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya", "Tidak ada data"];
export const FLOOD_LEVELS = ["Normal", "Waspada", "Siaga", "Awas", "Tidak ada data"];
const KIND_LABEL = { air_quality: "Kualitas udara", water_level: "Tinggi muka air", streetlight: "Lampu jalan" };
const slug = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, "-");

let timeZone = "Asia/Jakarta";
let zoneAbbr = "WIB";
let regionName = "";

// ---------- numbers and names, as Indonesian readers write them ----------

// A number with a decimal comma and point-grouped thousands; "–" for none.
export function angka(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const fixed = Math.abs(v) >= 1000 ? Math.round(v).toString() : String(+v.toFixed(digits));
  const [whole, frac] = fixed.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ".");
  return frac ? `${grouped},${frac}` : grouped;
}

export const persen = (share) => (share === null || share === undefined || !Number.isFinite(share) ? "–" : `${angka(share * 100, 1)}%`);
const titleCase = (name) => name.split(/[\s_-]+/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" ");
export const monthName = (month) => { const [y, m] = month.split("-").map(Number); return `${MONTHS[m - 1]} ${y}`; };
const areaName = (district) => (district ? `Kecamatan ${titleCase(district)}` : regionName || "Seluruh kabupaten");

function currentMonth() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit" }).formatToParts(new Date());
  const get = (t) => parts.find((p) => p.type === t).value;
  return `${get("year")}-${get("month")}`;
}

// The calendar days a period covers, e.g. "1–31 Oktober 2026" (its end is exclusive).
function fmtDays(startS, endS) {
  const day = (s) => {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(new Date(s * 1000));
    const get = (t) => Number(parts.find((p) => p.type === t).value);
    return { y: get("year"), m: get("month"), d: get("day") };
  };
  try {
    const a = day(startS);
    const b = day(Math.max(startS, endS - 1));
    return a.m === b.m && a.y === b.y ? `${a.d}–${b.d} ${MONTHS[a.m - 1]} ${a.y}` : `${a.d} ${MONTHS[a.m - 1]} ${a.y} – ${b.d} ${MONTHS[b.m - 1]} ${b.y}`;
  } catch {
    return "";
  }
}

function fmtDateTime(epochS) {
  try {
    const f = new Intl.DateTimeFormat("id-ID", { timeZone, day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
    return `${f.format(new Date(epochS * 1000))} ${zoneAbbr}`;
  } catch {
    return new Date(epochS * 1000).toISOString();
  }
}

// ---------- the page's address ----------

function wanted() {
  const q = new URLSearchParams(location.search);
  const month = q.get("month");
  return { month: /^\d{4}-(0[1-9]|1[0-2])$/.test(month || "") ? month : currentMonth(), district: q.get("district") || "" };
}

function query(month, district, extra = {}) {
  const q = new URLSearchParams({ month });
  if (district) q.set("district", district);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

// ---------- tables ----------

function row(key, keyName, label, value, shown) {
  return el("tr", { [`data-${keyName}`]: key },
    el("th", { scope: "row", text: label }),
    el("td", { class: "num value", "data-value": value === null || value === undefined ? "" : String(value), text: shown }));
}

function renderIspu(area) {
  const days = area.ispu_days || {};
  $("#ispu-days tbody").replaceChildren(...ISPU_CATEGORIES.map((c) =>
    row(c, "category", c, days[c] ?? 0, angka(days[c] ?? 0, 0))));
  for (const tr of $("#ispu-days tbody").children) tr.classList.add(`cat-${slug(tr.dataset.category)}`);
}

function renderFlood(area) {
  const hours = area.flood_hours || {};
  $("#flood-hours tbody").replaceChildren(...FLOOD_LEVELS.map((lvl) =>
    row(lvl, "level", lvl, hours[lvl] ?? 0, angka(hours[lvl] ?? 0, 1))));
  for (const tr of $("#flood-hours tbody").children) tr.classList.add(`level-${slug(tr.dataset.level)}`);
}

function renderStreetlight(area) {
  const sl = area.streetlight || {};
  $("#streetlight tbody").replaceChildren(
    row("night_availability", "figure", "Ketersediaan lampu pada malam hari", sl.night_availability, persen(sl.night_availability)),
    row("energy_kwh", "figure", "Energi terpakai (kWh)", sl.energy_kwh, angka(sl.energy_kwh, 1)),
    row("lamps", "figure", "Jumlah lampu", sl.lamps, angka(sl.lamps, 0)));
}

function renderCompleteness(area) {
  const devices = [...(area.devices || [])].sort((a, b) => a.device_id.localeCompare(b.device_id));
  const cell = (v, text) => el("td", { class: "num", "data-value": v === null || v === undefined ? "" : String(v), text });
  $("#completeness tbody").replaceChildren(...(devices.length ? devices.map((d) => el("tr", { "data-device-id": d.device_id },
    el("th", { scope: "row", text: d.device_id }), el("td", { text: KIND_LABEL[d.kind] || d.kind }),
    cell(d.expected, angka(d.expected, 0)), cell(d.received, angka(d.received, 0)), cell(d.share, persen(d.share))))
    : [el("tr", {}, el("td", { colspan: "5", class: "muted", text: "Tidak ada perangkat terdaftar di wilayah ini." }))]));
  const c = area.completeness || {};
  $("#completeness tfoot").replaceChildren(el("tr", { "data-device-id": "" },
    el("th", { scope: "row", colspan: "2", text: "Seluruh perangkat" }),
    cell(c.expected, angka(c.expected, 0)), cell(c.received, angka(c.received, 0)), cell(c.share, persen(c.share))));
}

function renderDistricts(body) {
  const districts = body.areas.filter((a) => a.district);
  const block = $("#districts-block");
  block.hidden = districts.length === 0;
  const cell = (v, text) => el("td", { class: "num", "data-value": v === null || v === undefined ? "" : String(v), text });
  $("#districts tbody").replaceChildren(...districts.map((a) => {
    const days = a.ispu_days || {};
    const unhealthy = (days["Tidak Sehat"] || 0) + (days["Sangat Tidak Sehat"] || 0) + (days.Berbahaya || 0);
    const hours = a.flood_hours || {};
    const sl = a.streetlight || {};
    const href = `/reports/monthly?${query(body.month, a.district)}`;
    return el("tr", { "data-district": a.district },
      el("th", { scope: "row" }, el("a", { href, text: titleCase(a.district) })),
      cell(days.Baik ?? 0, angka(days.Baik ?? 0, 0)), cell(days.Sedang ?? 0, angka(days.Sedang ?? 0, 0)), cell(unhealthy, angka(unhealthy, 0)),
      cell(hours.Siaga ?? 0, angka(hours.Siaga ?? 0, 1)), cell(hours.Awas ?? 0, angka(hours.Awas ?? 0, 1)),
      cell(sl.night_availability, persen(sl.night_availability)), cell(sl.energy_kwh, angka(sl.energy_kwh, 1)),
      cell((a.completeness || {}).share, persen((a.completeness || {}).share)));
  }));
}

// ---------- daily trend charts ----------

const TRENDS = [
  { key: "ispu_max", title: "ISPU tertinggi harian", fmt: (v) => angka(v, 0), cls: (d) => (d.ispu_category ? `cat-${slug(d.ispu_category)}` : "") },
  { key: "flood_hours_siaga_or_above", title: "Jam Siaga atau Awas per hari", fmt: (v) => angka(v, 1), cls: () => "level-siaga" },
  { key: "night_availability", title: "Lampu menyala malam (%)", scale: 100, max: 100, fmt: (v) => angka(v, 0), cls: () => "lights" },
  { key: "energy_kwh", title: "Energi lampu jalan (kWh) per hari", fmt: (v) => angka(v, 1), cls: () => "energy" },
  { key: "completeness", title: "Kelengkapan data (%)", scale: 100, max: 100, fmt: (v) => angka(v, 0), cls: () => "complete" },
];

// One small bar chart of a daily figure; a day without a value has no bar (and a dash mark).
function trendChart(spec, days) {
  const W = 330, H = 110, L = 30, R = 6, T = 16, B = 16;
  const values = days.map((d) => (d[spec.key] === null || d[spec.key] === undefined ? null : d[spec.key] * (spec.scale || 1)));
  const present = values.filter((v) => v !== null && Number.isFinite(v));
  const hi = spec.max ?? Math.max(1, ...present);
  const n = Math.max(days.length, 1);
  const slot = (W - L - R) / n;
  const y = (v) => T + (1 - v / hi) * (H - T - B);
  const parts = [
    el("svg:text", { x: "0", y: "11", class: "chart-title", text: spec.title }),
    el("svg:line", { x1: L, x2: W - R, y1: y(0).toFixed(1), y2: y(0).toFixed(1), class: "axis" }),
    el("svg:text", { x: L - 3, y: (y(hi) + 4).toFixed(1), "text-anchor": "end", text: spec.fmt(hi) }),
    el("svg:text", { x: L - 3, y: (y(0)).toFixed(1), "text-anchor": "end", text: "0" }),
  ];
  days.forEach((d, i) => {
    const v = values[i];
    const x = L + i * slot;
    const day = Number(d.date.slice(8, 10));
    if (v === null || !Number.isFinite(v)) {
      parts.push(el("svg:line", { x1: (x + slot * 0.2).toFixed(1), x2: (x + slot * 0.8).toFixed(1), y1: (y(0) - 2).toFixed(1), y2: (y(0) - 2).toFixed(1), class: "no-data" }));
    } else {
      const top = y(Math.min(v, hi));
      const bar = el("svg:rect", { x: (x + slot * 0.12).toFixed(1), y: top.toFixed(1), width: Math.max(1, slot * 0.76).toFixed(1), height: Math.max(0.5, y(0) - top).toFixed(1), class: `bar ${spec.cls(d)}`, "data-date": d.date, "data-value": String(d[spec.key]) },
        el("svg:title", { text: `${day} ${MONTHS[Number(d.date.slice(5, 7)) - 1]}: ${spec.fmt(v)}` }));
      parts.push(bar);
    }
    if (day === 1 || day % 5 === 0) parts.push(el("svg:text", { x: (x + slot / 2).toFixed(1), y: H - 3, "text-anchor": "middle", text: String(day) }));
  });
  return el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "trend", role: "img", "aria-label": spec.title, "data-trend": spec.key }, ...parts);
}

function renderTrends(area) {
  const days = area.days || [];
  $("#trends").replaceChildren(...(days.length ? TRENDS.map((spec) => trendChart(spec, days)) : [el("p", { class: "muted", text: "Tidak ada data harian." })]));
}

// ---------- loading ----------

async function loadSite() {
  try {
    const site = await api("/settings/public");
    timeZone = site.time_zone || timeZone;
    zoneAbbr = site.time_zone_abbr || "";
    regionName = site.region_name || "";
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw err;
    // Without it the page still works, in WIB, without the regency's name.
  }
}

function fillDistricts(areas, chosen) {
  const select = $("#district-select");
  const names = new Set([...select.options].map((o) => o.value));
  for (const a of areas) {
    if (a.district && !names.has(a.district)) { select.append(el("option", { value: a.district, text: titleCase(a.district) })); names.add(a.district); }
  }
  if (chosen && !names.has(chosen)) select.append(el("option", { value: chosen, text: titleCase(chosen) }));
  select.value = chosen;
}

async function loadDistrictNames() {
  // The kecamatan list for the chooser: from the regency report when one is not shown already.
  try {
    const geo = await fetch("/static/districts.json").then((r) => r.json());
    const names = (geo.districts || []).map((d) => d.name).filter(Boolean);
    fillDistricts(names.map((n) => ({ district: String(n).toLowerCase() })), $("#district-select").value);
  } catch {
    // The chooser then lists only what the report names.
  }
}

function render(body, district) {
  const area = body.areas.find((a) => (district ? a.district === district : a.area === "regency")) || body.areas[0];
  if (!area) throw new Error("laporan tidak berisi wilayah");
  const month = body.month;
  const title = `Laporan bulanan ${areaName(area.district)} · ${monthName(month)}`;
  document.title = `Pantau · ${title}`;
  $("#region-name").textContent = regionName || "Laporan bulanan";
  $("#report-title").textContent = `${areaName(area.district)}`;
  $("#report-title").dataset.district = area.district;
  $("#report-period").textContent = `Laporan bulanan ${monthName(month)} · periode ${fmtDays(body.start, body.end)} · zona waktu ${body.time_zone}${zoneAbbr ? ` (${zoneAbbr})` : ""}`;
  renderIspu(area);
  renderFlood(area);
  renderStreetlight(area);
  renderTrends(area);
  renderCompleteness(area);
  if (district) $("#districts-block").hidden = true;
  else renderDistricts(body);
  fillDistricts(body.areas, area.district);
  $("#generated-at").textContent = fmtDateTime(Date.now() / 1000);
}

async function load() {
  const { month, district } = wanted();
  $("#month-input").value = month;
  $("#district-select").value = district;
  $("#csv-link").href = `${API}/reports/monthly?${query(month, district, { format: "csv" })}`;
  $("#csv-link").setAttribute("download", `pantau-laporan-${district || "kabupaten"}-${month}.csv`);
  const main = $("#report");
  main.dataset.state = "loading";
  main.setAttribute("aria-busy", "true");
  try {
    await loadSite();
    const body = await api(`/reports/monthly?${query(month, district)}`);
    render(body, district);
    main.dataset.state = "ready";
    showStatus("");
  } catch (err) {
    main.dataset.state = "error";
    if (!(err instanceof ApiError && err.status === 401)) showStatus(`Laporan tidak dapat dimuat: ${err.message}`);
  } finally {
    main.setAttribute("aria-busy", "false");
  }
}

// The CSV needs the bearer token, which a plain link cannot send: fetch it, then save it.
async function downloadCsv(event) {
  event.preventDefault();
  const link = event.currentTarget;
  try {
    const response = await fetch(link.href, { headers: { Authorization: `Bearer ${currentToken()}`, Accept: "text/csv" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const save = el("a", { href: url, download: link.getAttribute("download") || "laporan.csv", hidden: true });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showStatus(`CSV tidak dapat diunduh: ${err.message}`);
  }
}

function askForToken(message) {
  setToken(null);
  $("#report").hidden = true;
  $("#token-form").hidden = false;
  $("#token-message").textContent = message || "";
}

function main() {
  onUnauthorized((message) => askForToken(`Token ditolak: ${message}`));
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    storeToken(value);
    setToken(value);
    $("#token-form").hidden = true;
    $("#report").hidden = false;
    load();
  });
  $("#report-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const month = $("#month-input").value;
    const district = $("#district-select").value;
    location.search = `?${query(month, district)}`;
  });
  $("#print-button").addEventListener("click", () => window.print());
  $("#csv-link").addEventListener("click", downloadCsv);
  loadDistrictNames();
  const token = readToken();
  if (!token) { askForToken(""); return; }
  setToken(token);
  load();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
