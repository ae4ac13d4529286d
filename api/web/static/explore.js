// Explore: any selector, completed from /series, charted over a range; counters as rates.

import { all, api, q } from "./api.js";
import { chart } from "./chart.js";
import * as range from "./range.js";

function label(s) {
  const labels = Object.entries(s.labels).sort().map(([k, v]) => `${k}="${v}"`);
  return `${s.name}{host="${s.host}"${labels.length ? `, ${labels.join(", ")}` : ""}}`;
}

export async function render(main, _, navigate) {
  const params = new URLSearchParams(location.search);
  const span = range.fromUrl(params, "1h");
  const selector = params.get("selector") || "";
  const rate = params.get("rate") !== "0";
  main.innerHTML = `<h1>Explore</h1>
    <form class="explore" id="query" novalidate>
      <label for="selector">Selector</label>
      <input id="selector" name="selector" list="completions" autocomplete="off" spellcheck="false"
        placeholder='memory_used_bytes{host="nas"}'>
      <datalist id="completions"></datalist>
      <label class="toggle"><input type="checkbox" name="rate"> Counters as rate per second</label>
      <button type="submit">Run</button>
    </form>
    <div class="bar controls" id="picker"></div>
    <p class="error" id="problem" role="alert"></p>
    <p class="muted" id="summary"></p>
    <div class="charts wide" id="charts"></div>`;
  const form = main.querySelector("#query");
  form.elements.selector.value = selector;
  form.elements.rate.checked = rate;
  const go = (next) => {
    const p = new URLSearchParams();
    p.set("selector", form.elements.selector.value.trim());
    if (!form.elements.rate.checked) p.set("rate", "0");
    range.toUrl(p, next);
    navigate(`/explore?${p}`);
  };
  main.querySelector("#picker").append(range.picker(span, go));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(span);
  });

  // Completion: metric names, then the same with each host, from the catalogue.
  const list = main.querySelector("#completions");
  let known = null;
  const complete = async () => {
    if (known === null) {
      known = [];
      const series = await all("/series");
      const names = new Set();
      for (const s of series) {
        names.add(s.name);
        names.add(`${s.name}{host="${s.host}"}`);
      }
      known = [...names].sort();
    }
    const typed = form.elements.selector.value;
    list.replaceChildren(...known.filter((k) => k.startsWith(typed)).slice(0, 50).map((k) => new Option(k)));
  };
  form.elements.selector.addEventListener("focus", () => complete().catch(() => {}), { once: true });
  form.elements.selector.addEventListener("input", () => complete().catch(() => {}));

  const handles = [];
  if (selector) {
    const problem = main.querySelector("#problem");
    try {
      const result = await api(`/query?selector=${q(selector)}&start=${Math.floor(span.from)}&end=${Math.ceil(span.to)}&step=${range.step(span)}&rate=${rate}`);
      main.querySelector("#summary").textContent = `${result.series.length} series, ${result.resolution} data, ${result.step_s} s steps`;
      // One chart per unit, so that bytes and percent do not share an axis.
      const byUnit = new Map();
      for (const s of result.series) {
        const k = `${s.unit}|${rate && s.kind === "counter"}`;
        if (!byUnit.has(k)) byUnit.set(k, []);
        byUnit.get(k).push(s);
      }
      for (const [k, series] of byUnit) {
        const [unit, isRate] = k.split("|");
        const times = [...new Set(series.flatMap((s) => s.points.map(([t]) => t)))].sort((a, b) => a - b);
        const index = new Map(times.map((t, i) => [t, i]));
        const figure = document.createElement("figure");
        figure.className = "chart";
        main.querySelector("#charts").append(figure);
        handles.push(chart(figure, {
          title: `${series[0].name}${series.length > 1 ? ` and ${series.length - 1} more` : ""} (${unit || "count"}${isRate === "true" ? "/s" : ""})`,
          unit,
          rate: isRate === "true",
          x: times,
          series: series.map((s) => {
            const values = new Array(times.length).fill(null);
            for (const [t, v] of s.points) values[index.get(t)] = v;
            return { label: label(s), values };
          }),
          onZoom: (from, to) => go({ preset: null, from, to }),
        }));
      }
      if (!result.series.length) main.querySelector("#summary").textContent = "No series match in this range.";
    } catch (failure) {
      problem.textContent = failure.message;
    }
  }
  document.body.dataset.ready = "explore";
  return () => handles.forEach((h) => h.destroy());
}
