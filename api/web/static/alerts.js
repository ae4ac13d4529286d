// Alerts: firing and pending (ack), history, silences and maintenance windows.

import { all, api, can } from "./api.js";
import * as fmt from "./format.js";
import { seconds } from "./live.js";

/** Pending and firing alerts per host (empty when this API has no alerts). */
export async function activeAlerts(signal) {
  const counts = new Map();
  let items = [];
  try {
    items = await all("/alerts", signal);
  } catch (failure) {
    if (failure.status === 404) return counts;
    throw failure;
  }
  for (const a of items) {
    if (a.state === "resolved") continue;
    const host = a.labels.host || "";
    counts.set(host, (counts.get(host) || 0) + 1);
  }
  return counts;
}

function when(ts) {
  return ts ? fmt.ago(new Date(ts)) : "–";
}

function labelsText(labels) {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ");
}

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.append(td);
  return td;
}

function table(headings) {
  const t = document.createElement("table");
  const tr = document.createElement("tr");
  for (const h of headings) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    tr.append(th);
  }
  t.createTHead().append(tr);
  t.createTBody();
  return t;
}

function wrap(t) {
  const div = document.createElement("div");
  div.className = "table-wrap";
  div.append(t);
  return div;
}

function errorLine(box, failure) {
  box.textContent = failure ? failure.message : "";
}

export async function render(main) {
  main.innerHTML = `<h1>Alerts</h1>
    <section aria-labelledby="active-h"><h2 id="active-h">Firing and pending</h2><div id="active"></div></section>
    <section aria-labelledby="silences-h"><h2 id="silences-h">Silences</h2><div id="silences"></div></section>
    <section aria-labelledby="maint-h"><h2 id="maint-h">Maintenance windows</h2><div id="maintenance"></div></section>
    <section aria-labelledby="history-h"><h2 id="history-h">History (7 days)</h2><div id="history"></div></section>`;
  const writer = can("write");

  async function active() {
    const box = main.querySelector("#active");
    const items = (await all("/alerts")).filter((a) => a.state !== "resolved");
    const t = table(["State", "Severity", "Rule", "Labels", "Value", "Since", "Message", ""]);
    for (const a of items) {
      const tr = document.createElement("tr");
      tr.dataset.state = a.state;
      cell(tr, a.state, `state ${a.state}`);
      cell(tr, a.severity, `sev ${a.severity}`);
      cell(tr, a.rule);
      cell(tr, labelsText(a.labels));
      cell(tr, a.value === null ? "–" : fmt.unit(a.value, a.unit));
      cell(tr, when(a.since));
      cell(tr, a.message);
      const td = cell(tr, a.acked_at ? `acked ${when(a.acked_at)}` : "");
      if (writer && !a.acked_at) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Ack";
        button.className = "admin";
        button.addEventListener("click", async () => {
          try {
            await api(`/alerts/${a.id}/ack`, { method: "POST" });
            await active();
          } catch (failure) {
            td.textContent = failure.message;
          }
        });
        td.append(button);
      }
      t.tBodies[0].append(tr);
    }
    box.replaceChildren(items.length ? wrap(t) : Object.assign(document.createElement("p"), { className: "muted", textContent: "Nothing is firing or pending." }));
  }

  async function windows(kind) {
    const box = main.querySelector(kind === "silences" ? "#silences" : "#maintenance");
    const { items } = await api(`/alerts/${kind}`);
    const t = kind === "silences"
      ? table(["Matchers", "From", "Until", "By", "Comment", ""])
      : table(["Name", "Matchers", "Starts", "Duration", "Repeats", "Open now", ""]);
    for (const w of items) {
      const tr = document.createElement("tr");
      if (kind === "silences") {
        cell(tr, w.matchers);
        cell(tr, fmt.time(seconds(w.starts_at)));
        cell(tr, fmt.time(seconds(w.ends_at)));
        cell(tr, w.created_by);
        cell(tr, w.comment);
      } else {
        cell(tr, w.name);
        cell(tr, w.matchers);
        cell(tr, fmt.time(seconds(w.starts_at)));
        cell(tr, fmt.duration(w.duration_s));
        cell(tr, w.recurrence);
        cell(tr, w.active ? "yes" : "no");
      }
      const td = cell(tr, "");
      if (writer) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "admin";
        button.textContent = kind === "silences" ? "End" : "Delete";
        button.addEventListener("click", async () => {
          try {
            await api(`/alerts/${kind}/${w.id}`, { method: "DELETE" });
            await windows(kind);
          } catch (failure) {
            td.textContent = failure.message;
          }
        });
        td.append(button);
      }
      t.tBodies[0].append(tr);
    }
    box.replaceChildren(wrap(t));
    if (!writer) return;
    const form = document.createElement("form");
    form.className = "inline admin";
    form.noValidate = true;
    form.innerHTML = kind === "silences"
      ? `<label>Matchers <input name="matchers" placeholder='{host="nas"}' required></label>
         <label>Hours <input name="hours" type="number" min="0" step="0.5" value="2"></label>
         <label>Comment <input name="comment"></label><button type="submit">Silence</button>`
      : `<label>Name <input name="name"></label>
         <label>Matchers <input name="matchers" placeholder='{host="nas"}' required></label>
         <label>Starts <input name="starts" type="datetime-local" required></label>
         <label>Hours <input name="hours" type="number" min="0" step="0.5" value="1"></label>
         <label>Repeats <select name="recurrence"><option>once</option><option>daily</option><option>weekly</option></select></label>
         <button type="submit">Add window</button>`;
    const problem = document.createElement("p");
    problem.className = "error";
    problem.setAttribute("role", "alert");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = form.elements;
      const duration = Number(f.hours.value) * 3600;
      const body = kind === "silences"
        ? { matchers: f.matchers.value, duration_s: duration, comment: f.comment.value }
        : { matchers: f.matchers.value, name: f.name.value, duration_s: duration, recurrence: f.recurrence.value,
            starts_at: f.starts.value ? new Date(f.starts.value).toISOString() : "" };
      try {
        await api(`/alerts/${kind}`, { method: "POST", body });
        await windows(kind);
      } catch (failure) {
        errorLine(problem, failure);
      }
    });
    box.append(form, problem);
  }

  async function history() {
    const box = main.querySelector("#history");
    const { items } = await api("/alerts/history?limit=200");
    const t = table(["Time", "State", "Severity", "Rule", "Labels", "Value", "Notified"]);
    for (const h of items) {
      const tr = document.createElement("tr");
      cell(tr, fmt.time(seconds(h.ts)));
      cell(tr, h.state, `state ${h.state}`);
      cell(tr, h.severity, `sev ${h.severity}`);
      cell(tr, h.rule);
      cell(tr, labelsText(h.labels));
      cell(tr, h.value === null ? "–" : fmt.number(h.value));
      cell(tr, h.suppressed ? `no: ${h.suppressed}` : "yes");
      t.tBodies[0].append(tr);
    }
    box.replaceChildren(items.length ? wrap(t) : Object.assign(document.createElement("p"), { className: "muted", textContent: "No changes in the last 7 days." }));
  }

  try {
    await Promise.all([active(), windows("silences"), windows("maintenance"), history()]);
  } catch (failure) {
    if (failure.status !== 404) throw failure;
    main.querySelector("#active").textContent = "This API has no alerts.";
  }
  document.body.dataset.ready = "alerts";
  const timer = setInterval(() => active().catch(() => {}), 10000);
  return () => clearInterval(timer);
}
