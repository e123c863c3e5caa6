// The shell: login, the workspace switcher, a hash router, and the live refresh (every 2 s).

import { api, onChange, session, setToken, role } from "./api.js";
import { h, notice } from "./ui.js";
import { overview } from "./overview.js";
import { services, service } from "./services.js";
import { sidecars, sidecar } from "./sidecars.js";
import { governance } from "./governance.js";
import { history, yamlView } from "./history.js";
import { topology } from "./topology.js";
import { access } from "./access.js";

const REFRESH_MS = 2000;
const PAGES = {
  overview: { title: "Overview", make: overview },
  services: { title: "Services", make: (c) => (c.args[0] ? service(c) : services(c)) },
  topology: { title: "Topology", make: topology },
  sidecars: { title: "Sidecars", make: (c) => (c.args[0] ? sidecar(c) : sidecars(c)) },
  governance: { title: "Governance", make: governance },
  yaml: { title: "Rules YAML", make: yamlView, nav: false },
  history: { title: "History", make: history, nav: false },
  access: { title: "Access", make: access, owner: true },
};

const root = document.getElementById("app");
let current = null; // {page, timer}
let workspaces = [];

function parse() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] !== "w") return { name: parts[0] || "" };
  return { ws: parts[1], name: parts[2] || "overview", args: parts.slice(3) };
}

async function loadMe() {
  session.me = await api("GET", "/api/v1/whoami");
  workspaces = await api("GET", "/api/v1/workspaces");
}

function loginPage(error) {
  const user = h("input", { id: "login-user", name: "user", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password" });
  const token = h("input", { id: "login-token", name: "token", autocomplete: "off" });
  const msg = h("div", { "aria-live": "polite" }, error ? notice(error) : null);
  async function submit(ev) {
    ev.preventDefault();
    msg.replaceChildren();
    try {
      if (token.value.trim()) setToken(token.value.trim());
      else setToken((await api("POST", "/api/v1/login", { user: user.value, password: pass.value })).token);
      await loadMe();
      const target = workspaces.length ? `#/w/${encodeURIComponent(workspaces[0].name)}/overview` : "#/none";
      if (location.hash === target) route();
      else location.hash = target; // routed by the hashchange
    } catch (e) {
      setToken(null);
      msg.replaceChildren(notice(e.message));
    }
  }
  user.required = false;
  return h(
    "main",
    { class: "login" },
    h(
      "form",
      { class: "card", onsubmit: submit, "aria-labelledby": "login-title" },
      h("h1", { id: "login-title" }, "sofamesh console"),
      h("label", { for: "login-user" }, "User"),
      user,
      h("label", { for: "login-password" }, "Password"),
      pass,
      h("details", {}, h("summary", {}, "Or use an API token"), h("label", { for: "login-token" }, "Token"), token),
      msg,
      h("button", { type: "submit" }, "Log in"),
    ),
  );
}

async function logout() {
  await api("POST", "/api/v1/logout").catch(() => {}); // revoked at once; forgotten here anyway
  setToken(null);
  session.me = null;
  location.hash = "#/login";
}

function shell(ws, name) {
  const select = h(
    "select",
    {
      id: "ws-select",
      "aria-label": "Workspace",
      onchange: (e) => (location.hash = `#/w/${encodeURIComponent(e.target.value)}/${name}`),
    },
    workspaces.map((w) => h("option", { value: w.name, selected: w.name === ws }, w.name)),
  );
  const nav = Object.entries(PAGES)
    .filter(([, p]) => p.nav !== false && (!p.owner || role(ws) === "owner"))
    .map(([key, p]) =>
      h("a", { href: `#/w/${encodeURIComponent(ws)}/${key}`, "aria-current": key === name ? "page" : null }, p.title),
    );
  const conn = h("span", { id: "conn", role: "status", class: session.online ? "ok" : "lost" },
    session.online ? "live" : "connection lost");
  const skip = (ev) => {
    ev.preventDefault(); // the hash is the router's: move the focus instead
    document.getElementById("main").focus();
  };
  return h(
    "header",
    { class: "top" },
    h("a", { class: "skip", href: "#main", onclick: skip }, "Skip to content"),
    h("a", { class: "brand", href: `#/w/${encodeURIComponent(ws)}/overview` }, "sofamesh"),
    h("nav", { "aria-label": "Pages" }, nav),
    h("div", { class: "who" }, select, conn,
      h("span", { class: "muted", id: "whoami" }, `${session.me.user} · ${role(ws)}`),
      h("button", { class: "secondary", onclick: logout }, "Log out")),
  );
}

function stop() {
  if (current) clearTimeout(current.timer);
  current = null;
}

async function tick(token) {
  if (!current || current.token !== token) return;
  try {
    if (!document.hidden) await current.page.refresh();
    current.error.replaceChildren();
    // Busy until the page's first data is drawn (assistive tech, tests and the benchmark wait on it).
    if (current && current.token === token) current.main.removeAttribute("aria-busy");
  } catch (e) {
    if (current && current.token === token) current.error.replaceChildren(notice(e.message));
  }
  if (current && current.token === token && current.page.live !== false) {
    current.timer = setTimeout(() => tick(token), REFRESH_MS);
  }
}

export async function route() {
  stop();
  const where = parse();
  if (!session.token) {
    root.replaceChildren(loginPage());
    return;
  }
  if (!session.me) {
    try {
      await loadMe();
    } catch (e) {
      root.replaceChildren(loginPage(e.status ? e.message : null));
      return;
    }
  }
  const known = workspaces.map((w) => w.name);
  const allowed = PAGES[where.name] && (!PAGES[where.name].owner || role(where.ws) === "owner");
  if (!where.ws || !known.includes(where.ws) || !allowed) {
    if (!known.length) {
      root.replaceChildren(h("main", { class: "pad" }, notice("No workspace is shared with you.", "info")));
      return;
    }
    location.hash = `#/w/${encodeURIComponent(known.includes(where.ws) ? where.ws : known[0])}/overview`;
    return;
  }
  const spec = PAGES[where.name];
  const page = spec.make({ ws: where.ws, args: where.args, edit: ["owner", "editor"].includes(role(where.ws)) });
  const error = h("div", { "aria-live": "polite" });
  const main = h("main", { id: "main", tabindex: "-1", "aria-busy": "true" }, error, page.el);
  root.replaceChildren(shell(where.ws, where.name), main);
  document.title = `${spec.title} · ${where.ws} · sofamesh`;
  current = { page, error, main, token: Symbol(), timer: 0 };
  tick(current.token);
}

onChange(() => {
  const conn = document.getElementById("conn");
  if (!conn) return;
  conn.className = session.online ? "ok" : "lost";
  conn.textContent = session.online ? "live" : "connection lost";
});
window.addEventListener("hashchange", route);
route();
