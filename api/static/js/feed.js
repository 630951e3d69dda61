// The anomaly feed: the latest anomalies from the API, kept current by the live feed (SSE).

import { applyAlertEvent, loadAlerts } from "./alerts.js";
import { API, api, currentToken } from "./api.js";
import { refreshDevice, selectDevice } from "./device.js";
import { $, el, showStatus } from "./dom.js";
import { fmtDateTime, fmtNum, label } from "./format.js";
import { renderDevices, selectScope } from "./map.js";
import { state } from "./state.js";

const FEED_MAX = 100;

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
  if (a.kept_out) {
    li.append(el("div", { class: "muted kept-out", text: `kept out of ${a.kept_out.split(",").map((s) => s.toUpperCase()).join(", ")}` }));
  }
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

export function setFeedState(s) {
  const node = $("#feed-state");
  node.textContent = s;
  node.dataset.state = s;
}

export function connectFeed() {
  if (state.source) state.source.close();
  const types = "anomaly,ack,indicator,alert";
  const query = new URLSearchParams({ types, access_token: currentToken() });
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

export function closeFeed() {
  if (state.source) { state.source.close(); state.source = null; }
  setFeedState("closed");
}

function applyFrame(frame) {
  if (frame.dropped > 0) {
    state.dropped += frame.dropped;
    const note = $("#feed-dropped");
    note.hidden = false;
    note.textContent = `${state.dropped} live events dropped (reloaded from the API)`;
    loadAnomalies(); // catch up on what the feed lost
    loadAlerts();
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
    } else if (ev.type === "alert") {
      applyAlertEvent(ev);
    } else if (ev.type === "indicator" && ev.device_id === state.selected) {
      refreshDevice(false);
    }
  }
  if (changed) { renderFeed(); renderDevices(); }
}

export async function loadAnomalies() {
  try {
    const body = await api("/anomalies?limit=50");
    for (const a of body.anomalies || []) upsertAnomaly(a);
    renderFeed();
  } catch (err) {
    showStatus(err.message);
  }
}
