// The sensor catalog (GET /api/v1/catalog) and the site's public settings
// (GET /api/v1/settings/public): what the page needs to name fields, units, the area and times.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { setTimeZone } from "./format.js";

// How units stored in plain ASCII are printed.
const UNIT_SYMBOLS = { "ug/m3": "µg/m³", "mg/m3": "mg/m³", C: "°C", m3: "m³" };

let kinds = null; // kind -> {kind, fields, default_field}
let units = new Map(); // field name -> printed unit (the first kind naming the field wins)
let site = null;

export const displayUnit = (unit) => UNIT_SYMBOLS[unit] ?? unit;

export async function loadCatalog() {
  const body = await api("/catalog");
  const next = new Map();
  const nextUnits = new Map();
  for (const k of body.kinds || []) {
    next.set(k.kind, k);
    for (const f of k.fields || []) {
      // A binary field's "0/1" is not a unit worth printing after its value.
      if (!f.binary && f.unit && !nextUnits.has(f.name)) nextUnits.set(f.name, displayUnit(f.unit));
    }
  }
  kinds = next;
  units = nextUnits;
}

// Time zone and the regency's name: they go in the header, the title and every time shown.
export async function loadSite() {
  const body = await api("/settings/public");
  site = body;
  setTimeZone(body.time_zone, body.time_zone_abbr);
  $("#site-name").textContent = body.region_name ? `${body.region_name} · operations` : "operations";
  const short = (body.region_name || "").replace(/^(kabupaten|kota|kab\.)\s+/i, "");
  document.title = short ? `Pantau · ${short} operations` : "Pantau · operations";
}

export const loaded = () => kinds !== null && site !== null;

// A kind's fields, its default (charted first) at the front.
export function fieldsOf(kind) {
  const spec = kinds && kinds.get(kind);
  if (!spec) return [];
  const first = spec.fields.filter((f) => f.name === spec.default_field);
  return [...first, ...spec.fields.filter((f) => f.name !== spec.default_field)];
}

// The printed unit of a field ("" if none).
export const unitOf = (name) => units.get(name) || "";
