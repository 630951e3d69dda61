// The device panel: the selected device's status, latest values and a chart of one field.

import { api } from "./api.js";
import { fieldsOf, unitOf } from "./catalog.js";
import { renderChart, renderChartMessage } from "./charts.js";
import { $, el } from "./dom.js";
import { fmtAge, fmtNum, fmtTime, label } from "./format.js";
import { renderDevices } from "./map.js";
import { state, STATUS_LABEL } from "./state.js";

export function selectDevice(id) {
  const d = state.devices.get(id);
  if (!d) return;
  state.selected = id;
  const fields = fieldsOf(d.kind);
  const names = fields.map((f) => f.name);
  if (!names.includes(state.field)) state.field = names[0] || null;
  const select = $("#field-select");
  select.replaceChildren(...fields.map((f) => el("option", {
    value: f.name, text: f.name, title: f.description, "data-unit": f.unit, selected: f.name === state.field,
  })));
  $("#field-label").hidden = fields.length === 0;
  renderDevices();
  refreshDevice(true);
}

// The chart's field was changed in the selector.
export function selectField(name) {
  state.field = name;
  refreshDevice(true);
}

export async function refreshDevice(withChart) {
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
    el("dt", { text: k }), el("dd", { text: `${fmtNum(v, 2)}${unitOf(k) && typeof v === "number" ? ` ${unitOf(k)}` : ""}` }),
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
