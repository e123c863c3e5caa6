// The console's one way to the control plane: the same JSON API and tokens as `sofamesh ctl`.

const KEY = "sofamesh.token";
const listeners = new Set();

export const session = {
  token: sessionStorage.getItem(KEY),
  me: null, // {user, admin, roles}
  online: true,
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

export function onChange(fn) {
  listeners.add(fn);
}

function setOnline(value) {
  if (session.online !== value) {
    session.online = value;
    listeners.forEach((fn) => fn());
  }
}

export function setToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    setOnline(false);
    throw new ApiError(0, { error: "the control plane cannot be reached" });
  }
  setOnline(true);
  const data = await resp.json().catch(() => null);
  if (resp.status === 401 && session.token) {
    setToken(null);
    session.me = null;
    location.hash = "#/login";
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const ws = (name, rest = "") => `/api/v1/workspaces/${encodeURIComponent(name)}${rest}`;

export function role(workspace) {
  const me = session.me;
  if (!me) return null;
  return me.admin ? "owner" : me.roles[workspace] || null;
}

export function canEdit(workspace) {
  return ["owner", "editor"].includes(role(workspace));
}
