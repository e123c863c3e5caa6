// The rules document's history (diffs, rollback) and its YAML view and editor.

import { api, ws as wsPath } from "./api.js";
import { currentRules, diffView } from "./governance.js";
import { confirmDialog, fmt, h, link, notice, table } from "./ui.js";

export function history(ctx) {
  const body = h("div");
  const shown = h("div", { id: "version-diff", "aria-live": "polite" });
  let seen = null;
  async function showDiff(a, b) {
    const out = await api("GET", wsPath(ctx.ws, `/rules/diff?from=${a}&to=${b}`));
    shown.replaceChildren(h("h2", {}, `${a} → ${b}`), diffView(out.diff));
  }
  async function rollback(v, latest) {
    if (!(await confirmDialog(`Roll back to ${v}?`, `A new version after ${latest} with ${v}'s document is applied and pushed.`, "Roll back"))) return;
    const entry = await api("POST", wsPath(ctx.ws, "/rules/rollback"), { version: v });
    shown.replaceChildren(notice(`Rolled back: ${entry.version} has ${v}'s document.`, "info"));
  }
  return {
    el: h("section", {}, h("h1", {}, "Rules history"), h("p", {}, link(`#/w/${ctx.ws}/governance`, "← governance")), body, shown),
    async refresh() {
      const rows = (await api("GET", wsPath(ctx.ws, "/rules/history"))).reverse();
      const key = rows.map((r) => r.version).join();
      if (key === seen) return; // nothing new: keep the buttons under the user's pointer
      seen = key;
      const latest = rows.length ? rows[0].version : null;
      body.replaceChildren(table(
        [
          { title: "Version", cell: (r) => r.version },
          { title: "When", cell: (r) => fmt.time(r.time) },
          { title: "Author", cell: (r) => r.author },
          { title: "Message", cell: (r) => [r.message || "—", r.rollback_of ? ` (rollback to ${r.rollback_of})` : "", r.shadow ? " (shadow)" : ""] },
          { title: "", cell: (r) => {
            const n = Number(r.version.slice(1));
            return h("div", { class: "row" },
              n > 1 ? h("button", { class: "secondary small", "aria-label": `Diff v${n - 1} to ${r.version}`, onclick: () => showDiff(`v${n - 1}`, r.version) }, "Diff") : null,
              ctx.edit && r.version !== latest ? h("button", { class: "danger small", "aria-label": `Roll back to ${r.version}`, onclick: () => rollback(r.version, latest) }, "Roll back") : null);
          } },
        ],
        rows, { label: "Versions", empty: "No rules applied yet." }));
    },
  };
}

export function yamlView(ctx) {
  const area = h("textarea", { id: "yaml-text", rows: 24, spellcheck: false, readonly: !ctx.edit, class: "code" });
  const out = h("div", { "aria-live": "polite" });
  const head = h("p", { class: "muted" });
  let loaded = false;
  async function review() {
    const res = await api("POST", wsPath(ctx.ws, "/rules/preview"), { document: area.value });
    if (!res.valid) {
      out.replaceChildren(h("ul", { class: "notice error", role: "alert" }, res.problems.map((p) => h("li", {}, p))));
      return;
    }
    out.replaceChildren(h("h2", {}, `Diff against ${res.base || "no rules"}`), diffView(res.diff),
      h("button", { onclick: async () => {
        const entry = await api("POST", wsPath(ctx.ws, "/rules"), { document: area.value, message: "edited as YAML" });
        out.replaceChildren(notice(`Applied as ${entry.version}.`, "info"));
        loaded = false;
      } }, "Apply"));
  }
  return {
    el: h("section", {}, h("h1", {}, "The rules document"), h("p", {}, link(`#/w/${ctx.ws}/governance`, "← governance")), head,
      h("label", { for: "yaml-text" }, "YAML"), area,
      ctx.edit ? h("div", { class: "row" }, h("button", { onclick: review }, "Review and apply")) : null, out),
    async refresh() {
      if (loaded) return;
      const cur = await currentRules(ctx);
      const res = await api("POST", wsPath(ctx.ws, "/rules/preview"), { document: cur.document || {} });
      area.value = res.yaml;
      head.textContent = `In force: ${cur.version || "no rules yet"}`;
      loaded = true;
    },
  };
}
