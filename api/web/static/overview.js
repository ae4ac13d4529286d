// Every host at a glance: up or silent, cpu, memory, disk, net, temperature, load, alerts and
// the last hour of cpu; sort, filter, live.

import { all, api, q } from "./api.js";
import { spark } from "./chart.js";
import * as fmt from "./format.js";
import { Rates, follow, key, seconds } from "./live.js";
import { activeAlerts } from "./alerts.js";

const SILENT_S = 120;
const HOUR = 3600;
const GAUGES = ["memory_used_percent", "disk_used_percent", "cpu_load1", "system_load1",
  "sensors_temperature_celsius", "system_uptime_seconds"];
const COUNTERS = ["cpu_time_seconds", "net_received_bytes", "net_sent_bytes"];
const IDLE = new Set(["idle", "iowait"]);
const COLUMNS = [
  ["host", "Host"], ["status", "Status"], ["cpu", "CPU"], ["mem", "Memory"], ["disk", "Disk"],
  ["net", "Net in / out"], ["temp", "Temp"], ["load", "Load"], ["alerts", "Alerts"],
  [null, "CPU, last hour"],
];

function blank(info) {
  return {
    host: info.host,
    lastSeen: info.last_seen ? seconds(info.last_seen) : 0,
    health: info.health,
    cpu: null, mem: null, disk: null, netIn: null, netOut: null, temp: null, load: null,
    uptime: null, alerts: 0,
    disks: new Map(), temps: new Map(), ifaces: new Map(),
    sparkX: [], sparkV: [], cpuLast: null,
  };
}

function maxOf(map) {
  return map.size ? Math.max(...map.values()) : null;
}

function gauge(row, name, labels, value) {
  if (name === "memory_used_percent") row.mem = value;
  else if (name === "disk_used_percent") {
    row.disks.set(labels.mount || "", value);
    row.disk = maxOf(row.disks);
  } else if (name === "sensors_temperature_celsius") {
    row.temps.set(`${labels.chip}/${labels.sensor}`, value);
    row.temp = maxOf(row.temps);
  } else if (name === "cpu_load1" || name === "system_load1") row.load = value;
  else if (name === "system_uptime_seconds") row.uptime = value;
}

/** cpu % per bucket from per-mode rates: busy modes over all modes. */
function cpuHistory(series) {
  const buckets = new Map();
  for (const s of series) {
    for (const [t, v] of s.points) {
      const b = buckets.get(t) || { busy: 0, total: 0 };
      b.total += v;
      if (!IDLE.has(s.labels.mode)) b.busy += v;
      buckets.set(t, b);
    }
  }
  const times = [...buckets.keys()].sort((a, b) => a - b);
  return [times, times.map((t) => { const b = buckets.get(t); return b.total > 0 ? (100 * b.busy) / b.total : null; })];
}

/** The newest rate of a whole bucket: the query layer divides a bucket's increase by the full
 * step, so the newest bucket reads low while it fills, or when the host stopped within it. */
function netLast(series, name) {
  let sum = null;
  for (const s of series) {
    if (s.name !== name || s.labels.interface === "lo" || !s.points.length) continue;
    sum = (sum || 0) + s.points[Math.max(0, s.points.length - 2)][1];
  }
  return sum;
}

function status(row, now) {
  if (!row.lastSeen) return ["silent", "never seen"];
  const quiet = now - row.lastSeen;
  if (quiet > SILENT_S) return ["silent", `silent since ${fmt.time(row.lastSeen)} (${fmt.duration(quiet)})`];
  return ["up", row.uptime !== null ? `up ${fmt.duration(row.uptime)}` : "up"];
}

function sortValue(row, column, now) {
  switch (column) {
    case "host": return row.host;
    case "status": return status(row, now)[0] === "up" ? 1 : 0;
    case "net": return (row.netIn || 0) + (row.netOut || 0);
    default: return row[column] === null ? -Infinity : row[column];
  }
}

export async function render(main) {
  const started = performance.now();
  main.innerHTML = `<div class="bar"><h1>Hosts</h1>
    <label class="filter">Filter <input type="search" id="filter" placeholder="host name"></label>
    <label class="filter">Show <select id="show"><option value="all">all</option>
      <option value="up">up</option><option value="silent">silent</option>
      <option value="alerting">with alerts</option></select></label>
    <span class="muted" id="count"></span></div>
    <div class="table-wrap"><table class="hosts" id="hosts"><thead><tr></tr></thead><tbody></tbody></table></div>`;
  const table = main.querySelector("#hosts");
  const rows = new Map();
  const cells = new Map();
  let sortBy = "host";
  let ascending = true;

  const controller = new AbortController();
  const signal = controller.signal;
  const [hosts, latest, hour, alerts] = await Promise.all([
    all("/hosts", signal),
    all(`/latest?selector=${q(`{__name__=~"${GAUGES.join("|")}"}`)}`, signal),
    // Past the API's points cap (thousands of hosts) the table still comes, without history.
    api(`/query?selector=${q(`{__name__=~"${COUNTERS.join("|")}"}`)}&start=-1h&step=60&rate=true`, { signal })
      .catch((failure) => (failure.status === 422 ? { series: [] } : Promise.reject(failure))),
    activeAlerts(signal),
  ]);
  for (const info of hosts) rows.set(info.host, blank(info));
  for (const v of latest) {
    const row = rows.get(v.host);
    if (row) gauge(row, v.name, v.labels, v.value);
  }
  const byHost = new Map();
  for (const s of hour.series) {
    if (!byHost.has(s.host)) byHost.set(s.host, []);
    byHost.get(s.host).push(s);
  }
  for (const [host, series] of byHost) {
    const row = rows.get(host);
    if (!row) continue;
    [row.sparkX, row.sparkV] = cpuHistory(series.filter((s) => s.name === "cpu_time_seconds"));
    const known = row.sparkV.filter((v) => v !== null);
    row.cpu = known.length ? known[known.length - 1] : null;
    row.netIn = netLast(series, "net_received_bytes");
    row.netOut = netLast(series, "net_sent_bytes");
  }
  for (const [host, n] of alerts) if (rows.has(host)) rows.get(host).alerts = n;

  const head = table.querySelector("thead tr");
  for (const [column, title] of COLUMNS) {
    const th = document.createElement("th");
    th.scope = "col";
    if (column) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = title;
      button.addEventListener("click", () => {
        ascending = sortBy === column ? !ascending : column === "host";
        sortBy = column;
        arrange();
      });
      th.dataset.column = column;
      th.append(button);
    } else th.textContent = title;
    head.append(th);
  }

  const body = table.querySelector("tbody");
  for (const row of rows.values()) {
    const tr = document.createElement("tr");
    tr.dataset.host = row.host;
    tr.innerHTML = `<th scope="row"><a data-nav></a></th><td class="status"><span class="dot"></span><span></span></td>
      <td data-k="cpu"></td><td data-k="mem"></td><td data-k="disk"></td><td data-k="net"></td>
      <td data-k="temp"></td><td data-k="load"></td><td data-k="alerts"></td><td class="spark"></td>`;
    const link = tr.querySelector("a");
    link.href = `/hosts/${encodeURIComponent(row.host)}`;
    link.textContent = row.host;
    body.append(tr);
    const sparkBox = tr.querySelector(".spark");
    cells.set(row.host, { tr, spark: spark(sparkBox, row.sparkX, row.sparkV, "percent") });
  }

  function paint(row) {
    const { tr, spark: line } = cells.get(row.host);
    const now = Date.now() / 1000;
    const [state, text] = status(row, now);
    tr.dataset.status = state;
    tr.querySelector(".status span:last-child").textContent = text;
    const set = (k, v) => { tr.querySelector(`[data-k="${k}"]`).textContent = v; };
    set("cpu", fmt.unit(row.cpu, "percent"));
    set("mem", fmt.unit(row.mem, "percent"));
    set("disk", fmt.unit(row.disk, "percent"));
    set("net", row.netIn === null ? "–" : `${fmt.unit(row.netIn, "bytes", true)} / ${fmt.unit(row.netOut, "bytes", true)}`);
    set("temp", fmt.unit(row.temp, "celsius"));
    set("load", row.load === null ? "–" : row.load.toFixed(2));
    set("alerts", row.alerts ? String(row.alerts) : "none");
    tr.querySelector('[data-k="alerts"]').classList.toggle("alerting", row.alerts > 0);
    line.set(row.sparkX, row.sparkV);
  }

  const filter = main.querySelector("#filter");
  const show = main.querySelector("#show");
  function arrange() {
    const now = Date.now() / 1000;
    const text = filter.value.trim().toLowerCase();
    const ordered = [...rows.values()].sort((a, b) => {
      const x = sortValue(a, sortBy, now);
      const y = sortValue(b, sortBy, now);
      const c = x < y ? -1 : x > y ? 1 : a.host.localeCompare(b.host);
      return ascending ? c : -c;
    });
    let shown = 0;
    for (const row of ordered) {
      const { tr } = cells.get(row.host);
      const state = status(row, now)[0];
      const visible = row.host.toLowerCase().includes(text)
        && (show.value === "all" || (show.value === "alerting" ? row.alerts > 0 : show.value === state));
      tr.hidden = !visible;
      shown += visible ? 1 : 0;
      body.append(tr);
    }
    for (const th of head.querySelectorAll("th[data-column]")) {
      th.setAttribute("aria-sort", th.dataset.column === sortBy ? (ascending ? "ascending" : "descending") : "none");
    }
    main.querySelector("#count").textContent = `${shown} of ${rows.size} hosts`;
  }
  filter.addEventListener("input", arrange);
  show.addEventListener("change", arrange);

  for (const row of rows.values()) paint(row);
  arrange();
  performance.mark("unity-ready");
  document.body.dataset.ready = "overview";
  window.unity.readyMs = performance.now() - started;

  // Live: gauges as they come, counters as rates between consecutive samples.
  const rates = new Rates();
  const dirty = new Set();
  const cpuPrev = new Map();
  const stop = follow(`{__name__=~"${[...GAUGES, ...COUNTERS].join("|")}"}`, (batch) => {
    const row = rows.get(batch.host);
    if (!row) return;
    const ts = seconds(batch.ts);
    row.lastSeen = Math.max(row.lastSeen, ts);
    const modes = {};
    for (const s of batch.samples) {
      const t = s.ts ? seconds(s.ts) : ts;
      if (s.name === "cpu_time_seconds") modes[s.labels.mode] = s.value;
      else if (s.name === "net_received_bytes" || s.name === "net_sent_bytes") {
        const r = rates.rate(key(batch, s), t, s.value);
        if (r !== null && s.labels.interface !== "lo") {
          const per = row.ifaces.get(s.name) || new Map();
          per.set(s.labels.interface, r);
          row.ifaces.set(s.name, per);
          row[s.name === "net_received_bytes" ? "netIn" : "netOut"] = [...per.values()].reduce((a, b) => a + b, 0);
        }
      } else gauge(row, s.name, s.labels || {}, s.value);
    }
    if (Object.keys(modes).length) {
      const before = cpuPrev.get(row.host);
      cpuPrev.set(row.host, modes);
      if (before) {
        let busy = 0;
        let total = 0;
        for (const [mode, v] of Object.entries(modes)) {
          const d = v - (before[mode] ?? v);
          total += d;
          if (!IDLE.has(mode)) busy += d;
        }
        if (total > 0) {
          row.cpu = (100 * busy) / total;
          row.sparkX.push(ts);
          row.sparkV.push(row.cpu);
          while (row.sparkX.length && row.sparkX[0] < ts - HOUR) {
            row.sparkX.shift();
            row.sparkV.shift();
          }
        }
      }
    }
    dirty.add(row);
  });
  let ticks = 0;
  const timer = setInterval(() => {
    // Every row now and then: a host that sends nothing turns silent without an event.
    for (const row of ++ticks % 5 ? dirty : rows.values()) paint(row);
    if (dirty.size) window.unity.liveEvents = (window.unity.liveEvents || 0) + dirty.size;
    dirty.clear();
    arrange();
  }, 1000);
  return () => {
    controller.abort();
    stop();
    clearInterval(timer);
    for (const { spark: line } of cells.values()) line.destroy();
  };
}
