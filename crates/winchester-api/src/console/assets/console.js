// winchester console: confirmations, row selection and the live tail.
// Every value from the server is inserted as text, never as HTML.
"use strict";

document.addEventListener("submit", (ev) => {
  const button = ev.submitter;
  const text = button && button.dataset.confirm;
  if (!text) return;
  if (!window.confirm(text)) {
    ev.preventDefault();
    return;
  }
  const confirmed = ev.target.querySelector("input[name=confirmed]");
  if (confirmed) confirmed.value = "yes";
});

document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll("input.row").forEach((c) => { c.checked = all.checked; });
    });
  }
  const table = document.getElementById("live");
  if (table) live(table);
});

function live(table) {
  const body = table.querySelector("tbody");
  const status = document.getElementById("live-status");
  const pause = document.getElementById("pause");
  let paused = false;
  let held = [];
  let source = null;
  const max = 500;
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
  const show = (kind, data) => {
    const tr = document.createElement("tr");
    tr.className = "new";
    tr.dataset.kind = kind;
    if (kind === "event") {
      const traits = Object.entries(data).filter(([k]) => !["message_id", "event_type", "timestamp"].includes(k));
      tr.append(cell(data.timestamp || ""), cell("event"), cell(data.event_type || ""),
        cell(traits.map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  ")));
    } else {
      const what = cell("");
      const a = document.createElement("a");
      a.href = "/streams/" + encodeURIComponent(data.stream_id);
      a.textContent = "stream " + data.stream_id;
      what.append(a, document.createTextNode(" " + (data.trigger || "")));
      tr.append(cell(data.at || ""), cell(data.transition || "stream"), what, cell((data.from || "") + " → " + (data.to || "deleted")));
    }
    body.prepend(tr);
    while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
  };
  const handle = (kind) => (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (paused) held.push([kind, data]); else show(kind, data);
  };
  const connect = () => {
    source = new EventSource(table.dataset.src);
    source.addEventListener("open", () => { status.textContent = "live"; });
    source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
    source.addEventListener("event", handle("event"));
    source.addEventListener("stream", handle("stream"));
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    status.textContent = paused ? "paused (new items are held)" : "live";
    if (!paused) { held.forEach(([k, d]) => show(k, d)); held = []; }
  });
  connect();
}
