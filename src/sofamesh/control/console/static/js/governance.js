// Governance: per rule kind a list and a form editor (problems at their field), the diff
// against the version in force before applying, shadow mode and the "Enforce" switch.

import { api, ApiError, ws as wsPath } from "./api.js";
import { ENFORCING, KINDS, decisionNames, get, inShadow, ruleName, rulesOf, set, shadowPaths, withRule } from "./rulesdoc.js";
import { badge, confirmDialog, h, link, notice, table } from "./ui.js";

const base = (ctx) => `#/w/${encodeURIComponent(ctx.ws)}/governance`;

export async function currentRules(ctx) {
  try {
    return await api("GET", wsPath(ctx.ws, "/rules"));
  } catch (e) {
    if (e.status === 404) return { version: null, document: {} };
    throw e;
  }
}

function tabs(ctx, active) {
  return h("nav", { class: "tabs", "aria-label": "Rule kinds" },
    link(base(ctx), "All kinds"),
    Object.entries(KINDS).map(([k, spec]) => h("a", { href: `${base(ctx)}/${k}`, "aria-current": k === active ? "page" : null }, spec.title)),
    link(`#/w/${encodeURIComponent(ctx.ws)}/yaml`, "YAML"),
    link(`#/w/${encodeURIComponent(ctx.ws)}/history`, "History"));
}

function totals(decisions, kind, rule, i) {
  const names = decisionNames(kind, rule, i);
  const mine = decisions.filter((d) => d.kind === kind && names.includes(d.name));
  const sum = (k) => mine.reduce((a, d) => a + (Number(d[k]) || 0), 0);
  return { rows: mine, shadowed: sum("shadowed"), rejected: sum("rejected"), opened: sum("opened") };
}

// A kind without a shadow mode shows a dash where the shadow counts would be.
const shadowCell = (kind, value) => (KINDS[kind].noShadow ? "—" : value);

export function governance(ctx) {
  const [kind, index] = ctx.args;
  if (kind && KINDS[kind] && index !== undefined) return rulePage(ctx, kind, index);
  const body = h("div");
  const el = h("section", {}, h("h1", {}, "Governance"), tabs(ctx, kind), body);
  return {
    el,
    async refresh() {
      const [cur, decisions] = await Promise.all([currentRules(ctx), api("GET", wsPath(ctx.ws, "/rules/decisions/dataplanes"))]);
      const doc = cur.document || {};
      const head = h("p", { class: "muted" }, `In force: ${cur.version || "no rules yet"}`);
      if (!kind || !KINDS[kind]) {
        body.replaceChildren(head, table(
          [
            { title: "Kind", cell: ([k]) => link(`${base(ctx)}/${k}`, KINDS[k].title) },
            { title: "Rules", cell: ([k]) => rulesOf(doc, k).length },
            { title: "In shadow", cell: ([k]) => shadowCell(k, rulesOf(doc, k).filter(inShadow).length) },
          ],
          Object.entries(KINDS), { label: "Rule kinds" }));
        return;
      }
      const rules = rulesOf(doc, kind);
      body.replaceChildren(
        head,
        KINDS[kind].noShadow ? h("p", { class: "notice info no-shadow" }, KINDS[kind].noShadow) : null,
        ctx.edit && !(KINDS[kind].single && rules.length)
          ? h("p", {}, h("a", { class: "button", href: `${base(ctx)}/${kind}/${rules.length}` }, `New ${KINDS[kind].title.toLowerCase()} rule`))
          : null,
        table(
          [
            { title: "Rule", cell: (r) => link(`${base(ctx)}/${kind}/${r.i}`, ruleName(kind, r.rule, r.i)) },
            { title: "Service", cell: (r) => r.rule.service || "—" },
            { title: "Method", cell: (r) => r.rule.method || "—" },
            { title: "Mode", cell: (r) => (inShadow(r.rule) ? badge("shadow") : KINDS[kind].noShadow ? "in force" : "enforced") },
            { title: KINDS[kind].would || "Would reject", cell: (r) => shadowCell(kind, totals(decisions, kind, r.rule, r.i).shadowed) },
            { title: "Rejected", cell: (r) => shadowCell(kind, totals(decisions, kind, r.rule, r.i).rejected) },
          ],
          rules.map((rule, i) => ({ rule, i })),
          { label: KINDS[kind].title, empty: `No ${KINDS[kind].title.toLowerCase()} rule.` },
        ),
      );
    },
  };
}

function fieldInput(ctx, f, value) {
  const id = `f-${f.key.replace(/\./g, "-")}`;
  const common = { id, name: f.key, disabled: !ctx.edit, "aria-describedby": `${id}-err` };
  let input;
  if (f.type === "bool") input = h("input", { ...common, type: "checkbox", checked: Boolean(value) });
  else if (f.type === "select") input = h("select", common, f.options.map((o) => h("option", { value: o, selected: (value ?? "") === o }, o || "(default)")));
  else if (f.type === "json") input = h("textarea", { ...common, rows: 3 }, value === undefined ? "" : JSON.stringify(value, null, 1));
  else input = h("input", { ...common, type: f.type === "number" ? "text" : "text", inputmode: f.type === "number" ? "decimal" : null, value: value ?? "" });
  const err = h("div", { id: `${id}-err`, class: "field-error", "aria-live": "polite" });
  return { f, input, err, el: h("div", { class: `field ${f.type === "bool" ? "check" : ""}` }, h("label", { for: id }, f.label, f.required ? " *" : ""), input, err) };
}

function readForm(fields, rule) {
  const next = structuredClone(rule || {});
  const bad = [];
  for (const { f, input, err } of fields) {
    err.textContent = "";
    let v;
    if (f.type === "bool") v = input.checked ? true : undefined;
    else if (f.type === "json") {
      const text = input.value.trim();
      try {
        v = text ? JSON.parse(text) : undefined;
      } catch (e) {
        err.textContent = `not valid JSON: ${e.message}`;
        bad.push(f.key);
      }
    } else if (f.type === "number") {
      const raw = input.value.trim();
      // Not a number: sent as typed, so the API names the problem at this field.
      v = raw === "" ? undefined : Number.isFinite(Number(raw)) ? Number(raw) : raw;
    }
    else v = input.value.trim() === "" ? undefined : input.value.trim();
    set(next, f.key, v);
  }
  return { rule: next, bad };
}

function placeProblems(problems, prefix, fields, general) {
  general.replaceChildren();
  const rest = [];
  for (const p of problems) {
    const [path, ...why] = p.split(": ");
    const rel = path.startsWith(prefix) ? path.slice(prefix.length).replace(/^\./, "") : null;
    const hit = rel === null ? null : fields.find(({ f }) => rel === f.key || rel.startsWith(f.key + ".") || f.key.startsWith(rel + "."));
    if (hit) hit.err.textContent = rel === hit.f.key ? why.join(": ") : `${rel}: ${why.join(": ")}`;
    else rest.push(p);
  }
  if (rest.length) general.replaceChildren(h("ul", { class: "notice error", role: "alert" }, rest.map((p) => h("li", {}, p))));
}

export function diffView(text) {
  if (!text) return h("p", { class: "muted" }, "No change against the version in force.");
  return h("pre", { class: "diff", "aria-label": "Diff against the version in force" },
    text.split("\n").map((line) => h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "" }, line + "\n")));
}

function rulePage(ctx, kind, indexText) {
  const spec = KINDS[kind];
  const index = Number(indexText);
  const state = { doc: null, version: undefined, fields: [] };
  const head = h("div");
  const formBox = h("div");
  const general = h("div");
  const review = h("div", { id: "review", "aria-live": "polite" });
  const dec = h("div", { id: "decisions" });

  async function preview(doc) {
    const out = await api("POST", wsPath(ctx.ws, "/rules/preview"), { document: doc });
    const prefix = spec.single ? kind : `${kind}[${index}]`;
    placeProblems(out.problems, prefix, state.fields, general);
    return out;
  }

  async function apply(doc, message) {
    try {
      const entry = await api("POST", wsPath(ctx.ws, "/rules"), { document: doc, message });
      review.replaceChildren(notice(`Applied as ${entry.version}; pushed to the data planes.`, "info"));
      state.doc = null; // the next refresh rebuilds the form from the version in force
    } catch (e) {
      if (e instanceof ApiError && e.problems.length) placeProblems(e.problems, spec.single ? kind : `${kind}[${index}]`, state.fields, general);
      else review.replaceChildren(notice(e.message));
    }
  }

  async function reviewDraft(shadow) {
    const { rule, bad } = readForm(state.fields, rulesOf(state.doc, kind)[index]);
    if (bad.length) return;
    if (shadow && ENFORCING.includes(kind)) shadowPaths(kind, rule).forEach((path) => set(rule, path, true));
    const draft = withRule(state.doc, kind, index, rule);
    const out = await preview(draft);
    if (!out.valid) {
      review.replaceChildren(notice("The document has problems (shown at their fields); nothing applied."));
      return;
    }
    const name = ruleName(kind, rule, index);
    const msg = `${shadow ? "shadow " : ""}${kind} ${name}`;
    review.replaceChildren(
      h("h2", {}, `Diff against ${out.base || "no rules"}`), diffView(out.diff),
      h("div", { class: "row" },
        h("button", { id: "confirm-apply", onclick: () => apply(draft, msg) }, shadow ? "Apply in shadow mode" : "Apply"),
        h("button", { class: "secondary", onclick: () => review.replaceChildren() }, "Cancel")));
  }

  async function remove() {
    if (!(await confirmDialog("Delete this rule?", "A new version without it is applied and pushed.", "Delete"))) return;
    await apply(withRule(state.doc, kind, index, spec.single ? {} : null), `delete ${kind}[${index}]`);
    location.hash = `${base(ctx)}/${kind}`;
  }

  async function enforce(rule, name) {
    const enforced = structuredClone(rule);
    shadowPaths(kind, enforced).forEach((path) => set(enforced, path, undefined));
    const draft = withRule(state.doc, kind, index, enforced);
    const out = await preview(draft);
    if (!(await confirmDialog(`Enforce ${name}?`, `From now on its rejections are enforced on every data plane.\n${out.diff}`, "Enforce"))) return;
    await apply(draft, `enforce ${kind} ${name}`);
  }

  function buildForm(rule) {
    state.fields = spec.fields.map((f) => fieldInput(ctx, f, get(rule || {}, f.key)));
    const enforcing = ENFORCING.includes(kind);
    formBox.replaceChildren(h("form", { class: "card rule-form", "aria-label": `${spec.title} rule`, onsubmit: (e) => { e.preventDefault(); reviewDraft(false); } },
      state.fields.map((x) => x.el), general,
      ctx.edit ? h("div", { class: "row" },
        h("button", { type: "submit", id: "review-apply" }, "Review and apply"),
        enforcing ? h("button", { type: "button", id: "review-shadow", class: "secondary", onclick: () => reviewDraft(true) }, "Review and apply in shadow mode") : null,
        rule ? h("button", { type: "button", class: "danger", onclick: remove }, "Delete") : null) : null));
  }

  function drawDecisions(rule, name, decisions) {
    if (spec.noShadow) return dec.replaceChildren(h("p", { class: "notice info no-shadow" }, spec.noShadow));
    if (!rule || !ENFORCING.includes(kind)) return dec.replaceChildren();
    const t = totals(decisions, kind, rule, index);
    const shadow = inShadow(rule);
    // A breaker counts its openings (`opened`) apart from the calls it turned away (`shadowed`).
    const opened = shadow ? "Would have opened (times)" : "Opened (times)";
    dec.replaceChildren(
      h("h2", {}, shadow ? "Preview on live traffic (shadow mode)" : "Decisions on live traffic"),
      h("div", { class: "row" },
        h("p", { id: "would-reject" }, `${spec.would}: `, h("strong", {}, String(t.shadowed))),
        spec.opens ? h("p", { id: "would-open" }, `${opened}: `, h("strong", {}, String(t.opened))) : null,
        h("p", { id: "rejected" }, "Rejected: ", h("strong", {}, String(t.rejected))),
        shadow && ctx.edit ? h("button", { id: "enforce", class: "danger", onclick: () => enforce(rule, name) }, "Enforce") : null),
      table(
        [
          { title: "Data plane", cell: (d) => link(`#/w/${ctx.ws}/sidecars/${encodeURIComponent(d.dataplane)}`, `${d.app} ${d.dataplane}`) },
          kind === "auth" ? { title: "Policy", cell: (d) => d.name } : null,
          { title: spec.would, cell: (d) => d.shadowed ?? 0 },
          spec.opens ? { title: opened, cell: (d) => d.opened ?? 0 } : null,
          { title: "Rejected", cell: (d) => d.rejected ?? 0 },
          { title: "Passed", cell: (d) => d.passed ?? d.admitted ?? d.allowed ?? "—" },
        ].filter(Boolean),
        t.rows, { label: "Decisions per data plane", empty: "No data plane has evaluated this rule yet." }));
  }

  return {
    el: h("section", {}, h("h1", {}, spec.title), tabs(ctx, kind), head, formBox, review, dec),
    async refresh() {
      const [cur, decisions] = await Promise.all([currentRules(ctx), api("GET", wsPath(ctx.ws, "/rules/decisions/dataplanes"))]);
      const rule = rulesOf(cur.document, kind)[index];
      const name = ruleName(kind, rule || {}, index);
      if (state.doc === null || state.version !== cur.version) {
        const editing = state.doc !== null && review.childElementCount && !review.querySelector(".notice.info");
        state.doc = cur.document || {};
        state.version = cur.version;
        if (!editing) buildForm(rule);
      }
      head.replaceChildren(
        h("h2", {}, rule ? name : `New rule`, " ", rule ? (inShadow(rule) ? badge("shadow") : badge("enforced")) : null),
        h("p", { class: "muted" }, `In force: ${cur.version || "no rules yet"}`));
      drawDecisions(rule, name, decisions);
    },
  };
}
