// The time range of a page, kept in its URL: ?range=6h, or ?from=..&to=.. (epoch seconds).

export const PRESETS = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
// Steps the query layer accepts; a chart wants a few hundred points across its width.
const STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const POINTS = 480;

export function fromUrl(params, fallback = "1h") {
  const from = Number(params.get("from"));
  const to = Number(params.get("to"));
  if (from > 0 && to > from) return { preset: null, from, to };
  const preset = PRESETS[params.get("range")] ? params.get("range") : fallback;
  const now = Date.now() / 1000;
  return { preset, from: now - PRESETS[preset], to: now };
}

export function toUrl(params, range) {
  params.delete("range");
  params.delete("from");
  params.delete("to");
  if (range.preset) params.set("range", range.preset);
  else {
    params.set("from", String(Math.floor(range.from)));
    params.set("to", String(Math.ceil(range.to)));
  }
}

export function step(range) {
  const wanted = (range.to - range.from) / POINTS;
  return STEPS.find((s) => s >= wanted) || STEPS[STEPS.length - 1];
}

function local(epoch) {
  const d = new Date(epoch * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

/** The picker: preset buttons, and two datetime inputs for a custom range. */
export function picker(range, onChange) {
  const box = document.createElement("div");
  box.className = "range";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Time range");
  for (const name of Object.keys(PRESETS)) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.dataset.range = name;
    button.setAttribute("aria-pressed", String(range.preset === name));
    button.addEventListener("click", () => {
      const now = Date.now() / 1000;
      onChange({ preset: name, from: now - PRESETS[name], to: now });
    });
    box.append(button);
  }
  const custom = document.createElement("form");
  custom.className = "custom";
  custom.innerHTML = `<label>From <input type="datetime-local" name="from" required></label>
    <label>To <input type="datetime-local" name="to" required></label>
    <button type="submit">Apply</button>`;
  custom.elements.from.value = local(range.from);
  custom.elements.to.value = local(range.to);
  custom.addEventListener("submit", (event) => {
    event.preventDefault();
    const from = new Date(custom.elements.from.value).getTime() / 1000;
    const to = new Date(custom.elements.to.value).getTime() / 1000;
    if (to > from) onChange({ preset: null, from, to });
  });
  box.append(custom);
  return box;
}
