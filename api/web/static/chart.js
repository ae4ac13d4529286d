// uPlot charts (global `uPlot`, from the uplot-python wheel), sized to their box, themed
// from the page's colours. Every live chart is listed in window.unity.charts for the tests.

import * as fmt from "./format.js";

const PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899",
  "#84cc16", "#f97316", "#64748b"];

const BINARY_STEPS = Array.from({ length: 60 }, (_, i) => 2 ** i);

window.unity = window.unity || { charts: [] };

function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function cumulative(series) {
  const out = [];
  let below = null;
  for (const values of series) {
    const sum = values.map((v, i) => (v === null ? (below ? below[i] : null) : v + (below && below[i] !== null ? below[i] : 0)));
    out.push(sum);
    below = sum;
  }
  // uPlot draws in series order: the tallest band first, so the smaller ones stay visible.
  return out.reverse();
}

/**
 * A time-series chart.
 * @param {HTMLElement} box where it goes (its width sets the chart's)
 * @param {{title: string, unit: string, rate?: boolean, stacked?: boolean, x: number[],
 *   series: {label: string, values: (number|null)[]}[], onZoom?: (from: number, to: number) => void}} spec
 */
export function chart(box, spec) {
  const axis = colour("--muted");
  const grid = colour("--grid");
  const show = (v) => fmt.unit(v, spec.unit, spec.rate);
  let raw = spec.series.map((s) => s.values);
  const order = spec.stacked ? spec.series.map((_, i) => spec.series.length - 1 - i) : null;
  const labels = order ? order.map((i) => spec.series[i].label) : spec.series.map((s) => s.label);
  const plotted = () => (spec.stacked ? cumulative(raw) : raw);
  const options = {
    title: spec.title,
    width: Math.max(box.clientWidth, 280),
    height: spec.height || 220,
    cursor: { drag: { x: true, y: false, setScale: !spec.onZoom } },
    scales: { x: { time: true } },
    axes: [
      { stroke: axis, grid: { stroke: grid } },
      {
        stroke: axis,
        grid: { stroke: grid },
        size: 70,
        values: (u, ticks) => fmt.ticks(ticks, show),
        // Bytes tick at powers of two, so that the labels come out as whole KiB, MiB, GiB.
        ...(spec.unit === "bytes" ? { incrs: BINARY_STEPS } : {}),
      },
    ],
    series: [
      { value: (u, v) => (v === null ? "–" : fmt.time(v)) },
      ...labels.map((label, i) => {
        const c = PALETTE[(order ? order[i] : i) % PALETTE.length];
        const rawIndex = order ? order[i] : i;
        return {
          label,
          stroke: c,
          width: 1.5,
          fill: spec.stacked ? `${c}99` : undefined,
          spanGaps: true,
          points: { show: false },
          value: (u, v, si, idx) => (idx === null ? "–" : show(raw[rawIndex][idx])),
        };
      }),
    ],
    hooks: {
      setSelect: [
        (u) => {
          if (!spec.onZoom || u.select.width < 4) return;
          const from = u.posToVal(u.select.left, "x");
          const to = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          spec.onZoom(from, to);
        },
      ],
    },
  };
  const u = new uPlot(options, [spec.x, ...plotted()], box);
  const entry = { title: spec.title, unit: spec.unit, u, box };
  window.unity.charts.push(entry);
  const resize = new ResizeObserver(() => {
    const width = Math.max(box.clientWidth, 280);
    if (width !== u.width) u.setSize({ width, height: u.height });
  });
  resize.observe(box);
  return {
    u,
    /** Replace the data: x and one array per series, in the spec's order. */
    set(x, series) {
      raw = series;
      u.setData([x, ...plotted()]);
    },
    destroy() {
      resize.disconnect();
      u.destroy();
      window.unity.charts = window.unity.charts.filter((c) => c !== entry);
    },
  };
}

/** A small line with no axes, for tables. */
export function spark(box, x, values, unit) {
  const c = PALETTE[0];
  const u = new uPlot(
    {
      width: 120,
      height: 30,
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: { x: { time: true }, ...(unit === "percent" ? { y: { range: [0, 100] } } : {}) },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: c, width: 1, fill: `${c}33`, spanGaps: true, points: { show: false } }],
    },
    [x, values],
    box,
  );
  return {
    u,
    set(nx, nv) {
      u.setData([nx, nv]);
    },
    destroy() {
      u.destroy();
    },
  };
}
