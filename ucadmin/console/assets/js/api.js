// The admin REST API (`/api/v1/admin`, docs/api.md) as the console uses it. The session token
// of `POST /api/v1/admin/login` (an admin-console token: it takes no seat) is kept in
// sessionStorage, so a reload stays signed in and a closed tab is signed out. Behind ucweb the
// token names the server that issued it (`<server id>~<token>`); the console never looks
// inside it.

const API = '/api/v1';
const KEY = 'switchboard.admin.session';
const LIMIT_MS = 20000;

/** A failed request: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || `http_${status}`;
    this.body = body;
  }
}

export const session = {
  /** @type {{token: string, user: string, display_name: string, server: string} | null} */
  current: JSON.parse(sessionStorage.getItem(KEY) || 'null'),
  save(value) {
    this.current = value;
    if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
    else sessionStorage.removeItem(KEY);
  },
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

/**
 * One request; resolves to `{ data, etag }`.
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {unknown} [body]
 * @param {{ ifMatch?: number }} [options]
 */
export async function call(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  if (session.current) headers.Authorization = `Bearer ${session.current.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (options.ifMatch !== undefined) headers['If-Match'] = `"${options.ifMatch}"`;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), LIMIT_MS);
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctrl.signal });
  } catch {
    throw new ApiError(0, { error: 'server_unavailable', message: 'The server cannot be reached.' });
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { /* no body */ }
  }
  if (!res.ok) {
    if (res.status === 401 && session.current && path !== '/admin/login') onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return { data, etag: res.headers.get('ETag') };
}

const get = async (path) => (await call('GET', path)).data;
const enc = encodeURIComponent;

export const login = async (user, password) => (await call('POST', '/admin/login', { user, password })).data;
export const logout = () => call('POST', '/logout');
export const overview = () => get('/admin/overview');
export const users = (query) => get(`/admin/users${query ? `?q=${enc(query)}` : ''}`);
export const user = (id) => get(`/admin/users/${enc(id)}`);
export const createUser = async (body) => (await call('POST', '/admin/users', body)).data;
/** A change made from `version`: `409 conflict` (with `body.current`) if someone was faster. */
export const updateUser = async (id, body, version) =>
  (await call('PATCH', `/admin/users/${enc(id)}`, body, { ifMatch: version })).data;
export const deleteUser = (id, version) => call('DELETE', `/admin/users/${enc(id)}`, undefined, { ifMatch: version });
export const resetPassword = async (id) => (await call('POST', `/admin/users/${enc(id)}/password`, {})).data;
export const groups = () => get('/admin/groups');
export const createGroup = async (body) => (await call('POST', '/admin/groups', body)).data;
export const addMember = async (group, userId) =>
  (await call('POST', `/admin/groups/${enc(group)}/members`, { user: userId })).data;
export const removeMember = async (group, userId) =>
  (await call('DELETE', `/admin/groups/${enc(group)}/members/${enc(userId)}`)).data;
/**
 * The audit filter as query parameters (empty fields left out).
 * @param {{ since_ms?: number, until_ms?: number, actor?: string, action?: string }} filter
 */
function auditQuery(filter) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filter)) {
    if (value !== undefined && value !== null && value !== '') query.set(name, String(value));
  }
  return query;
}
/** The newest `limit` entries `filter` lets through, newest first. */
export const audit = (filter, limit) => {
  const query = auditQuery(filter);
  query.set('limit', String(limit));
  return get(`/admin/audit?${query}`);
};
export const settings = () => get('/admin/settings');
/** Sets `key` in `scope` from `version` (0: not set there yet); `409 conflict` if someone was faster. */
export const putSetting = async (key, scope, value, version) =>
  (await call('PUT', `/admin/settings/${enc(key)}`, { scope, value }, { ifMatch: version })).data;
export const deleteSetting = (key, scope, version) =>
  call('DELETE', `/admin/settings/${enc(key)}?scope=${enc(scope)}`, undefined, { ifMatch: version });

/**
 * `POST /admin/import`: the plan of an import file (CSV or JSON, by `contentType`); applied
 * only with `dryRun` false, and then all or nothing.
 * @param {string | Blob} file
 * @param {string} contentType
 * @param {boolean} dryRun
 */
export async function importFile(file, contentType, dryRun) {
  const headers = { Accept: 'application/json', 'Content-Type': contentType };
  if (session.current) headers.Authorization = `Bearer ${session.current.token}`;
  let res;
  try {
    res = await fetch(`${API}/admin/import?dry_run=${dryRun}`, { method: 'POST', headers, body: file });
  } catch {
    throw new ApiError(0, { error: 'server_unavailable', message: 'The server cannot be reached.' });
  }
  let data = null;
  try { data = await res.json(); } catch { /* no body */ }
  if (!res.ok) {
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return data;
}

export const directoryStatus = () => get('/admin/directory');

/** A file the server writes (an export), fetched with the token; the Response. */
async function fetchFile(path) {
  const headers = {};
  if (session.current) headers.Authorization = `Bearer ${session.current.token}`;
  const res = await fetch(`${API}${path}`, { headers });
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch { /* no body */ }
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return res;
}

/** `GET /admin/export` as a Blob: `format` csv or json. @param {'csv' | 'json'} format */
export async function exportFile(format) {
  return (await fetchFile(`/admin/export?format=${format}`)).blob();
}

/**
 * The audit log as a file (`format` csv or json): every entry `filter` lets through, at most
 * 100,000; `truncated` when more matched (the oldest were left out).
 * @param {'csv' | 'json'} format
 */
export async function auditExport(format, filter) {
  const query = auditQuery(filter);
  query.set('format', format);
  const res = await fetchFile(`/admin/audit?${query}`);
  return { blob: await res.blob(), truncated: res.headers.get('x-audit-truncated') === 'true' };
}
