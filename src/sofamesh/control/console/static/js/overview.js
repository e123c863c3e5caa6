// The workspace at a glance: services, data planes by status, error hot spots, rule changes.

import { api, ws as wsPath } from "./api.js";
import { stat } from "./services.js";
import { fmt, h, link, table } from "./ui.js";

export function overview(ctx) {
  const body = h("div");
  return {
    el: h("section", {}, h("h1", {}, `Workspace ${ctx.ws}`), body),
    async refresh() {
      const [services, planes, history] = await Promise.all([
        api("GET", wsPath(ctx.ws, "/services")),
        api("GET", wsPath(ctx.ws, "/sidecars")),
        api("GET", wsPath(ctx.ws, "/rules/history")),
      ]);
      const count = (s) => planes.filter((p) => p.status === s).length;
      const stale = planes.filter((p) => p.sync !== "SYNCED").length;
      const hot = services
        .filter((s) => s.metrics.success_rate !== null && s.metrics.success_rate < 1)
        .sort((a, b) => a.metrics.success_rate - b.metrics.success_rate)
        .slice(0, 10);
      body.replaceChildren(
        h("div", { class: "stats" },
          stat("Services", services.length), stat("Connected", count("connected"), "connected"),
          stat("Draining", count("draining")), stat("Lost", count("lost"), "lost"), stat("Not synced", stale, "stale")),
        h("h2", {}, "Error hot spots"),
        table(
          [
            { title: "Service", cell: (s) => link(`#/w/${ctx.ws}/services/${encodeURIComponent(s.name)}`, s.name) },
            { title: "Success rate", cell: (s) => fmt.pct(s.metrics.success_rate) },
            { title: "Requests/s", cell: (s) => fmt.rps(s.metrics.rps) },
          ],
          hot, { label: "Error hot spots", empty: "No service is failing calls." }),
        h("h2", {}, "Recent rule changes"),
        table(
          [
            { title: "Version", cell: (r) => r.version },
            { title: "When", cell: (r) => fmt.ago(r.time) },
            { title: "Author", cell: (r) => r.author },
            { title: "Message", cell: (r) => r.message || "—" },
          ],
          history.slice(-5).reverse(), { label: "Recent rule changes", empty: "No rules applied yet." }),
      );
    },
  };
}
