// Pantau operations dashboard: plain JavaScript modules, no build step, no network beyond this
// origin. This module wires the panels together: token, start/stop and the periodic refresh.

import { loadAlerts, refreshAlerts } from "./alerts.js";
import { api, currentToken, forgetToken, onUnauthorized, readToken, setToken, storeToken } from "./api.js";
import { loadCatalog, loadSite, loaded } from "./catalog.js";
import { selectDevice, refreshDevice, selectField } from "./device.js";
import { $, showStatus } from "./dom.js";
import { closeFeed, connectFeed, loadAnomalies } from "./feed.js";
import { fmtTime } from "./format.js";
import { renderDimensions, renderRegency } from "./indicators.js";
import { buildMap, renderDevices, renderDistrictSummary, selectScope, zoomTo } from "./map.js";
import { CHART_REFRESH_MS, REFRESH_MS, state } from "./state.js";
import { refreshTrends } from "./trends.js";

// ---------- token ----------

function askForToken(message) {
  stop();
  setToken(null);
  $("#dashboard").hidden = true;
  showStatus("");
  $("#token-form").hidden = false;
  $("#token-message").textContent = message || "";
  $("#token-input").focus();
}

function setupToken() {
  onUnauthorized(askForToken);
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    storeToken(value);
    $("#token-input").value = "";
    $("#token-form").hidden = true;
    start(value);
  });
  $("#change-token").addEventListener("click", () => {
    forgetToken();
    askForToken("");
  });
}

// ---------- catalog and site settings ----------

// The catalog and the site's settings (loaded once): why they could not be loaded, if not.
async function loadMeta() {
  if (loaded()) return [];
  const results = await Promise.allSettled([loadCatalog(), loadSite()]);
  return results.filter((r) => r.status === "rejected")
    .map((r) => `the sensor catalog or site settings could not be loaded: ${r.reason.message}`);
}

// ---------- polling ----------

async function refresh() {
  const started = Date.now();
  const metaProblems = await loadMeta(); // until loaded, tried again at each refresh
  const [devices, regency, districts, dimensions] = await Promise.allSettled([
    api("/devices"), api("/indicators/regency"), api("/indicators/districts"), api("/dimensions"),
  ]);
  if (!currentToken()) return; // the token was rejected meanwhile
  const problems = [devices, regency, districts, dimensions].filter((r) => r.status === "rejected").map((r) => r.reason.message);
  const all = [...metaProblems, ...problems];
  showStatus(all.length ? `Some data could not be loaded: ${[...new Set(all)].join("; ")}` : "");
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
  refreshAlerts();
  refreshTrends();
  if (problems.length < 4) $("#last-refresh").textContent = fmtTime(Date.now() / 1000);
}

function stop() {
  clearInterval(state.timer);
  state.timer = null;
  closeFeed();
}

async function start(token) {
  stop();
  setToken(token);
  $("#token-form").hidden = true;
  $("#dashboard").hidden = false;
  zoomTo(state.scope); // the map has a size only once the dashboard is shown
  // Units and times need the catalog and the site's settings before anything is drawn.
  await loadMeta(); // a failure shows at the first refresh, which tries again
  if (currentToken() !== token) return; // refused, or another token was entered meanwhile
  refresh().then(openFromAddress); // a device can be opened once the device list is known
  loadAnomalies();
  loadAlerts();
  connectFeed();
  state.timer = setInterval(refresh, REFRESH_MS);
}

// Notification links open a device (#device=ID) or a kecamatan (#district=NAME).
function openFromAddress() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const district = hash.get("district");
  const device = hash.get("device");
  if (district && /^[a-z0-9_-]{1,64}$/.test(district)) selectScope(district);
  if (device && /^[a-z0-9_-]{1,64}$/.test(device)) selectDevice(device);
}

async function main() {
  setupToken();
  $("#field-select").addEventListener("change", (e) => selectField(e.target.value));
  try {
    const geo = await fetch("/static/districts.json").then((r) => r.json());
    buildMap(geo, { onDevice: selectDevice });
  } catch (err) {
    showStatus("The district schematic (districts.json) could not be loaded.");
  }
  const token = readToken();
  if (token) start(token);
  else askForToken("");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
