// Numbers for people: bytes in KiB/MiB/GiB, rates per second, °C, %, durations.

const BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const SI = ["", "k", "M", "G", "T", "P"];

// `extra` digits beyond the usual: axis ticks closer together than the usual precision shows.
let extra = 0;

function fixed(v, usual) {
  return v.toFixed(Math.min(usual + extra, 20));
}

function scaled(value, base, units) {
  let v = Math.abs(value);
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i += 1;
  }
  const digits = v >= 100 || i === 0 ? 0 : v >= 10 ? 1 : 2;
  return `${value < 0 ? "-" : ""}${fixed(v, digits)} ${units[i]}`.trimEnd();
}

export function bytes(value) {
  return scaled(value, 1024, BINARY);
}

export function number(value) {
  if (Number.isInteger(value) && Math.abs(value) < 10000 && !extra) return String(value);
  if (Math.abs(value) < 1000) return fixed(value, Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  return scaled(value, 1000, SI);
}

/** Labels for axis ticks: with as many more digits as it takes for them to differ. */
export function ticks(values, show) {
  let labels = values.map(show);
  for (extra = 1; extra <= 6 && new Set(labels).size < labels.length; extra++) labels = values.map(show);
  extra = 0;
  return labels;
}

export function percent(value) {
  return `${fixed(value, value >= 10 || value === 0 ? 0 : 1)} %`;
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const parts = [
    [Math.floor(s / 86400), "d"],
    [Math.floor((s % 86400) / 3600), "h"],
    [Math.floor((s % 3600) / 60), "min"],
  ].filter(([n]) => n > 0);
  return parts
    .slice(0, 2)
    .map(([n, u]) => `${n} ${u}`)
    .join(" ");
}

export function ago(date) {
  return `${duration((Date.now() - date.getTime()) / 1000)} ago`;
}

/** A value in its series' unit; `rate` marks a per-second rate of a counter. */
export function unit(value, unitName, rate = false) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const perSecond = rate ? "/s" : "";
  switch (unitName) {
    case "bytes":
      return bytes(value) + perSecond;
    case "percent":
      return percent(value);
    case "celsius":
      return `${fixed(value, 1)} °C`;
    case "seconds":
      return rate ? `${number(value)} s/s` : duration(value);
    case "hertz":
      return `${scaled(value, 1000, SI)}Hz`;
    case "rpm":
      return `${number(value)} rpm`;
    case "volts":
      return `${number(value)} V`;
    case "watts":
      return `${number(value)} W`;
    case "amperes":
      return `${number(value)} A`;
    case "watt-hours":
      return `${number(value)} Wh`;
    case "":
    case undefined:
      return number(value) + perSecond;
    default:
      return `${number(value)} ${unitName}${perSecond}`;
  }
}

export function time(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString();
}
