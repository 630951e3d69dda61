// Pantau operations dashboard: plain JavaScript, no build step, no network beyond this origin.
// The district map is drawn from districts.json, a SCHEMATIC (Voronoi cells around the centroid of
// each kecamatan's devices in deploy/registry.example.csv), not surveyed boundaries.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "pantau.token";
  const REFRESH_MS = 5000;
  const CHART_REFRESH_MS = 30000;
  const FEED_MAX = 100;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATUSES = ["ok", "anomaly", "offline", "unknown"];
  const STATUS_LABEL = { ok: "OK", anomaly: "Anomaly", offline: "Offline", unknown: "Unknown" };
  const FIELDS = {
    air_quality: ["pm25", "pm10", "so2", "no2", "o3", "co", "hc", "temperature", "humidity"],
    water_level: ["level_cm", "rain_mm", "battery_v"],
    streetlight: ["power_w", "lamp_on", "dim_pct", "voltage_v", "current_a", "energy_wh", "lux"],
  };
  const UNITS = {
    pm25: "µg/m³", pm10: "µg/m³", so2: "µg/m³", no2: "µg/m³", o3: "µg/m³", co: "µg/m³",
    hc: "µg/m³", temperature: "°C", humidity: "%", level_cm: "cm", rain_mm: "mm",
    battery_v: "V", dim_pct: "%", power_w: "W", voltage_v: "V", current_a: "A",
    energy_wh: "Wh", lux: "lx",
  };
  // ISPU colours by name, used only if the API sends a colour name instead of "#rrggbb".
  const ISPU_COLOURS = { hijau: "#00cc00", biru: "#0000cc", kuning: "#cccc00", merah: "#cc0000", hitam: "#000000" };
  const FLOOD_LEVELS = ["Normal", "Waspada", "Siaga", "Awas"];

  const state = {
    token: null,
    devices: new Map(), // device_id -> device
    anomalies: new Map(), // id -> anomaly
    liveAnomalyAt: new Map(), // device_id -> Date.now() of the last anomaly seen on the feed
    districtIndicators: {},
    dimensions: null,
    selected: null, // device_id
    field: null,
    scope: "", // "" = regency, else a district name
    map: null, // projection and geometry
    source: null, // EventSource
    retryMs: 1000,
    dropped: 0,
    timer: null,
    chartAt: 0,
  };

  const $ = (sel) => document.querySelector(sel);

  // ---------- small helpers ----------

  function el(tag, attrs = {}, ...children) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS(SVG_NS, tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const timeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const dateTimeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
    hour12: false,
  });
  const hourFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const fmtTime = (s) => (s == null ? "–" : `${timeFmt.format(new Date(s * 1000))} WIB`);
  const fmtDateTime = (s) => (s == null ? "–" : `${dateTimeFmt.format(new Date(s * 1000))} WIB`);

  function fmtNum(v, digits = 1) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v !== "number") return String(v);
    if (!Number.isFinite(v)) return "–";
    return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : String(+v.toFixed(digits));
  }

  function fmtAge(s) {
    if (s == null) return "never";
    const age = Math.max(0, Date.now() / 1000 - s);
    if (age < 90) return `${Math.round(age)} s ago`;
    if (age < 5400) return `${Math.round(age / 60)} min ago`;
    if (age < 172800) return `${Math.round(age / 3600)} h ago`;
    return `${Math.round(age / 86400)} d ago`;
  }

  const label = (name) => name.charAt(0).toUpperCase() + name.slice(1);

  // Black or white text, whichever reads better on the given "#rrggbb" background.
  function textOn(hex) {
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
    if (!m) return "#000";
    const [r, g, b] = m.slice(1).map((h) => parseInt(h, 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 ? "#000" : "#fff";
  }

  // ---------- API access ----------

  class ApiError extends Error {
    constructor(status, problem) {
      const p = problem || {};
      super(`${p.title || "Error"} (${status})${p.detail ? `: ${p.detail}` : ""}`);
      this.status = status;
      this.problem = p;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${state.token}` };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, { ...options, headers });
    } catch (err) {
      throw new ApiError(0, { title: "Network error", detail: "the Pantau API cannot be reached" });
    }
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      const error = new ApiError(response.status, body);
      if (response.status === 401) askForToken(error.message);
      throw error;
    }
    return body;
  }

  // ---------- token ----------

  function readToken() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const fromUrl = hash.get("token");
    if (fromUrl) {
      localStorage.setItem(TOKEN_KEY, fromUrl);
      hash.delete("token");
      const rest = hash.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    return fromUrl || localStorage.getItem(TOKEN_KEY);
  }

  function askForToken(message) {
    stop();
    state.token = null;
    $("#dashboard").hidden = true;
    showStatus("");
    $("#token-form").hidden = false;
    $("#token-message").textContent = message || "";
    $("#token-input").focus();
  }

  function setupToken() {
    $("#token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("#token-input").value.trim();
      if (!value) return;
      localStorage.setItem(TOKEN_KEY, value);
      $("#token-input").value = "";
      $("#token-form").hidden = true;
      start(value);
    });
    $("#change-token").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      askForToken("");
    });
  }

  // ---------- map ----------

  function buildMap(geo) {
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
  function zoomTo(district) {
    const m = state.map;
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

  function selectScope(district) {
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

  function renderDevices() {
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
          onclick: () => selectDevice(d.device_id),
          onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") selectDevice(d.device_id); },
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

  function renderDistrictSummary() {
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

  // ---------- device panel ----------

  function selectDevice(id) {
    const d = state.devices.get(id);
    if (!d) return;
    state.selected = id;
    const fields = FIELDS[d.kind] || [];
    if (!fields.includes(state.field)) state.field = fields[0] || null;
    const select = $("#field-select");
    select.replaceChildren(...fields.map((f) => el("option", { value: f, text: f, selected: f === state.field })));
    $("#field-label").hidden = fields.length === 0;
    renderDevices();
    refreshDevice(true);
  }

  async function refreshDevice(withChart) {
    const id = state.selected;
    if (!id) return;
    const path = `/devices/${encodeURIComponent(id)}`;
    const now = Date.now() / 1000;
    const jobs = [api(path)];
    if (withChart && state.field) {
      const query = new URLSearchParams({ field: state.field, start: String(Math.floor(now - 86400)), end: String(Math.ceil(now)), interval: "300" });
      jobs.push(api(`${path}/history?${query}`));
      state.chartAt = Date.now();
    }
    const [detail, hist] = await Promise.allSettled(jobs);
    if (id !== state.selected) return; // another device was clicked meanwhile
    if (detail.status === "fulfilled") renderDeviceDetail(detail.value);
    else $("#device-latest").replaceChildren(el("p", { class: "problem", text: detail.reason.message }));
    if (hist) {
      if (hist.status === "fulfilled") renderChart(hist.value, now - 86400, now);
      else renderChartMessage(hist.reason.message, true);
    }
  }

  function renderDeviceDetail(detail) {
    const d = detail.device;
    $("#device-title").replaceChildren(`${d.device_id} `,
      el("span", { class: "sub", text: `${d.kind.replace("_", " ")} · Kec. ${label(d.district)}` }));
    const rows = [];
    rows.push(el("p", {},
      el("span", { class: `badge status-${d.status}`, text: STATUS_LABEL[d.status] || d.status }),
      ` last seen ${fmtAge(d.last_seen)} · every ${d.interval_s} s`
        + (d.open_anomalies ? ` · ${d.open_anomalies} open anomalies` : "")));
    const values = (obj) => el("dl", { class: "values" }, ...Object.entries(obj.values || {}).flatMap(([k, v]) => [
      el("dt", { text: k }), el("dd", { text: `${fmtNum(v, 2)}${UNITS[k] && typeof v === "number" ? ` ${UNITS[k]}` : ""}` }),
    ]));
    if (detail.latest) {
      rows.push(el("h3", { text: `Latest reading · ${fmtTime(detail.latest.ts)}` }), values(detail.latest));
    } else {
      rows.push(el("p", { class: "muted", text: "No reading yet." }));
    }
    if (detail.indicators) {
      rows.push(el("h3", { text: `Indicators · ${fmtTime(detail.indicators.ts)}` }), values(detail.indicators));
    }
    $("#device-latest").replaceChildren(...rows);
  }

  function renderChartMessage(text, isProblem) {
    const svg = $("#device-chart");
    svg.setAttribute("viewBox", "0 0 480 150");
    svg.replaceChildren(el("svg:text", { x: "240", y: "75", "text-anchor": "middle", class: isProblem ? "problem" : "muted", text }));
  }

  // An SVG line chart of the mean with a min/max band; gaps in the data break the line.
  function renderChart(hist, start, end) {
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
      parts.push(el("svg:text", { x: x(t).toFixed(1), y: H - 6, "text-anchor": h === 0 ? "start" : h === 24 ? "end" : "middle", text: hourFmt.format(new Date(t * 1000)) }));
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
    const unit = UNITS[hist.field] ? ` (${UNITS[hist.field]})` : "";
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

  // ---------- indicators and dimensions ----------

  function fmtPct(v) {
    if (v == null || !Number.isFinite(v)) return "–";
    return `${fmtNum(v * 100, 1)}%`; // the API sends a fraction
  }

  function renderRegency(ind) {
    const aq = ind.air_quality;
    const ispu = $("#regency-ispu");
    const head = el("h3", { text: "Air quality (ISPU)" });
    if (!aq || aq.ispu_max == null) {
      ispu.replaceChildren(head, el("p", { class: "muted", text: "No air-quality station has a current ISPU." }));
    } else {
      const colour = (aq.colour || "").startsWith("#") ? aq.colour : ISPU_COLOURS[aq.colour] || "#777";
      ispu.dataset.category = aq.category || "";
      ispu.replaceChildren(head,
        el("p", { class: "big-line" },
          el("span", { class: "ispu-value", style: `background:${colour};color:${textOn(colour)}`, "data-value": String(aq.ispu_max), text: fmtNum(aq.ispu_max, 0) }),
          el("span", { class: "ispu-category", text: aq.category || "" })),
        el("p", { class: "muted", text: `worst of ${aq.stations} stations · mean ${fmtNum(aq.ispu_mean, 0)}${aq.critical ? ` · critical: ${aq.critical}` : ""}` }));
    }
    const wl = ind.water_level;
    const flood = $("#flood-status");
    const fhead = el("h3", { text: "Flood (water level)" });
    if (!wl) {
      flood.replaceChildren(fhead, el("p", { class: "muted", text: "No water-level gauge reporting." }));
    } else {
      flood.dataset.worst = wl.worst_status || "";
      flood.replaceChildren(fhead,
        el("p", { class: "big-line" }, el("span", { class: `level level-${(wl.worst_status || "none").toLowerCase()}`, text: wl.worst_status || "–" }),
          el("span", { class: "muted", text: ` worst of ${wl.gauges} gauges` })),
        el("ul", { class: "level-counts" }, ...FLOOD_LEVELS.map((lvl) => el("li", { "data-level": lvl },
          el("span", { class: `level level-${lvl.toLowerCase()}`, text: lvl }), ` ${(wl.counts || {})[lvl] ?? 0}`))));
    }
    const sl = ind.streetlight;
    const lights = $("#streetlights");
    const lhead = el("h3", { text: "Streetlights" });
    if (!sl) {
      lights.replaceChildren(lhead, el("p", { class: "muted", text: "No streetlight reporting." }));
    } else {
      lights.replaceChildren(lhead,
        el("p", { class: "big-line" }, el("span", { class: "big", "data-value": String(sl.availability), text: fmtPct(sl.availability) }),
          el("span", { class: "muted", text: ` of ${sl.lamps} lamps available` })),
        el("p", { class: "muted", text: `today ${fmtNum((sl.energy_today_wh ?? NaN) / 1000, 1)} kWh · burning by day ${fmtNum(sl.day_burn_h_today, 1)} h` }));
    }
  }

  function renderDimensions() {
    const target = $("#dimensions");
    if (!state.dimensions) return;
    const scoped = state.scope ? (state.dimensions.districts || {})[state.scope] : state.dimensions.regency;
    if (!scoped) {
      target.replaceChildren(el("p", { class: "muted", text: "No dimension scores for this kecamatan yet." }));
      return;
    }
    const open = new Set([...target.querySelectorAll("details[open]")].map((d) => d.dataset.dimension));
    target.replaceChildren(...scoped.dimensions.map((dim) => {
      const measured = dim.measured && dim.score != null && Number.isFinite(dim.score);
      const score = measured ? Math.max(0, Math.min(100, dim.score)) : 0;
      const rows = (dim.contributions || []).map((c) => el("tr", { class: c.stale ? "stale" : null },
        el("td", { text: c.label || c.indicator }), el("td", { text: fmtNum(c.value, 2) }),
        el("td", { text: fmtNum(c.normalised, 0) }), el("td", { text: fmtNum(c.weight, 2) }),
        el("td", { text: fmtNum(c.contribution, 1) }),
        el("td", { text: c.stale ? `stale (${fmtAgeSeconds(c.age_s)})` : fmtAgeSeconds(c.age_s) })));
      return el("details", { "data-dimension": dim.dimension, "data-measured": String(measured), open: open.has(dim.dimension) },
        el("summary", {},
          el("span", { class: "dim-label", text: dim.label }),
          el("span", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": measured ? String(score) : null, "aria-label": dim.label },
            el("span", { class: "fill", style: `width:${score}%` })),
          el("span", { class: measured ? "score" : "score muted", text: measured ? fmtNum(dim.score, 1) : "not measured" })),
        rows.length
          ? el("table", { class: "contrib" }, el("thead", {}, el("tr", {}, ...["Indicator", "Value", "Norm.", "Weight", "Contrib.", "Age"].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows))
          : el("p", { class: "muted", text: "No live indicator feeds this dimension." }));
    }));
  }

  function fmtAgeSeconds(s) {
    if (s == null) return "–";
    return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  }

  // ---------- anomaly feed ----------

  function upsertAnomaly(a) {
    if (a == null || a.id == null) return;
    const key = String(a.id);
    state.anomalies.set(key, { ...state.anomalies.get(key), ...a });
  }

  function renderFeed() {
    const list = $("#anomaly-feed");
    const items = [...state.anomalies.values()].sort((a, b) => b.ts - a.ts).slice(0, FEED_MAX);
    const keep = new Set(items.map((a) => String(a.id)));
    for (const [k] of state.anomalies) if (!keep.has(k)) state.anomalies.delete(k);
    const existing = new Map([...list.children].map((li) => [li.dataset.anomalyId, li]));
    const nodes = items.map((a) => {
      const key = String(a.id);
      const stamp = JSON.stringify(a.acknowledged);
      let li = existing.get(key);
      if (!li || li.dataset.ack !== stamp) li = feedItem(a); // (re)build only what changed
      return li;
    });
    if (items.length === 0) {
      list.replaceChildren(el("li", { class: "muted", text: "No anomalies." }));
    } else {
      list.replaceChildren(...nodes);
    }
  }

  function feedItem(a) {
    const li = el("li", {
      "data-anomaly-id": String(a.id), "data-severity": a.severity, "data-ack": JSON.stringify(a.acknowledged),
      "data-device-id": a.device_id, "data-detector": a.detector, "data-field": a.field,
      class: `sev-${a.severity}${a.acknowledged ? " acked" : ""}`,
    });
    const device = el("button", { type: "button", class: "link", text: a.device_id, onclick: () => { selectScope(a.district); selectDevice(a.device_id); } });
    li.append(
      el("div", { class: "feed-head" },
        el("span", { class: `sev sev-${a.severity}`, text: a.severity }),
        el("time", { text: fmtDateTime(a.ts) })),
      el("div", {}, device, ` · Kec. ${label(a.district || "")}`),
      el("div", { class: "muted", text: `${a.detector} on ${a.field} = ${fmtNum(a.value, 2)} (score ${fmtNum(a.score, 2)})` }));
    if (a.acknowledged) {
      const ack = a.acknowledged;
      li.append(el("div", { class: "ack", text: `✓ acknowledged by ${ack.by} ${fmtDateTime(ack.at)}${ack.note ? `: ${ack.note}` : ""}` }));
    } else {
      const note = el("input", { type: "text", placeholder: "note (optional)", "aria-label": "Acknowledgement note", maxlength: "500" });
      const problem = el("p", { class: "problem", role: "alert" });
      const form = el("form", { class: "ack-form" }, note, el("button", { type: "submit", text: "Acknowledge" }), problem);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        problem.textContent = "";
        const submit = form.querySelector("button");
        submit.disabled = true;
        try {
          const updated = await api(`/anomalies/${encodeURIComponent(a.id)}/ack`, { method: "POST", body: JSON.stringify({ note: note.value }) });
          upsertAnomaly(updated && updated.id != null ? updated : { ...a, acknowledged: { by: "you", at: Date.now() / 1000, note: note.value } });
          renderFeed();
        } catch (err) {
          problem.textContent = err.message; // e.g. 403: this token lacks the operate scope
          submit.disabled = false;
        }
      });
      li.append(form);
    }
    return li;
  }

  // ---------- live feed (SSE) ----------

  function setFeedState(s) {
    const node = $("#feed-state");
    node.textContent = s;
    node.dataset.state = s;
  }

  function connectFeed() {
    if (state.source) state.source.close();
    const query = new URLSearchParams({ types: "anomaly,ack,indicator", access_token: state.token });
    const source = new EventSource(`${API}/feed/sse?${query}`);
    state.source = source;
    setFeedState("connecting");
    source.onopen = () => { state.retryMs = 1000; setFeedState("live"); };
    source.addEventListener("frame", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      applyFrame(frame);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused (e.g. token revoked) or went away: retry with backoff.
        setFeedState("offline");
        source.close();
        const wait = state.retryMs;
        state.retryMs = Math.min(30000, state.retryMs * 2);
        setTimeout(() => { if (state.source === source) connectFeed(); }, wait);
      } else {
        setFeedState("reconnecting");
      }
    };
  }

  function applyFrame(frame) {
    if (frame.dropped > 0) {
      state.dropped += frame.dropped;
      const note = $("#feed-dropped");
      note.hidden = false;
      note.textContent = `${state.dropped} live events dropped (reloaded from the API)`;
      loadAnomalies(); // catch up on what the feed lost
    }
    let changed = false;
    for (const ev of frame.events || []) {
      if (ev.type === "anomaly") {
        const { type, ...a } = ev;
        const isNew = !state.anomalies.has(String(a.id));
        upsertAnomaly(a);
        changed = true;
        const d = state.devices.get(a.device_id);
        if (d && !a.acknowledged) {
          state.liveAnomalyAt.set(a.device_id, Date.now());
          d.status = "anomaly";
          if (isNew) d.open_anomalies = (d.open_anomalies || 0) + 1;
        }
      } else if (ev.type === "ack") {
        const { type, ...a } = ev; // an acknowledgement, possibly from another operator
        if (state.anomalies.has(String(a.id))) { upsertAnomaly(a); changed = true; }
      } else if (ev.type === "indicator" && ev.device_id === state.selected) {
        refreshDevice(false);
      }
    }
    if (changed) { renderFeed(); renderDevices(); }
  }

  // ---------- polling ----------

  async function loadAnomalies() {
    try {
      const body = await api("/anomalies?limit=50");
      for (const a of body.anomalies || []) upsertAnomaly(a);
      renderFeed();
    } catch (err) {
      showStatus(err.message);
    }
  }

  function showStatus(message) {
    const node = $("#status");
    node.hidden = !message;
    node.textContent = message || "";
  }

  async function refresh() {
    const started = Date.now();
    const [devices, regency, districts, dimensions] = await Promise.allSettled([
      api("/devices"), api("/indicators/regency"), api("/indicators/districts"), api("/dimensions"),
    ]);
    if (!state.token) return; // the token was rejected meanwhile
    const problems = [devices, regency, districts, dimensions].filter((r) => r.status === "rejected").map((r) => r.reason.message);
    showStatus(problems.length ? `Some data could not be loaded: ${[...new Set(problems)].join("; ")}` : "");
    if (devices.status === "fulfilled") {
      const next = new Map();
      for (const d of devices.value.devices || []) {
        // An anomaly that arrived on the live feed after this request started wins.
        if ((state.liveAnomalyAt.get(d.device_id) || 0) > started) {
          const old = state.devices.get(d.device_id);
          d.status = "anomaly";
          d.open_anomalies = Math.max(d.open_anomalies || 0, (old && old.open_anomalies) || 0);
        }
        next.set(d.device_id, d);
      }
      state.devices = next;
      renderDevices();
    }
    if (regency.status === "fulfilled") renderRegency(regency.value || {});
    if (districts.status === "fulfilled") { state.districtIndicators = districts.value.districts || {}; renderDistrictSummary(); }
    if (dimensions.status === "fulfilled") { state.dimensions = dimensions.value; renderDimensions(); }
    if (state.selected) refreshDevice(Date.now() - state.chartAt > CHART_REFRESH_MS);
    if (problems.length < 4) $("#last-refresh").textContent = fmtTime(Date.now() / 1000);
  }

  function stop() {
    clearInterval(state.timer);
    state.timer = null;
    if (state.source) { state.source.close(); state.source = null; }
    setFeedState("closed");
  }

  function start(token) {
    stop();
    state.token = token;
    $("#token-form").hidden = true;
    $("#dashboard").hidden = false;
    zoomTo(state.scope); // the map has a size only once the dashboard is shown
    refresh();
    loadAnomalies();
    connectFeed();
    state.timer = setInterval(refresh, REFRESH_MS);
  }

  async function main() {
    setupToken();
    $("#field-select").addEventListener("change", (e) => { state.field = e.target.value; refreshDevice(true); });
    try {
      const geo = await fetch("/static/districts.json").then((r) => r.json());
      buildMap(geo);
    } catch (err) {
      showStatus("The district schematic (districts.json) could not be loaded.");
    }
    const token = readToken();
    if (token) start(token);
    else askForToken("");
  }

  document.addEventListener("DOMContentLoaded", main);
})();
