// Live samples from /api/v1/stream (Server-Sent Events through the session cookie), and
// counters turned into per-second rates between consecutive samples.

/** Follow a selector; `onBatch` gets each event's batch. Returns the closer. */
export function follow(selector, onBatch) {
  const source = new EventSource(`/api/v1/stream?selector=${encodeURIComponent(selector)}`);
  source.addEventListener("sample", (event) => onBatch(JSON.parse(event.data)));
  return () => source.close();
}

export function key(batch, sample) {
  const labels = Object.entries(sample.labels || {})
    .sort()
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `${batch.host}|${batch.plugin}|${batch.instance}|${sample.name}|${labels}`;
}

/** Remembers each counter's last value: `rate` is null on the first sample or after a reset. */
export class Rates {
  constructor() {
    this.last = new Map();
  }

  rate(id, ts, value) {
    const before = this.last.get(id);
    this.last.set(id, [ts, value]);
    if (!before || ts <= before[0] || value < before[1]) return null;
    return (value - before[1]) / (ts - before[0]);
  }
}

export function seconds(ts) {
  return new Date(ts).getTime() / 1000;
}
