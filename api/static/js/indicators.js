// The "Regency now" cards and the six smart-city dimension scores.

import { $, el } from "./dom.js";
import { fmtAgeSeconds, fmtNum, fmtPct, textOn } from "./format.js";
import { state } from "./state.js";

// ISPU colours by name, used only if the API sends a colour name instead of "#rrggbb".
const ISPU_COLOURS = { hijau: "#00cc00", biru: "#0000cc", kuning: "#cccc00", merah: "#cc0000", hitam: "#000000" };
const FLOOD_LEVELS = ["Normal", "Waspada", "Siaga", "Awas"];

export function renderRegency(ind) {
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

export function renderDimensions() {
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
