// What the page knows, shared by its panels.

export const REFRESH_MS = 5000;
export const CHART_REFRESH_MS = 30000;
export const STATUSES = ["ok", "anomaly", "offline", "unknown"];
export const STATUS_LABEL = { ok: "OK", anomaly: "Anomaly", offline: "Offline", unknown: "Unknown" };

export const state = {
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
