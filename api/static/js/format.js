// Numbers, ages and times as the page shows them. Times are in the deployment's time zone, which
// the API names (GET /api/v1/settings/public); until then, the browser's own.

let timeFmt;
let dateTimeFmt;
let hourFmt;
let zoneSuffix = "";

function formatters(timeZone) {
  const base = timeZone ? { timeZone, hour12: false } : { hour12: false };
  return [
    new Intl.DateTimeFormat("en-GB", { ...base, hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    new Intl.DateTimeFormat("en-GB", { ...base, day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" }),
    new Intl.DateTimeFormat("en-GB", { ...base, hour: "2-digit", minute: "2-digit" }),
  ];
}

// Show times in this IANA zone, followed by its abbreviation (e.g. "Asia/Jakarta", "WIB").
export function setTimeZone(name, abbr) {
  try {
    [timeFmt, dateTimeFmt, hourFmt] = formatters(name);
    zoneSuffix = abbr ? ` ${abbr}` : "";
  } catch (err) { // RangeError: a zone this browser does not know
    [timeFmt, dateTimeFmt, hourFmt] = formatters(undefined);
    zoneSuffix = "";
  }
}

setTimeZone(undefined, "");

export const fmtTime = (s) => (s == null ? "–" : `${timeFmt.format(new Date(s * 1000))}${zoneSuffix}`);
export const fmtDateTime = (s) => (s == null ? "–" : `${dateTimeFmt.format(new Date(s * 1000))}${zoneSuffix}`);
export const fmtHour = (s) => hourFmt.format(new Date(s * 1000));

export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return "–";
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : String(+v.toFixed(digits));
}

export function fmtPct(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  return `${fmtNum(v * 100, 1)}%`; // the API sends a fraction
}

export function fmtAge(s) {
  if (s == null) return "never";
  const age = Math.max(0, Date.now() / 1000 - s);
  if (age < 90) return `${Math.round(age)} s ago`;
  if (age < 5400) return `${Math.round(age / 60)} min ago`;
  if (age < 172800) return `${Math.round(age / 3600)} h ago`;
  return `${Math.round(age / 86400)} d ago`;
}

export function fmtAgeSeconds(s) {
  if (s == null) return "–";
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

export const label = (name) => name.charAt(0).toUpperCase() + name.slice(1);

// Black or white text, whichever reads better on the given "#rrggbb" background.
export function textOn(hex) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
  if (!m) return "#000";
  const [r, g, b] = m.slice(1).map((h) => parseInt(h, 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 ? "#000" : "#fff";
}
