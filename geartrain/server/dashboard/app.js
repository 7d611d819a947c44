// geartrain dashboard: polls the JSON API (/api/...), computes rates from the counters between two
// polls, keeps a short history per function for the sparklines, and cancels queued jobs with
// DELETE /api/jobs/{handle}. No build step, no framework: plain DOM, text set with textContent.
"use strict";

const params = new URLSearchParams(location.search);
const INTERVAL = Math.max(250, Number(params.get("interval")) || 2000); // ms between polls
const HISTORY = 60; // samples kept per function for the sparklines
const SVG = "http://www.w3.org/2000/svg";

const series = new Map(); // function name_url -> {done: [], waiting: []}
let previous = null; // {t, server counters, functions: Map(name_url -> counters)}

async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store"});
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function rate(now, before, seconds) {
  if (before === undefined || seconds <= 0) return null;
  return Math.max(0, (now - before) / seconds);
}

function fmtRate(value) {
  if (value === null) return "–";
  if (value === 0) return "0";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
}

function sparkline(values, cls) {
  const width = 120, height = 22, pad = 2;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1e-9, ...values);
  const step = (width - 2 * pad) / Math.max(1, HISTORY - 1);
  const offset = HISTORY - values.length;
  const points = values.map((v, i) => {
    const x = pad + (offset + i) * step;
    const y = height - pad - (v / max) * (height - 2 * pad);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("class", "base");
  base.setAttribute("x1", pad);
  base.setAttribute("x2", width - pad);
  base.setAttribute("y1", height - pad + 0.5);
  base.setAttribute("y2", height - pad + 0.5);
  svg.append(base);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("class", cls);
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  const title = document.createElementNS(SVG, "title");
  title.textContent = values.length ? `last ${fmtRate(values[values.length - 1])}, max ${fmtRate(Math.max(...values))}` : "";
  svg.append(title);
  return svg;
}

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

function setStatus(text, kind) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = `status ${kind}`;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  document.getElementById(`${tableId}-empty`).hidden = rows.length > 0;
}

function renderServer(server, dt) {
  document.getElementById("server").textContent =
    `${server.version} · ${server.listen.join(", ")} · queue ${server.queue} · up ${fmtAge(server.uptime)}`;
  document.getElementById("card-connections").textContent = server.connections;
  document.getElementById("card-workers").textContent = server.workers;
  document.getElementById("card-jobs").textContent = server.jobs;
  const before = previous && previous.server;
  for (const key of ["submitted", "completed", "failed"]) {
    const value = before ? rate(server.counters[key], before[key], dt) : null;
    document.getElementById(`card-${key}`).textContent = fmtRate(value);
  }
}

function renderFunctions(functions, dt) {
  const seen = new Set();
  const rows = functions.map((f) => {
    seen.add(f.name_url);
    const before = previous && previous.functions.get(f.name_url);
    const c = f.counters;
    const submitted = before ? rate(c.submitted, before.submitted, dt) : null;
    const completed = before ? rate(c.completed, before.completed, dt) : null;
    const failed = before ? rate(c.failed + c.exceptions, before.failed + before.exceptions, dt) : null;
    let s = series.get(f.name_url);
    if (!s) series.set(f.name_url, (s = {done: [], waiting: []}));
    if (completed !== null) push(s.done, completed);
    push(s.waiting, f.waiting);
    const q = f.queued;
    return el("tr", {"data-function": f.name},
      el("td", {class: "name", text: f.name, title: f.name}),
      el("td", {class: "num", text: `${q.high} / ${q.normal} / ${q.low}`}),
      el("td", {class: "num", text: f.delayed}),
      el("td", {class: "num", text: f.running}),
      el("td", {class: "num", text: f.workers}),
      el("td", {class: "num", text: fmtRate(submitted)}),
      el("td", {class: "num", text: fmtRate(completed)}),
      el("td", {class: "num", text: fmtRate(failed)}),
      el("td", {}, sparkline(s.done, "line-done")),
      el("td", {}, sparkline(s.waiting, "line-wait")));
  });
  for (const key of [...series.keys()]) if (!seen.has(key)) series.delete(key);
  fill("functions", rows);
}

function renderWorkers(workers) {
  fill("workers", workers.map((w) => el("tr", {},
    el("td", {class: "num", text: w.id}),
    el("td", {text: w.host}),
    el("td", {class: "num", text: w.fd}),
    el("td", {class: "name", text: w.client_id}),
    el("td", {class: "name", text: w.functions.join(", ")}),
    el("td", {class: "name", text: w.running.join(", ") || "–"}),
    el("td", {text: w.running.length ? "busy" : w.sleeping ? "sleeping" : "idle"}))));
}

async function cancel(job, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/api/jobs/${job.handle_url}`, {method: "DELETE"});
    if (!response.ok) {
      const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
      throw new Error(body.error);
    }
    button.closest("tr").remove();
    setStatus(`cancelled ${job.handle}`, "ok");
  } catch (error) {
    button.disabled = false;
    setStatus(`cancel failed: ${error.message}`, "error");
  }
}

function renderJobs(listing, now) {
  document.getElementById("jobs-more").textContent = listing.more ? `(first ${listing.jobs.length})` : "";
  fill("jobs", listing.jobs.map((job) => {
    const button = el("button", {class: "cancel", type: "button", title: `cancel ${job.handle}`, text: "cancel"});
    button.addEventListener("click", () => cancel(job, button));
    return el("tr", {"data-handle": job.handle},
      el("td", {class: "name", text: job.handle}),
      el("td", {class: "name", text: job.function}),
      el("td", {text: job.priority}),
      el("td", {text: job.state}),
      el("td", {class: "num", text: fmtAge(job.queued_at ? Math.max(0, now - job.queued_at) : null)}),
      el("td", {class: "num", text: job.size}),
      el("td", {class: "name", text: job.unique}),
      el("td", {}, button));
  }));
}

async function refresh() {
  try {
    const [server, functions, workers, jobs] = await Promise.all([
      getJSON("/api/server"), getJSON("/api/functions"), getJSON("/api/workers"),
      getJSON("/api/jobs?state=queued&limit=200"),
    ]);
    const t = performance.now() / 1000;
    const dt = previous ? t - previous.t : 0;
    renderServer(server, dt);
    renderFunctions(functions.functions, dt);
    renderWorkers(workers.workers);
    renderJobs(jobs, server.started + server.uptime);
    previous = {
      t, server: server.counters,
      functions: new Map(functions.functions.map((f) => [f.name_url, f.counters])),
    };
    setStatus(`updated ${new Date().toLocaleTimeString()}`, "ok");
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, "error");
  } finally {
    setTimeout(refresh, INTERVAL);
  }
}

refresh();
