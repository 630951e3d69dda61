// The Pantau API client and the bearer token it sends.

export const API = "/api/v1";
const TOKEN_KEY = "pantau.token";

let token = null;
let unauthorized = () => {};

export const currentToken = () => token;
export function setToken(value) { token = value; }

// What to do when the API answers 401 (the token is unknown or revoked): called with the reason.
export function onUnauthorized(handler) { unauthorized = handler; }

export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem || {};
    super(`${p.title || "Error"} (${status})${p.detail ? `: ${p.detail}` : ""}`);
    this.status = status;
    this.problem = p;
  }
}

// GET (or `options.method`) an API path; the JSON answer, or an ApiError from its problem details.
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
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
    if (response.status === 401) unauthorized(error.message);
    throw error;
  }
  return body;
}

// The token from the address bar (#token=..., moved to localStorage) or from localStorage.
export function readToken() {
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

export const storeToken = (value) => localStorage.setItem(TOKEN_KEY, value);
export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);
