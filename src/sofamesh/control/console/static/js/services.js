// The service catalog (search, counts, golden metrics) and one service's page (live chart).

import { api, ws as wsPath } from "./api.js";
import { lineChart } from "./chart.js";
import { affecting, inShadow } from "./rulesdoc.js";
import { badge, fmt, h, link, table } from "./ui.js";

const svcHref = (ctx, name) => `#/w/${encodeURIComponent(ctx.ws)}/services/${encodeURIComponent(name)}`;

export function services(ctx) {
  const q = h("input", { id: "svc-q", type: "search", placeholder: "service name" });
  const out = h("div", { id: "service-table" });
  let rows = [];
  const draw = () => {
    const text = q.value.toLowerCase();
    const shown = rows.filter((s) => !text || s.name.toLowerCase().includes(text));
    out.replaceChildren(
      h("p", { class: "muted" }, `${shown.length} of ${rows.length} services`),
      table(
        [
          { title: "Service", cell: (s) => link(svcHref(ctx, s.name), s.name) },
          { title: "Providers", cell: (s) => s.providers.length },
          { title: "Consumers", cell: (s) => s.consumers.length },
          { title: "Requests/s", cell: (s) => fmt.rps(s.metrics.rps) },
          { title: "Success rate", cell: (s) => fmt.pct(s.metrics.success_rate) },
          { title: "p99", cell: (s) => fmt.ms(s.metrics.p99_ms) },
        ],
        shown,
        { label: "Services", empty: "No service matches." },
      ),
    );
  };
  q.addEventListener("input", draw);
  return {
    el: h("section", {}, h("h1", {}, "Services"),
      h("div", { class: "filters row", role: "search" }, h("label", { for: "svc-q" }, "Search"), q), out),
    async refresh() {
      rows = await api("GET", wsPath(ctx.ws, "/services"));
      draw();
    },
  };
}

export function service(ctx) {
  const name = ctx.args[0];
  const body = h("div");
  return {
    el: h("section", {}, h("p", {}, link(`#/w/${ctx.ws}/services`, "← all services")), body),
    async refresh() {
      const [all, samples, rules] = await Promise.all([
        api("GET", wsPath(ctx.ws, "/services")),
        api("GET", wsPath(ctx.ws, `/services/${encodeURIComponent(name)}/samples`)),
        api("GET", wsPath(ctx.ws, "/rules")).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      ]);
      const s = all.find((x) => x.name === name);
      if (!s) {
        body.replaceChildren(h("h1", {}, name), h("p", { class: "muted" }, "No data plane of this workspace provides or calls it now."));
        return;
      }
      const pts = (k) => samples.samples.map((p) => ({ t: p.time, v: p[k] }));
      const found = affecting(rules ? rules.document : {}, name);
      body.replaceChildren(
        h("h1", {}, name),
        h("div", { class: "stats" },
          stat("Requests/s", fmt.rps(s.metrics.rps)), stat("Success rate", fmt.pct(s.metrics.success_rate), "success-rate"),
          stat("p99", fmt.ms(s.metrics.p99_ms)), stat("Providers", s.providers.length), stat("Consumers", s.consumers.length)),
        h("h2", {}, "Last 15 minutes"),
        h("div", { class: "charts" },
          h("figure", {}, h("figcaption", {}, "Requests/s"), lineChart(pts("rps"), { label: "Requests per second", format: fmt.rps })),
          h("figure", {}, h("figcaption", {}, "Success rate"), lineChart(pts("success_rate"), { label: "Success rate", max: 1, format: fmt.pct })),
          h("figure", {}, h("figcaption", {}, "p99 (ms)"), lineChart(pts("p99_ms"), { label: "p99 latency", unit: " ms", format: (v) => v.toFixed(1) }))),
        h("h2", {}, "Providers"),
        table(
          [
            { title: "Address", cell: (p) => p.address },
            { title: "App", cell: (p) => p.app },
            { title: "Protocol", cell: (p) => p.protocol },
            { title: "Version", cell: (p) => p.version || "—" },
            { title: "Zone", cell: (p) => p.zone || "—" },
            { title: "SDK or sidecar", cell: (p) => p.mode },
            { title: "Health", cell: (p) => badge(p.health) },
          ],
          s.providers,
          { label: "Providers", empty: "No provider in the registry." },
        ),
        h("h2", {}, "Consumers"),
        table(
          [
            { title: "App", cell: (c) => c.app },
            { title: "Requests/s", cell: (c) => fmt.rps(c.metrics.rps) },
            { title: "Success rate", cell: (c) => fmt.pct(c.metrics.success_rate) },
            { title: "p99", cell: (c) => fmt.ms(c.metrics.p99_ms) },
          ],
          s.consumers,
          { label: "Consumers", empty: "No consumer reports calling it." },
        ),
        h("h2", {}, "Rules that affect it"),
        table(
          [
            { title: "Kind", cell: (r) => r.kind },
            { title: "Rule", cell: (r) => link(`#/w/${ctx.ws}/governance/${r.kind}/${r.index}`, r.name) },
            { title: "Mode", cell: (r) => (inShadow(r.rule) ? badge("shadow") : "enforced") },
          ],
          found,
          { label: "Rules", empty: "No rule names this service." },
        ),
      );
    },
  };
}

export function stat(label, value, id) {
  return h("div", { class: "stat", id: id ? `stat-${id}` : null }, h("div", { class: "stat-value" }, value), h("div", { class: "muted" }, label));
}
