// The JSON API client of the portal and the dashboard. A session is the
// HttpOnly mf_session cookie; unsafe methods echo the readable mf_csrf
// cookie in the X-CSRF-Token header, as the API requires.

export const PREFIX = '/api/v1';
const CSRF_HEADER = 'X-CSRF-Token';

let csrf = '';

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

// ApiError is an error answer of the API: {"error": {code, message, field}}.
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.code = code;
    this.field = field || '';
  }
  // unavailable is true when the server cannot do this right now (a store
  // is down, a feature is turned off): not the user's fault.
  get unavailable() { return this.code === 'unavailable'; }
}

export async function api(method, path, body, extra) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  const opts = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD') headers[CSRF_HEADER] = csrf || cookie('mf_csrf');
  let r;
  try {
    r = await fetch(PREFIX + path, opts);
  } catch (e) {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
  }
  if (r.status === 204) return null;
  const type = r.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await r.json().catch(() => null) : await r.text();
  if (!r.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(r.status, e.code || `http_${r.status}`, e.message || r.statusText, e.field);
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b, extra) => api('POST', p, b === undefined ? {} : b, extra);
export const put = (p, b) => api('PUT', p, b);
export const del = (p) => api('DELETE', p);

// items returns the list in a page ({items}) or a bare array.
export function items(data) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data.items)) return data.items;
  return [];
}

export async function signIn(phone, password) {
  const r = await post('/auth/sign-in', { phone, password });
  return r.challenge;
}

export async function verify(challenge, code) {
  const r = await post('/auth/verify', { challenge, code });
  csrf = r.csrf_token || cookie('mf_csrf');
  return r.user;
}

export async function signOut() {
  try { await post('/auth/sign-out'); } finally { csrf = ''; }
}

// me returns the signed-in user, or null when nobody is signed in.
export async function me() {
  try {
    return await get('/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}
