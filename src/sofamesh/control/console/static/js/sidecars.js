// The data-plane inventory (filters, operator actions) and one data plane's page.

import { api, ws as wsPath } from "./api.js";
import { badge, confirmDialog, fmt, h, link, notice, table } from "./ui.js";

const ACTIONS = [
  ["fail", "Mark failed", "It withdraws its publications: callers stop sending it traffic."],
  ["ok", "Mark ok", "It publishes its services again."],
  ["drain", "Drain", "It stops taking new calls and finishes those in flight."],
];

function actions(ctx, row, after) {
  if (!ctx.edit) return null;
  return h(
    "div",
    { class: "row actions" },
    ACTIONS.map(([action, label, why]) =>
      h(
        "button",
        {
          class: action === "ok" ? "secondary small" : "danger small",
          "aria-label": `${label}: ${row.app} ${row.id}`,
          onclick: async () => {
            if (!(await confirmDialog(`${label} ${row.app}?`, `${row.id} (${row.pod || row.host}). ${why}`, label))) return;
            await api("POST", wsPath(ctx.ws, `/sidecars/${encodeURIComponent(row.id)}/actions`), { action });
            after(notice(`${label}: asked ${row.id}; it acts on its next watch.`, "info"));
          },
        },
        label,
      ),
    ),
  );
}

function mtls(row) {
  const tls = row.tls || {};
  if (!tls.mode || tls.mode === "disable") return "off";
  return h("span", {}, tls.mode, " ", tls.cert_state ? badge(tls.cert_state) : null,
    tls.not_after ? h("div", { class: "muted small" }, `until ${fmt.time(tls.not_after)}`) : null);
}

function sync(row) {
  return h("span", {}, badge(row.sync), row.sync_error ? h("div", { class: "error-text" }, row.sync_error) : null);
}

const COLUMNS = (ctx, after) => [
  { title: "Data plane", cell: (r) => h("span", {}, link(`#/w/${ctx.ws}/sidecars/${encodeURIComponent(r.id)}`, r.app), h("div", { class: "muted small" }, r.id)) },
  { title: "Status", cell: (r) => badge(r.status) },
  { title: "Health", cell: (r) => r.health },
  { title: "Mode", cell: (r) => r.mode },
  { title: "Pod", cell: (r) => (r.pod ? `${r.pod_namespace ? r.pod_namespace + "/" : ""}${r.pod}` : "—") },
  { title: "Pod phase", cell: (r) => r.pod_phase || "—" },
  { title: "Injected at", cell: (r) => fmt.time(r.injected_at) },
  { title: "Started at", cell: (r) => fmt.time(r.started_at) },
  { title: "Version", cell: (r) => r.version || "—" },
  { title: "Rules", cell: (r) => `${r.rules_version || "none"} / ${r.latest_rules_version || "none"}` },
  { title: "Sync", cell: sync },
  { title: "mTLS", cell: mtls },
  ...(ctx.edit ? [{ title: "Actions", cell: (r) => actions(ctx, r, after) }] : []),
];

export function sidecars(ctx) {
  const q = h("input", { id: "sc-q", type: "search", placeholder: "app, pod, id, host" });
  const status = h("select", { id: "sc-status" }, ["", "connected", "draining", "lost"].map((s) => h("option", { value: s }, s || "any")));
  const syncSel = h("select", { id: "sc-sync" }, ["", "SYNCED", "STALE", "REJECTED"].map((s) => h("option", { value: s }, s || "any")));
  const out = h("div", { id: "sidecar-table" });
  const said = h("div", { "aria-live": "polite" });
  let rows = [];
  const draw = () => {
    const text = q.value.toLowerCase();
    const shown = rows.filter(
      (r) =>
        (!status.value || r.status === status.value) &&
        (!syncSel.value || r.sync === syncSel.value) &&
        (!text || [r.app, r.id, r.pod, r.host].some((v) => v && String(v).toLowerCase().includes(text))),
    );
    out.replaceChildren(
      h("p", { class: "muted" }, `${shown.length} of ${rows.length} data planes`),
      table(COLUMNS(ctx, (n) => said.replaceChildren(n)), shown, { label: "Data planes", empty: "No data plane matches." }),
    );
  };
  [q, status, syncSel].forEach((el) => el.addEventListener("input", draw));
  const el = h(
    "section",
    {},
    h("h1", {}, "Sidecars and SDK apps"),
    h(
      "div",
      { class: "filters row", role: "search" },
      h("label", { for: "sc-q" }, "Search"), q,
      h("label", { for: "sc-status" }, "Status"), status,
      h("label", { for: "sc-sync" }, "Sync"), syncSel,
    ),
    said,
    out,
  );
  return {
    el,
    async refresh() {
      rows = await api("GET", wsPath(ctx.ws, "/sidecars"));
      draw();
    },
  };
}

function facts(row) {
  const items = [
    ["App", row.app], ["Id", row.id], ["Mode", row.mode], ["Status", row.status], ["Health", row.health],
    ["Version", row.version], ["Host", row.host], ["Pid", row.pid], ["Pod", row.pod], ["Namespace", row.pod_namespace],
    ["Node", row.pod_node], ["Pod phase", row.pod_phase], ["Injected at", fmt.time(row.injected_at)],
    ["Started at", fmt.time(row.started_at)], ["Connected at", fmt.time(row.connected_at)],
    ["Last seen", fmt.ago(row.last_seen)], ["Rules in force", row.rules_version || "none"],
    ["Latest rules", row.latest_rules_version || "none"], ["Sync", row.sync], ["Sync error", row.sync_error],
    ["mTLS mode", (row.tls || {}).mode || "disable"], ["Identity", (row.tls || {}).spiffe_id],
    ["Issued by", (row.tls || {}).issuer], ["Certificate until", fmt.time((row.tls || {}).not_after)],
    ["Renews after", fmt.time((row.tls || {}).renew_after)], ["Certificate", (row.tls || {}).cert_state],
  ];
  return h("dl", { class: "facts" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "—" : String(v))]));
}

export function sidecar(ctx) {
  const id = ctx.args[0];
  const body = h("div");
  const said = h("div", { "aria-live": "polite" });
  return {
    el: h("section", {}, h("p", {}, link(`#/w/${ctx.ws}/sidecars`, "← all data planes")), said, body),
    async refresh() {
      const [row, decisions] = await Promise.all([
        api("GET", wsPath(ctx.ws, `/sidecars/${encodeURIComponent(id)}`)),
        api("GET", wsPath(ctx.ws, "/rules/decisions/dataplanes")),
      ]);
      const mine = decisions.filter((d) => d.dataplane === id);
      body.replaceChildren(
        h("h1", {}, `${row.app} `, badge(row.status), " ", badge(row.sync)),
        actions(ctx, row, (n) => said.replaceChildren(n)),
        facts(row),
        h("h2", {}, "Listeners"),
        table(
          [
            { title: "Listener", cell: (l) => (typeof l === "string" ? l : l.name) },
            { title: "Address", cell: (l) => (typeof l === "string" ? "" : l.address) },
          ],
          row.listeners || [],
          { label: "Listeners", empty: "No listener (an SDK app)." },
        ),
        h("h2", {}, "Services"),
        h("p", {}, "Provides: ", (row.provides || []).map((s) => [link(`#/w/${ctx.ws}/services/${encodeURIComponent(s)}`, s), " "]), row.provides?.length ? null : "—"),
        h("p", {}, "Calls: ", (row.calls || []).map((s) => [link(`#/w/${ctx.ws}/services/${encodeURIComponent(s)}`, s), " "]), row.calls?.length ? null : "—"),
        h("h2", {}, "Traffic (since its previous report)"),
        table(
          [
            { title: "Direction", cell: (t) => t.direction },
            { title: "Service", cell: (t) => link(`#/w/${ctx.ws}/services/${encodeURIComponent(t.service)}`, t.service) },
            { title: "Requests/s", cell: (t) => fmt.rps(t.rps) },
            { title: "Errors", cell: (t) => t.errors },
            { title: "p99", cell: (t) => fmt.ms(t.p99_ms) },
          ],
          row.rates || [],
          { label: "Traffic", empty: "No calls yet." },
        ),
        h("h2", {}, "Clusters (the services it calls)"),
        table(
          [
            { title: "Service", cell: (c) => c.cluster },
            { title: "Endpoint", cell: (c) => c.address },
            { title: "Health", cell: (c) => badge(c.health) },
            { title: "Active", cell: (c) => c.active_requests },
            { title: "Times ejected", cell: (c) => c.times_ejected },
            { title: "Ejected for", cell: (c) => (c.ejected_for_s ? `${c.ejected_for_s} s` : "—") },
          ],
          (row.clusters || []).flatMap((c) => c.endpoints.map((e) => ({ cluster: c.service, ...e }))),
          { label: "Clusters", empty: "It has called no service yet." },
        ),
        h("h2", {}, "Rule decisions here"),
        table(
          [
            { title: "Kind", cell: (d) => d.kind },
            { title: "Rule", cell: (d) => d.name },
            { title: "Rejected", cell: (d) => d.rejected ?? "—" },
            { title: "Would reject (shadow)", cell: (d) => d.shadowed ?? "—" },
            { title: "Passed", cell: (d) => d.passed ?? d.allowed ?? "—" },
          ],
          mine,
          { label: "Rule decisions", empty: "No rule has decided anything here." },
        ),
      );
    },
  };
}
