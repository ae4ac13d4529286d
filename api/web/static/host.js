// One host: a range picker, zoom by dragging, the range in the URL, a chart per panel from
// one /query call, and a live mode appending points from the stream.

import { api, q } from "./api.js";
import { chart } from "./chart.js";
import { Rates, follow, key, seconds } from "./live.js";
import { LEFT_OUT, align, drawn, group, seriesKey } from "./panels.js";
import * as range from "./range.js";

export async function render(main, [host], navigate) {
  const started = performance.now();
  const params = new URLSearchParams(location.search);
  const span = range.fromUrl(params, "1h");
  const live = params.get("live") === "1" && span.preset !== null;
  const go = (next, liveNext = live && next.preset !== null) => {
    const p = new URLSearchParams();
    range.toUrl(p, next);
    if (liveNext) p.set("live", "1");
    navigate(`${location.pathname}?${p}`);
  };

  main.innerHTML = `<div class="bar"><h1></h1><a href="/" data-nav>All hosts</a></div>
    <div class="bar controls"><div id="picker"></div>
    <label class="toggle"><input type="checkbox" id="live"> Live</label>
    <span class="muted" id="resolution"></span></div>
    <div class="charts" id="charts"></div>`;
  main.querySelector("h1").textContent = host;
  main.querySelector("#picker").append(range.picker(span, (next) => go(next)));
  const liveBox = main.querySelector("#live");
  liveBox.checked = live;
  liveBox.disabled = span.preset === null;
  liveBox.addEventListener("change", () => go(range.fromUrl(params, "1h"), liveBox.checked));

  const selector = `{host="${host.replace(/["\\]/g, "\\$&")}", name!~"${LEFT_OUT.join("|")}"}`;
  const step = range.step(span);
  const controller = new AbortController();
  const result = await api(
    `/query?selector=${q(selector)}&start=${Math.floor(span.from)}&end=${Math.ceil(span.to)}&step=${step}&rate=true`,
    { signal: controller.signal },
  );
  main.querySelector("#resolution").textContent = `${result.resolution} data, ${result.step_s} s steps, ${result.series.length} series`;
  const box = main.querySelector("#charts");
  const panels = group(result.series);
  if (!panels.length) box.innerHTML = '<p class="muted">No data in this range.</p>';
  const shown = [];
  for (const panel of panels) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.panel = panel.id;
    box.append(figure);
    const { x, values } = align(panel);
    const members = drawn(panel);
    const handle = chart(figure, {
      title: panel.title,
      unit: panel.unit,
      rate: panel.rate,
      stacked: panel.stacked,
      x,
      series: members.map((m, i) => ({ label: m.label, values: values[i] })),
      onZoom: (from, to) => go({ preset: null, from, to }, false),
    });
    shown.push({ panel, members, handle, x, values });
  }
  performance.mark("unity-ready");
  document.body.dataset.ready = "host";
  window.unity.readyMs = performance.now() - started;
  if (!live) return () => { controller.abort(); for (const s of shown) s.handle.destroy(); };

  // Live: each sample goes to its panel's line; counters as rates since the previous sample.
  const width = span.to - span.from;
  const where = new Map();
  for (const s of shown) s.members.forEach((m, i) => where.set(m.key, [s, i]));
  const cpu = shown.find((s) => s.panel.cpu);
  const rates = new Rates();
  const dirty = new Set();
  let cpuPrev = null;

  function put(s, ts, i, value) {
    if (!s.x.length || s.x[s.x.length - 1] < ts) {
      s.x.push(ts);
      for (const vs of s.values) vs.push(null);
    }
    const at = s.x.lastIndexOf(ts);
    if (at >= 0) s.values[i][at] = value;
    dirty.add(s);
  }

  const stop = follow(selector, (batch) => {
    const ts = seconds(batch.ts);
    const modes = {};
    for (const sample of batch.samples) {
      const t = sample.ts ? seconds(sample.ts) : ts;
      if (sample.name === "cpu_time_seconds") {
        modes[sample.labels.mode] = sample.value;
        continue;
      }
      const found = where.get(seriesKey({ ...batch, ...sample }));
      if (!found) continue;
      const value = sample.kind === "counter" ? rates.rate(key(batch, sample), t, sample.value) : sample.value;
      if (value !== null) put(found[0], t, found[1], value);
    }
    if (cpu && Object.keys(modes).length) {
      if (cpuPrev) {
        const deltas = Object.fromEntries(Object.entries(modes).map(([m, v]) => [m, v - (cpuPrev[m] ?? v)]));
        const total = Object.values(deltas).reduce((a, b) => a + b, 0);
        if (total > 0) {
          cpu.members.forEach((m, i) => {
            const mode = m.series.labels.mode;
            if (mode in deltas) put(cpu, ts, i, (100 * deltas[mode]) / total);
          });
        }
      }
      cpuPrev = modes;
    }
  });
  const timer = setInterval(() => {
    const oldest = Date.now() / 1000 - width;
    for (const s of dirty) {
      while (s.x.length > 2 && s.x[0] < oldest) {
        s.x.shift();
        for (const vs of s.values) vs.shift();
      }
      s.handle.set(s.x, s.values);
      window.unity.livePoints = (window.unity.livePoints || 0) + 1;
    }
    dirty.clear();
  }, 1000);
  return () => {
    controller.abort();
    stop();
    clearInterval(timer);
    for (const s of shown) s.handle.destroy();
  };
}
