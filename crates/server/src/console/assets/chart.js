// Rows sent, rejected and throttle waits per run, as an inline SVG bar
// chart (oldest run on the left). No chart library: three bars per run.

const NS = "http://www.w3.org/2000/svg";
const SERIES = [
  ["sent", "sent", "#1f5fbf"],
  ["rejected", "rejected", "#b3261e"],
  ["waits", "throttle waits", "#d08c00"],
];

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The values charted for one run. */
function values(run) {
  const c = run.counts || {};
  return { sent: c.sent || 0, rejected: c.rejected || 0, waits: (c.throttled_waits || 0) + (c.paced_waits || 0) };
}

/** An SVG chart of `runs` (newest first, as the API answers). */
export function runChart(runs, formatWhen) {
  const ordered = [...runs].reverse();
  const width = 720, height = 220, left = 44, bottom = 28, top = 10;
  const max = Math.max(1, ...ordered.flatMap((r) => Object.values(values(r))));
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Rows sent, rejected and throttle waits for the last ${ordered.length} runs` });
  const plotH = height - bottom - top;
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH * (1 - frac);
    svg.append(el("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#d9dde5" }));
    svg.append(el("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6475" },
      String(Math.round(max * frac))));
  }
  const slot = (width - left) / Math.max(ordered.length, 1);
  const bar = Math.max(2, Math.min(14, (slot - 6) / 3));
  ordered.forEach((run, i) => {
    const v = values(run);
    const x0 = left + i * slot + (slot - bar * 3) / 2;
    SERIES.forEach(([key, label, color], j) => {
      const h = (v[key] / max) * plotH;
      const rect = el("rect", { x: x0 + j * bar, y: top + plotH - h, width: bar - 1, height: Math.max(h, 0), fill: color });
      rect.append(el("title", {}, `run ${run.id} (${formatWhen(run.started_at)}): ${v[key]} ${label}`));
      svg.append(rect);
    });
    if (ordered.length <= 15 || i % Math.ceil(ordered.length / 15) === 0) {
      svg.append(el("text", { x: x0 + bar * 1.5, y: height - 10, "text-anchor": "middle", "font-size": 11, fill: "#5b6475" },
        `#${run.id}`));
    }
  });
  return svg;
}

export const LEGEND = SERIES.map(([key, label]) => [key, label]);
