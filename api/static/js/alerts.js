// The alerts panel: open alert episodes (GET /api/v1/alerts?state=open), kept current by the live
// feed's "alert" events (open, update, escalate, close, ack) and re-read every ALERTS_RESYNC_MS.

import { api } from "./api.js";
import { selectDevice } from "./device.js";
import { $, el } from "./dom.js";
import { fmtDateTime, fmtNum, label } from "./format.js";
import { selectScope } from "./map.js";

export const ALERTS_RESYNC_MS = 30000;
const ALERTS_MAX = 100;
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
// The dashboard's words (its language is English; kecamatan and level names stay Indonesian).
const WORDS = {
  none: "No open alerts.",
  since: "since",
  level: "escalation level",
  ack: "Acknowledge",
  acked: "acknowledged by",
  note: "note (optional)",
  peak: "peak",
  unavailable: "Alerts could not be loaded",
};

// What the panel knows: open episodes by id, and when they were last read from the API.
const panel = { episodes: new Map(), loadedAt: 0 };

function subjectText(a) {
  const where = a.district ? `Kec. ${label(a.district)}` : "whole regency";
  return a.device_id ? where : `${where} (area)`;
}

function alertItem(a) {
  const li = el("li", {
    "data-alert-id": a.id, "data-severity": a.severity, "data-state": a.state, "data-level": String(a.level || 0),
    "data-ack": JSON.stringify(a.acknowledged), "data-device-id": a.device_id || null, "data-district": a.district || null,
    class: `sev-${a.severity}${a.acknowledged ? " acked" : ""}`,
  });
  const head = el("div", { class: "feed-head" },
    el("span", {}, el("span", { class: `sev sev-${a.severity}`, text: a.severity }), " ", el("strong", { class: "alert-detail", text: a.detail || a.rule })),
    el("time", { title: `${WORDS.since} ${fmtDateTime(a.opened_at)}`, text: `${WORDS.since} ${fmtDateTime(a.started_at ?? a.opened_at)}` }));
  const where = el("div", { class: "alert-where" });
  if (a.device_id) {
    where.append(el("button", { type: "button", class: "link", text: a.device_id, onclick: () => { selectScope(a.district); selectDevice(a.device_id); } }), " · ");
  }
  where.append(subjectText(a), el("span", { class: "muted", text: ` · ${a.rule}` }));
  const facts = [];
  if (a.value != null) facts.push(`value ${fmtNum(a.value, 2)}`);
  if (a.peak != null && a.peak !== a.value) facts.push(`${WORDS.peak} ${fmtNum(a.peak, 2)}`);
  if (a.level > 0) facts.push(`${WORDS.level} ${a.level}${a.escalated_at ? ` (${fmtDateTime(a.escalated_at)})` : ""}`);
  li.append(head, where);
  if (facts.length) li.append(el("div", { class: `muted${a.level > 0 ? " escalated" : ""}`, text: facts.join(" · ") }));
  if (a.acknowledged) {
    const ack = a.acknowledged;
    li.append(el("div", { class: "ack", text: `✓ ${WORDS.acked} ${ack.by} ${fmtDateTime(ack.at)}${ack.note ? `: ${ack.note}` : ""}` }));
  } else {
    li.append(ackForm(a));
  }
  return li;
}

function ackForm(a) {
  const note = el("input", { type: "text", placeholder: WORDS.note, "aria-label": "Acknowledgement note", maxlength: "500" });
  const problem = el("p", { class: "problem", role: "alert" });
  const form = el("form", { class: "ack-form" }, note, el("button", { type: "submit", text: WORDS.ack }), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const submit = form.querySelector("button");
    submit.disabled = true;
    try {
      const updated = await api(`/alerts/${encodeURIComponent(a.id)}/ack`, { method: "POST", body: JSON.stringify({ note: note.value }) });
      upsert(updated && updated.id ? updated : { ...a, acknowledged: { by: "you", at: Date.now() / 1000, note: note.value } });
      renderAlerts();
    } catch (err) {
      problem.textContent = err.message; // e.g. 403: this token lacks the operate scope
      submit.disabled = false;
    }
  });
  return form;
}

function upsert(a) {
  if (a == null || !a.id) return;
  if (a.state === "closed" || a.closed_at != null) {
    panel.episodes.delete(a.id); // the panel lists open episodes only
    return;
  }
  panel.episodes.set(a.id, { ...panel.episodes.get(a.id), ...a });
}

export function renderAlerts() {
  const list = $("#alert-list");
  const items = [...panel.episodes.values()]
    .sort((a, b) => (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3) || b.opened_at - a.opened_at)
    .slice(0, ALERTS_MAX);
  const existing = new Map([...list.children].map((li) => [li.dataset.alertId, li]));
  const nodes = items.map((a) => {
    const old = existing.get(a.id);
    const stamp = JSON.stringify([a.acknowledged, a.level, a.value, a.peak, a.detail, a.severity]);
    // Rebuild only what changed: an operator typing a note keeps the input.
    if (old && old.dataset.stamp === stamp) return old;
    const li = alertItem(a);
    li.dataset.stamp = stamp;
    return li;
  });
  list.replaceChildren(...(nodes.length ? nodes : [el("li", { class: "muted empty", text: WORDS.none })]));
  const count = $("#alert-count");
  count.textContent = items.length ? String(items.length) : "";
  count.hidden = items.length === 0;
  list.dataset.loaded = "true";
}

// One live feed event of type "alert": an episode with its event name.
export function applyAlertEvent(ev) {
  const { type, event, ...episode } = ev;
  if (event === "close") episode.state = "closed";
  upsert(episode);
  renderAlerts();
}

// Re-read the open episodes: the list is replaced, so episodes closed meanwhile go.
export async function loadAlerts() {
  panel.loadedAt = Date.now();
  const problem = $("#alert-problem");
  try {
    const body = await api("/alerts?state=open&limit=200");
    panel.episodes = new Map();
    for (const a of body.alerts || []) upsert(a);
    problem.textContent = "";
    renderAlerts();
  } catch (err) {
    // 404: an API without alerts; 503: alert rules are off. The rest of the page still works.
    problem.textContent = `${WORDS.unavailable}: ${err.message}`;
    $("#alert-list").dataset.loaded = "error";
  }
}

// Called at every dashboard refresh: re-read the list now and then, in case feed events were lost.
export function refreshAlerts() {
  if (Date.now() - panel.loadedAt > ALERTS_RESYNC_MS) loadAlerts();
}
