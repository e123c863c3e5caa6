// A line chart as inline SVG: one series over time, its axis labelled with min and max.

import { svg } from "./ui.js";

export function lineChart(points, { label, unit = "", width = 560, height = 140, max = null, format = (v) => String(v) }) {
  const pad = { l: 48, r: 8, t: 10, b: 20 };
  const xs = points.map((p) => p.t);
  const ys = points.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const now = Date.now() / 1000;
  const x0 = Math.min(now - 900, ...xs);
  const top = max ?? Math.max(1e-9, ...ys) * 1.1;
  const X = (t) => pad.l + ((t - x0) / Math.max(1, now - x0)) * (width - pad.l - pad.r);
  const Y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  const d = points
    .filter((p) => p.v !== null && p.v !== undefined)
    .map((p, i) => `${i ? "L" : "M"}${X(p.t).toFixed(1)},${Y(p.v).toFixed(1)}`)
    .join("");
  return svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": `${label}: ${ys.length ? format(ys[ys.length - 1]) + unit + " now" : "no samples yet"}` },
    svg("line", { x1: pad.l, x2: width - pad.r, y1: Y(0), y2: Y(0), class: "axis" }),
    svg("line", { x1: pad.l, x2: width - pad.r, y1: Y(top), y2: Y(top), class: "grid" }),
    svg("text", { x: pad.l - 4, y: Y(0), class: "tick", "text-anchor": "end" }, "0"),
    svg("text", { x: pad.l - 4, y: Y(top) + 8, class: "tick", "text-anchor": "end" }, format(top)),
    svg("text", { x: pad.l, y: height - 4, class: "tick" }, "−15 min"),
    svg("text", { x: width - pad.r, y: height - 4, class: "tick", "text-anchor": "end" }, "now"),
    d ? svg("path", { d, class: "line" }) : svg("text", { x: width / 2, y: height / 2, class: "tick", "text-anchor": "middle" }, "no samples yet"),
  );
}
