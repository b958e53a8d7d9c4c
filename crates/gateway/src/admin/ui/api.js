// The admin API from the page: the bearer token from sessionStorage (never
// a URL or a cookie), JSON in and out, errors as ApiError.

const KEY = 'shanhai.admin.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A refused or failed request: the HTTP status and the JSON error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.kind = body?.error || 'http_error';
  }
}

/** Calls the admin API; resolves to the parsed JSON body. */
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const sent = { ...headers };
  const bearer = token.get();
  if (bearer) sent.Authorization = `Bearer ${bearer}`;
  let response;
  try {
    response = await fetch(path, { method, body, headers: sent, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: 'unreachable', message: `cannot reach the admin API (${err.message})` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
