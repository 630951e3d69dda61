// The district map: drawn from districts.json, a SCHEMATIC (Voronoi cells around the centroid of
// each kecamatan's devices in deploy/registry.example.csv), not surveyed boundaries.

import { $, el } from "./dom.js";
import { fmtAge, fmtNum, fmtPct, label } from "./format.js";
import { renderDimensions } from "./indicators.js";
import { state, STATUSES, STATUS_LABEL } from "./state.js";

let onDevice = () => {};

// Draw the map; `handlers.onDevice(id)` runs when a device is clicked.
export function buildMap(geo, handlers) {
  onDevice = handlers.onDevice;
  const k = Math.cos((7.35 * Math.PI) / 180);
  const all = geo.outline;
  const lons = all.map((p) => p[1]);
  const lats = all.map((p) => p[0]);
  const lon0 = Math.min(...lons);
  const lat0 = Math.max(...lats);
  const scale = 1000 / ((Math.max(...lons) - lon0) * k);
  const project = ([lat, lon]) => [(lon - lon0) * k * scale, (lat0 - lat) * scale];
  const width = 1000;
  const height = (lat0 - Math.min(...lats)) * scale;
  const svg = $("#map");
  svg.replaceChildren();
  const points = (poly) => poly.map((p) => project(p).map((v) => v.toFixed(1)).join(",")).join(" ");
  const districts = el("svg:g", { class: "districts" });
  const labels = el("svg:g", { class: "labels", "aria-hidden": "true" });
  const bounds = {};
  for (const d of geo.districts) {
    const xy = d.polygon.map(project);
    const xs = xy.map((p) => p[0]);
    const ys = xy.map((p) => p[1]);
    bounds[d.name] = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    districts.append(el("svg:polygon", {
      points: points(d.polygon), "data-district": d.name, class: "district",
      onclick: () => selectScope(d.name),
    }, el("svg:title", { text: `Kecamatan ${d.label} (schematic area)` })));
    const [cx, cy] = project(d.centroid);
    labels.append(el("svg:text", { x: cx.toFixed(1), "data-cy": cy.toFixed(1), text: d.label }));
  }
  svg.append(
    el("svg:polygon", { points: points(geo.outline), class: "outline" }),
    districts, labels, el("svg:g", { class: "device-names", "aria-hidden": "true" }), el("svg:g", { class: "devices" }),
  );
  state.map = { project, width, height, bounds, minSpan: 0.012 * k * scale, labels: Object.fromEntries(geo.districts.map((d) => [d.name, d.label])) };
  const scopeSelect = $("#dimension-scope");
  for (const d of geo.districts) scopeSelect.append(el("option", { value: d.name, text: d.label }));
  scopeSelect.addEventListener("change", () => selectScope(scopeSelect.value));
  $("#map-reset").addEventListener("click", () => selectScope(""));
  zoomTo("");
  window.addEventListener("resize", () => zoomTo(state.scope));
}

// Zoom the map to a district (or the whole regency) by changing the viewBox.
export function zoomTo(district) {
  const m = state.map;
  if (!m) return;
  const svg = $("#map");
  let [x0, y0, x1, y1] = district ? districtBox(district) : [0, 0, m.width, m.height];
  const pad = district ? 0 : 10;
  x0 -= pad; y0 -= pad; x1 += pad; y1 += pad;
  // Widen the box to the panel's aspect ratio so the zoom fills it.
  const aspect = svg.clientWidth && svg.clientHeight ? svg.clientWidth / svg.clientHeight : m.width / m.height;
  if ((x1 - x0) / (y1 - y0) < aspect) {
    const w = (y1 - y0) * aspect;
    x0 -= (w - (x1 - x0)) / 2; x1 = x0 + w;
  } else {
    const h = (x1 - x0) / aspect;
    y0 -= (h - (y1 - y0)) / 2; y1 = y0 + h;
  }
  svg.setAttribute("viewBox", `${x0.toFixed(1)} ${y0.toFixed(1)} ${(x1 - x0).toFixed(1)} ${(y1 - y0).toFixed(1)}`);
  // Map units per screen pixel, so dots and labels keep their on-screen size at any zoom.
  m.unit = svg.clientWidth ? (x1 - x0) / svg.clientWidth : 1;
  m.zoomed = Boolean(district);
  svg.classList.toggle("zoomed", m.zoomed);
  svg.style.setProperty("--u", m.unit);
  for (const t of svg.querySelectorAll(".labels text")) {
    t.setAttribute("y", (t.dataset.cy - (m.zoomed ? 16 : 9) * m.unit).toFixed(1));
  }
  renderDevices();
}

// A district's devices sit within a few hundred metres, so zoom to them (at least ~1.5 km
// across) rather than to the whole schematic cell.
function districtBox(district) {
  const m = state.map;
  const xy = [...state.devices.values()].filter((d) => d.district === district && d.lat != null)
    .map((d) => m.project([d.lat, d.lon]));
  if (xy.length === 0) return m.bounds[district];
  const xs = xy.map((p) => p[0]);
  const ys = xy.map((p) => p[1]);
  const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
  const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
  const half = Math.max(m.minSpan, Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)) * 0.75;
  return [cx - half, cy - half, cx + half, cy + half];
}

// Show one kecamatan ("" for the whole regency) on the map and in the scores.
export function selectScope(district) {
  state.scope = district || "";
  $("#dimension-scope").value = state.scope;
  $("#map-scope").textContent = state.scope ? `Kec. ${state.map.labels[state.scope]}` : "whole regency";
  $("#map-reset").hidden = !state.scope;
  for (const p of document.querySelectorAll("#map .district")) {
    p.classList.toggle("selected", p.dataset.district === state.scope);
  }
  zoomTo(state.scope);
  renderDimensions();
  renderDistrictSummary();
}

export function renderDevices() {
  const m = state.map;
  if (!m) return;
  const group = $("#map .devices");
  const r = (m.zoomed ? 7 : 4.5) * m.unit;
  const seen = new Set();
  for (const d of state.devices.values()) {
    if (d.lat == null || d.lon == null) continue;
    seen.add(d.device_id);
    let c = group.querySelector(`circle[data-device-id="${CSS.escape(d.device_id)}"]`);
    if (!c) {
      c = el("svg:circle", {
        "data-device-id": d.device_id, "data-kind": d.kind, tabindex: "0",
        onclick: () => onDevice(d.device_id),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") onDevice(d.device_id); },
      }, el("svg:title"));
      group.append(c);
    }
    const [x, y] = m.project([d.lat, d.lon]);
    c.setAttribute("cx", x.toFixed(2));
    c.setAttribute("cy", y.toFixed(2));
    c.setAttribute("r", r.toFixed(2));
    c.setAttribute("data-status", d.status);
    c.setAttribute("class", `device status-${d.status}${d.device_id === state.selected ? " selected" : ""}`);
    c.firstChild.textContent = `${d.device_id} (${d.kind.replace("_", " ")}, ${label(d.district)}): `
      + `${STATUS_LABEL[d.status] || d.status}, last seen ${fmtAge(d.last_seen)}`
      + (d.open_anomalies ? `, ${d.open_anomalies} open anomalies` : "");
  }
  for (const c of group.querySelectorAll("circle")) {
    if (!seen.has(c.dataset.deviceId)) c.remove();
  }
  // When zoomed into a kecamatan, name its devices.
  const names = [...state.devices.values()].filter((d) => m.zoomed && d.district === state.scope && d.lat != null);
  $("#map .device-names").replaceChildren(...names.map((d) => {
    const [x, y] = m.project([d.lat, d.lon]);
    return el("svg:text", { x: (x + r * 1.4).toFixed(2), y: (y + r * 0.45).toFixed(2), text: d.device_id });
  }));
  // Tint districts that have a device in anomaly.
  const alarmed = new Set([...state.devices.values()].filter((d) => d.status === "anomaly").map((d) => d.district));
  for (const p of document.querySelectorAll("#map .district")) {
    p.classList.toggle("alarm", alarmed.has(p.dataset.district));
  }
  renderLegend();
}

function renderLegend() {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const d of state.devices.values()) counts[d.status] = (counts[d.status] || 0) + 1;
  $("#legend").replaceChildren(...STATUSES.map((s) => el("li", { "data-status": s },
    el("svg:svg", { viewBox: "0 0 16 16", width: "14", height: "14", "aria-hidden": "true" },
      el("svg:circle", { cx: "8", cy: "8", r: "6", class: `device status-${s}`, "stroke-width": "2" })),
    ` ${STATUS_LABEL[s]} (${counts[s]})`)));
  const unplaced = [...state.devices.values()].filter((d) => d.lat == null || d.lon == null).length;
  if (unplaced) $("#legend").append(el("li", { class: "muted", text: `${unplaced} not on the map (no registered location)` }));
}

export function renderDistrictSummary() {
  const target = $("#district-summary");
  if (!state.scope) {
    target.textContent = "Click a kecamatan to zoom in; click a device for its chart. Areas are schematic.";
    return;
  }
  const ind = state.districtIndicators[state.scope] || {};
  const parts = [];
  const aq = ind.air_quality;
  parts.push(aq ? `ISPU ${fmtNum(aq.ispu_max, 0)} ${aq.category || ""}` : "ISPU –");
  const wl = ind.water_level;
  parts.push(wl ? `flood ${wl.worst_status || "–"}` : "flood –");
  const sl = ind.streetlight;
  parts.push(sl ? `lights ${fmtPct(sl.availability)} working` : "lights –");
  target.textContent = `Kec. ${state.map.labels[state.scope]}: ${parts.join(" · ")}`;
}
