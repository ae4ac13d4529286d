// Which chart a series goes on: known plugins get composed panels (cpu stacked by mode, one
// chart per disk and per interface...), every other metric a chart of its own.

const PANELS = [
  { id: "cpu", title: "CPU", names: ["cpu_time_seconds"], unit: "percent", stacked: true, cpu: true },
  { id: "load", title: "Load", names: ["cpu_load1", "cpu_load5", "cpu_load15", "system_load1", "system_load5", "system_load15"], unit: "" },
  { id: "memory", title: "Memory", names: ["memory_used_bytes", "memory_cached_bytes", "memory_buffers_bytes", "memory_free_bytes", "memory_total_bytes"], unit: "bytes" },
  { id: "swap", title: "Swap", names: ["swap_used_bytes", "swap_total_bytes"], unit: "bytes" },
  { id: "disk", title: "Disk", names: ["disk_used_bytes", "disk_total_bytes"], unit: "bytes", split: "mount" },
  { id: "net", title: "Network", names: ["net_received_bytes", "net_sent_bytes"], unit: "bytes", rate: true, split: "interface" },
  { id: "diskio", title: "Disk I/O", names: ["diskio_read_bytes", "diskio_written_bytes"], unit: "bytes", rate: true, split: "device" },
  { id: "temp", title: "Temperatures", names: ["sensors_temperature_celsius"], unit: "celsius" },
  { id: "fans", title: "Fans", names: ["sensors_fan_rpm"], unit: "rpm" },
  { id: "processes", title: "Processes", names: ["processes_total", "system_processes", "system_threads"], unit: "" },
  { id: "process-mem", title: "Process memory", names: ["process_memory_rss_bytes"], unit: "bytes" },
];
const SHORT = { net_received_bytes: "in", net_sent_bytes: "out", diskio_read_bytes: "read", diskio_written_bytes: "written" };
// Series a host page leaves out: one per core and mode is too many lines to read.
export const LEFT_OUT = ["cpu_core_time_seconds"];
// Not busy: the overview's cpu % leaves both out; the cpu chart stacks iowait (worth seeing).
export const IDLE = new Set(["idle", "iowait"]);

function labelText(labels, skip) {
  return Object.entries(labels)
    .filter(([k]) => k !== skip)
    .sort()
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

/** The key of a series within one host, as live.key gives it without the host. */
export function seriesKey(s) {
  const labels = Object.entries(s.labels || {}).sort().map(([k, v]) => `${k}=${v}`).join(",");
  return `${s.plugin}|${s.instance}|${s.name}|${labels}`;
}

function shortName(name) {
  return SHORT[name] || name.replace(/^(memory|swap|disk|cpu|system|sensors|processes|process)_/, "").replace(/_(bytes|celsius|rpm)$/, "");
}

/**
 * Group a host's series (from /query, or live identities) into panels:
 * [{id, title, unit, rate, stacked, cpu, members: [{key, label, series}]}], in display order.
 */
export function group(series) {
  const panels = new Map();
  for (const s of series) {
    if (LEFT_OUT.includes(s.name)) continue;
    const def = PANELS.find((p) => p.names.includes(s.name));
    let id;
    let panel;
    if (def) {
      const part = def.split ? s.labels[def.split] || "" : "";
      id = `${def.id}:${part}`;
      panel = panels.get(id) || {
        id, order: PANELS.indexOf(def), title: part ? `${def.title} ${part}` : def.title,
        unit: def.unit, rate: Boolean(def.rate), stacked: Boolean(def.stacked), cpu: Boolean(def.cpu), members: [],
      };
    } else {
      id = `${s.plugin}:${s.name}`;
      panel = panels.get(id) || {
        id, order: PANELS.length, title: `${s.plugin}: ${s.name}`, unit: s.unit,
        rate: s.kind === "counter", stacked: false, cpu: false, members: [],
      };
    }
    panels.set(id, panel);
    let label;
    if (panel.cpu) label = s.labels.mode || "cpu";
    else if (def) label = [def.names.length > 1 || def.split === undefined && Object.keys(s.labels).length === 0 ? shortName(s.name) : "", labelText(s.labels, def.split)].filter(Boolean).join(" ") || shortName(s.name);
    else label = labelText(s.labels) || s.instance || s.name;
    if (s.instance && !panel.cpu && def) label += ` (${s.instance})`;
    panel.members.push({ key: seriesKey(s), label, series: s, idle: panel.cpu && s.labels.mode === "idle" });
  }
  for (const panel of panels.values()) panel.members.sort((a, b) => a.label.localeCompare(b.label));
  return [...panels.values()].sort((a, b) => a.order - b.order || a.title.localeCompare(b.title));
}

/** x (union of times) and one value array per member, aligned; cpu modes become percent. */
export function align(panel) {
  const times = new Set();
  for (const m of panel.members) for (const [t] of m.series.points) times.add(t);
  const x = [...times].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const values = panel.members.map((m) => {
    const out = new Array(x.length).fill(null);
    for (const [t, v] of m.series.points) out[index.get(t)] = v;
    return out;
  });
  if (!panel.cpu) return { x, values };
  const totals = x.map((_, i) => values.reduce((sum, vs) => sum + (vs[i] || 0), 0));
  const percent = values.map((vs) => vs.map((v, i) => (v === null || !totals[i] ? null : (100 * v) / totals[i])));
  return { x, values: percent.filter((_, i) => !panel.members[i].idle) };
}

/** The members a panel draws: cpu's idle mode only counts towards the total. */
export function drawn(panel) {
  return panel.members.filter((m) => !m.idle);
}
