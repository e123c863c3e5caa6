// Who calls whom: caller apps -> services -> provider apps, as an SVG graph in three
// columns. Call edges are coloured by error rate and labelled with requests/s. A mesh of
// hundreds of services is drawn as its busiest MAX_SERVICES, with a filter to find the rest.

import { api, ws as wsPath } from "./api.js";
import { fmt, h, svg } from "./ui.js";

const ROW = 44;
const COLS = [20, 330, 640];
const NODE_W = 220;
export const MAX_SERVICES = 40;

const busy = (s) => s.consumers.reduce((a, c) => a + (c.metrics.rps || 0), 0) + (s.metrics?.rps || 0);

// The services matching `query` (in their name, a caller's or a provider's app), busiest first.
export function pick(services, query) {
  const q = query.trim().toLowerCase();
  const hit = (text) => String(text).toLowerCase().includes(q);
  const found = q ? services.filter((s) => hit(s.name) || s.consumers.some((c) => hit(c.app)) || s.providers.some((p) => hit(p.app))) : services;
  const shown = found.length > MAX_SERVICES ? [...found].sort((a, b) => busy(b) - busy(a)).slice(0, MAX_SERVICES) : found;
  return { found: found.length, shown: shown.sort((a, b) => a.name.localeCompare(b.name)) };
}

export function edgeClass(rate) {
  if (rate === null || rate === undefined) return "idle";
  if (rate >= 0.99) return "good";
  if (rate >= 0.95) return "warn";
  return "bad";
}

function node(x, y, text, kind, href) {
  const label = text.length > 30 ? text.slice(0, 29) + "…" : text;
  const g = svg("g", { class: `node ${kind}` },
    svg("rect", { x, y: y - 14, width: NODE_W, height: 28, rx: 6 }),
    svg("text", { x: x + 10, y: y + 5 }, label), svg("title", {}, text));
  return href ? svg("a", { href, "aria-label": `${kind} ${text}` }, g) : g;
}

export function graph(ctx, services) {
  const callers = [...new Set(services.flatMap((s) => s.consumers.map((c) => c.app)))].sort();
  const providers = [...new Set(services.flatMap((s) => s.providers.map((p) => p.app)))].sort();
  const rows = Math.max(callers.length, services.length, providers.length, 1);
  const height = rows * ROW + 40;
  const y = (list, i) => 30 + i * ROW + ((rows - list.length) * ROW) / 2;
  const Y = {
    c: Object.fromEntries(callers.map((a, i) => [a, y(callers, i)])),
    s: Object.fromEntries(services.map((s, i) => [s.name, y(services, i)])),
    p: Object.fromEntries(providers.map((a, i) => [a, y(providers, i)])),
  };
  const edges = [];
  for (const s of services) {
    for (const c of s.consumers) {
      const [x1, y1, x2, y2] = [COLS[0] + NODE_W, Y.c[c.app], COLS[1], Y.s[s.name]];
      const m = c.metrics;
      edges.push(svg("g", { class: `edge ${edgeClass(m.success_rate)}`, "data-edge": `${c.app}->${s.name}` },
        svg("path", { d: `M${x1},${y1} C${x1 + 45},${y1} ${x2 - 45},${y2} ${x2},${y2}` }),
        svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, `${fmt.rps(m.rps)}/s`),
        svg("title", {}, `${c.app} → ${s.name}: ${fmt.rps(m.rps)} req/s, success ${fmt.pct(m.success_rate)}`)));
    }
    for (const app of new Set(s.providers.map((p) => p.app))) {
      const [x1, y1, x2, y2] = [COLS[1] + NODE_W, Y.s[s.name], COLS[2], Y.p[app]];
      edges.push(svg("path", { class: "edge serves", d: `M${x1},${y1} C${x1 + 45},${y1} ${x2 - 45},${y2} ${x2},${y2}` }));
    }
  }
  const svcHref = (n) => `#/w/${encodeURIComponent(ctx.ws)}/services/${encodeURIComponent(n)}`;
  return svg("svg", { viewBox: `0 0 ${COLS[2] + NODE_W + 20} ${height}`, class: "topology", role: "img",
    "aria-label": `${callers.length} caller apps, ${services.length} services, ${providers.length} provider apps` },
    svg("text", { x: COLS[0], y: 14, class: "colhead" }, "Caller apps"),
    svg("text", { x: COLS[1], y: 14, class: "colhead" }, "Services"),
    svg("text", { x: COLS[2], y: 14, class: "colhead" }, "Provider apps"),
    edges,
    callers.map((a) => node(COLS[0], Y.c[a], a, "app")),
    services.map((s) => node(COLS[1], Y.s[s.name], s.name, "service", svcHref(s.name))),
    providers.map((a) => node(COLS[2], Y.p[a], a, "app")));
}

export function topology(ctx) {
  const box = h("div", { class: "topology-wrap" });
  const status = h("p", { id: "topology-shown", class: "muted", role: "status" });
  let services = [];
  const draw = () => {
    const { found, shown } = pick(services, filter.value);
    status.textContent = found > shown.length
      ? `Showing the ${shown.length} busiest of ${found} services${found < services.length ? ` (of ${services.length})` : ""}; filter to find the others.`
      : `${found} of ${services.length} services.`;
    box.replaceChildren(graph(ctx, shown));
  };
  const filter = h("input", { id: "topology-filter", type: "search", placeholder: "service or app", oninput: draw });
  return {
    el: h("section", {}, h("h1", {}, "Topology"),
      h("div", { class: "filters row", role: "search" }, h("label", { for: "topology-filter" }, "Filter by service or app"), filter),
      h("p", { class: "legend" }, h("span", { class: "key good" }, "≥ 99% success"), h("span", { class: "key warn" }, "≥ 95%"),
        h("span", { class: "key bad" }, "< 95%"), h("span", { class: "key idle" }, "no calls")),
      status, box),
    async refresh() {
      services = await api("GET", wsPath(ctx.ws, "/services"));
      draw();
    },
  };
}
