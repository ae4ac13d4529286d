// Plugins: the registry with health, last runs and errors; enable and disable; a config
// editor generated from each plugin's JSON Schema, showing the API's errors in place.

import { all, api, can } from "./api.js";
import * as fmt from "./format.js";
import { errorPath, schemaForm } from "./form.js";
import { seconds } from "./live.js";

function health(p) {
  if (!p.health) return "no run yet";
  const at = p.health_at ? ` ${fmt.ago(new Date(p.health_at))}` : "";
  return `${p.health}${at}${p.health_message ? `: ${p.health_message}` : ""}`;
}

async function details(p, box, refresh) {
  const writer = can("write");
  box.innerHTML = `<div class="detail-grid"><section><h3>Health, last 24 h</h3><p class="runs-summary"></p>
    <h3>Last runs</h3><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">Time</th>
    <th scope="col">Status</th><th scope="col">Took</th><th scope="col">Samples</th><th scope="col">Message</th>
    </tr></thead><tbody></tbody></table></div></section>
    <section class="config"><h3>Config</h3></section></div>`;
  const [h, runs, config] = await Promise.all([
    api(`/plugins/${p.id}/health`),
    api(`/plugins/${p.id}/runs?limit=20`),
    api(`/plugins/${p.id}/config`),
  ]);
  box.querySelector(".runs-summary").textContent = Object.entries(h.runs).map(([k, n]) => `${n} ${k}`).join(", ") || "no runs";
  const body = box.querySelector(".runs tbody");
  for (const run of runs.items) {
    const tr = document.createElement("tr");
    tr.dataset.status = run.status;
    for (const text of [fmt.time(seconds(run.time)), run.status, `${run.duration_ms.toFixed(0)} ms`, String(run.samples), run.message]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  const section = box.querySelector(".config");
  const editor = schemaForm(config.config_schema, config.config);
  const form = document.createElement("form");
  form.noValidate = true;
  form.className = "config-form";
  form.append(editor.element);
  const status = document.createElement("p");
  status.className = "muted";
  status.setAttribute("role", "status");
  status.textContent = `revision ${config.revision}`;
  if (writer) {
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "admin";
    save.textContent = "Save config";
    form.append(save);
  } else {
    for (const c of form.querySelectorAll("input, select, textarea")) c.disabled = true;
  }
  form.append(status);
  let revision = config.revision;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    editor.clearErrors();
    status.textContent = "saving…";
    let value;
    try {
      value = editor.read();
    } catch (failure) {
      editor.showError(failure.path || "$", failure.message);
      return;
    }
    try {
      const saved = await api(`/plugins/${p.id}/config`, { method: "PUT", body: { config: value, revision } });
      revision = saved.revision;
      status.textContent = `saved: revision ${revision}`;
    } catch (failure) {
      const [path, message] = failure.status === 422 ? errorPath(failure.message) : ["$", failure.message];
      editor.showError(path, message);
      status.textContent = "not saved";
    }
  });
  section.append(form);
  if (writer) {
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "admin";
    toggle.textContent = p.enabled ? "Disable plugin" : "Enable plugin";
    toggle.addEventListener("click", async () => {
      try {
        await api(`/plugins/${p.id}/${p.enabled ? "disable" : "enable"}`, { method: "POST" });
        await refresh();
      } catch (failure) {
        status.textContent = failure.message;
      }
    });
    section.prepend(toggle);
  }
}

export async function render(main) {
  main.innerHTML = `<div class="bar"><h1>Plugins</h1>
    <label class="filter">Filter <input type="search" id="filter" placeholder="host or plugin"></label></div>
    <div class="table-wrap"><table class="plugins"><thead><tr><th scope="col">Host</th><th scope="col">Plugin</th>
    <th scope="col">Instance</th><th scope="col">Source</th><th scope="col">Enabled</th><th scope="col">Health</th>
    <th scope="col">Last seen</th><th scope="col">Interval</th><th scope="col"></th></tr></thead><tbody></tbody></table></div>`;
  const body = main.querySelector("tbody");
  const filter = main.querySelector("#filter");
  const open = new Set();

  async function refresh() {
    const items = await all("/plugins");
    body.replaceChildren();
    for (const p of items) {
      const tr = document.createElement("tr");
      tr.dataset.plugin = p.plugin;
      tr.dataset.host = p.host;
      tr.dataset.health = p.health || "none";
      const texts = [p.host, p.plugin, p.instance || "–", p.source, p.enabled ? "yes" : "no", health(p),
        p.last_seen ? fmt.ago(new Date(p.last_seen)) : "never", p.interval_s ? fmt.duration(p.interval_s) : "default"];
      for (const text of texts) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      tr.children[5].className = `health ${p.health || "none"}`;
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "details";
      button.textContent = "Details";
      const detail = document.createElement("tr");
      detail.className = "detail";
      detail.hidden = true;
      const cell = document.createElement("td");
      cell.colSpan = 9;
      detail.append(cell);
      const show = async () => {
        detail.hidden = false;
        button.setAttribute("aria-expanded", "true");
        open.add(p.id);
        try {
          await details(p, cell, refresh);
        } catch (failure) {
          cell.textContent = failure.message;
        }
      };
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", () => {
        if (detail.hidden) show();
        else {
          detail.hidden = true;
          open.delete(p.id);
          button.setAttribute("aria-expanded", "false");
        }
      });
      td.append(button);
      tr.append(td);
      body.append(tr, detail);
      if (open.has(p.id)) await show();
    }
    apply();
  }

  function apply() {
    const text = filter.value.trim().toLowerCase();
    for (const tr of body.querySelectorAll("tr[data-plugin]")) {
      const hit = `${tr.dataset.host} ${tr.dataset.plugin}`.toLowerCase().includes(text);
      tr.hidden = !hit;
      if (!hit) tr.nextElementSibling.hidden = true;
    }
  }
  filter.addEventListener("input", apply);
  await refresh();
  document.body.dataset.ready = "plugins";
}
