// Who may do what: the workspace's members and tokens (owners), workspaces and users (admins).

import { api, session, ws as wsPath } from "./api.js";
import { confirmDialog, fmt, h, notice, table } from "./ui.js";

const ROLES = ["viewer", "editor", "owner"];

function field(id, label, input) {
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

function form(label, fields, button, submit) {
  const said = h("div", { "aria-live": "polite" });
  const el = h("form", { class: "card rule-form", "aria-label": label, onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      said.replaceChildren(await submit());
      ev.target.reset();
    } catch (e) {
      said.replaceChildren(notice([e.message, ...e.problems].join("; ")));
    }
  } }, fields, h("div", { class: "row" }, h("button", { type: "submit" }, button)), said);
  return el;
}

const input = (id, more = {}) => h("input", { id, name: id, required: true, ...more });
const select = (id, options) => h("select", { id, name: id }, options.map((o) => h("option", { value: o }, o)));

export function access(ctx) {
  const members = h("div");
  const tokens = h("div");
  const admin = h("div");
  let seen = "";
  const memberForm = (() => {
    const user = input("m-user");
    const role = select("m-role", ROLES);
    return form("Set a member's role", [field("m-user", "User", user), field("m-role", "Role", role)], "Set role", async () => {
      await api("POST", wsPath(ctx.ws, "/members"), { user: user.value, role: role.value });
      seen = "";
      return notice(`${user.value} is now ${role.value} here.`, "info");
    });
  })();
  const tokenForm = (() => {
    const name = input("t-name");
    const role = select("t-role", ["dataplane", ...ROLES]);
    return form("Create a token", [field("t-name", "Name", name), field("t-role", "Role", role)], "Create token", async () => {
      const out = await api("POST", wsPath(ctx.ws, "/tokens"), { name: name.value, role: role.value });
      seen = "";
      return h("div", { class: "notice info" }, "Shown this once: ", h("code", { id: "new-token" }, out.token));
    });
  })();
  const adminForms = session.me.admin ? (() => {
    const wsName = input("w-name", { pattern: "[a-z0-9_.\\-]{1,63}" });
    const uName = input("u-name");
    const uPass = input("u-password", { type: "password", minlength: 8, autocomplete: "new-password" });
    const uRole = select("u-role", ROLES);
    return [
      form("Create a workspace", [field("w-name", "Workspace name", wsName)], "Create workspace", async () => {
        await api("POST", "/api/v1/workspaces", { name: wsName.value });
        seen = "";
        return notice(`Workspace ${wsName.value} created; reload to switch to it.`, "info");
      }),
      form(`Create a user of ${ctx.ws}`, [field("u-name", "User name", uName), field("u-password", "Password", uPass), field("u-role", "Role", uRole)],
        "Create user", async () => {
          await api("POST", "/api/v1/users", { name: uName.value, password: uPass.value, role: uRole.value, workspace: ctx.ws });
          seen = "";
          return notice(`${uName.value} created, ${uRole.value} of ${ctx.ws}.`, "info");
        }),
    ];
  })() : [];
  async function revoke(t) {
    if (!(await confirmDialog(`Revoke ${t.name || t.id}?`, `Whoever holds it (${t.role}) is refused from now on.`, "Revoke"))) return;
    await api("DELETE", wsPath(ctx.ws, `/tokens/${encodeURIComponent(t.id)}`));
    seen = "";
  }
  return {
    el: h("section", {}, h("h1", {}, `Access to ${ctx.ws}`),
      h("h2", {}, "Members"), members, memberForm,
      h("h2", {}, "Tokens"), tokens, tokenForm,
      session.me.admin ? [h("h2", {}, "Workspaces and users (admin)"), admin, adminForms] : null),
    async refresh() {
      const [m, t, w, u] = await Promise.all([
        api("GET", wsPath(ctx.ws, "/members")),
        api("GET", wsPath(ctx.ws, "/tokens")),
        session.me.admin ? api("GET", "/api/v1/workspaces") : [],
        session.me.admin ? api("GET", "/api/v1/users") : [],
      ]);
      const key = JSON.stringify([m, t, w, u]);
      if (key === seen) return; // unchanged: keep the buttons under the pointer
      seen = key;
      members.replaceChildren(table(
        [{ title: "User", cell: (r) => r.user }, { title: "Role", cell: (r) => r.role }],
        m, { label: "Members", empty: "No member yet (admins see every workspace)." }));
      tokens.replaceChildren(table(
        [
          { title: "Name", cell: (r) => r.name || "—" }, { title: "Id", cell: (r) => r.id },
          { title: "Role", cell: (r) => r.role }, { title: "By", cell: (r) => r.user },
          { title: "Created", cell: (r) => fmt.time(r.created) },
          { title: "State", cell: (r) => (r.revoked ? "revoked" : r.expires ? `expires ${fmt.time(r.expires)}` : "valid") },
          { title: "", cell: (r) => (r.revoked ? null : h("button", { class: "danger small", "aria-label": `Revoke ${r.name || r.id}`, onclick: () => revoke(r) }, "Revoke")) },
        ],
        t, { label: "Tokens", empty: "No workspace token." }));
      if (session.me.admin) {
        admin.replaceChildren(
          table([{ title: "Workspace", cell: (r) => r.name }, { title: "Created", cell: (r) => fmt.time(r.created) }, { title: "By", cell: (r) => r.created_by }], w, { label: "Workspaces" }),
          table([{ title: "User", cell: (r) => r.name }, { title: "Admin", cell: (r) => (r.admin ? "yes" : "") }], u, { label: "Users" }));
      }
    },
  };
}
