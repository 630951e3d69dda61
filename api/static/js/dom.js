// DOM helpers shared by every panel.

const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (sel) => document.querySelector(sel);

// An element ("svg:circle" for SVG) with attributes, "text", "on<event>" handlers and children.
export function el(tag, attrs = {}, ...children) {
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

// The page-wide problem line; an empty message hides it.
export function showStatus(message) {
  const node = $("#status");
  node.hidden = !message;
  node.textContent = message || "";
}
