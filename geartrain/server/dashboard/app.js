// geartrain dashboard: polls the JSON API (/api/...), computes rates from the counters between two
// polls, keeps a short history per function for the sparklines, cancels queued jobs with
// DELETE /api/jobs/{handle}, and requeues or discards failed jobs (POST /api/failed/{id}/requeue,
// DELETE /api/failed/{id}). No build step, no framework: plain DOM, text set with textContent.
"use strict";

const params = new URLSearchParams(location.search);
const INTERVAL = Math.max(250, Number(params.get("interval")) || 2000); // ms between polls
const HISTORY = 60; // samples kept per function for the sparklines
const SVG = "http://www.w3.org/2000/svg";

const series = new Map(); // function name_url -> {done: [], waiting: []}
let previous = null; // {t, server counters, functions: Map(name_url -> counters), workers: Map(id -> ran)}
const expanded = new Set(); // ids of failed jobs whose tries are shown
const details = new Map(); // failed job id -> its GET /api/failed/{id} (fetched when first shown)

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

// what the failed/s figures count: jobs that ended failed or with an exception (the functions' rows and the card)
function failures(counters) {
  return counters.failed + counters.exceptions;
}

function renderServer(server, dt) {
  document.getElementById("server").textContent =
    `${server.version} · ${server.listen.join(", ")} · queue ${server.queue} · up ${fmtAge(server.uptime)}`;
  document.getElementById("card-connections").textContent = server.connections;
  document.getElementById("card-workers").textContent = server.workers;
  document.getElementById("card-jobs").textContent = server.jobs;
  const before = previous && previous.server;
  const totals = {submitted: server.counters.submitted, completed: server.counters.completed,
    failed: failures(server.counters), retried: server.counters.retried};
  for (const [key, total] of Object.entries(totals)) {
    const value = before ? rate(total, key === "failed" ? failures(before) : before[key], dt) : null;
    const card = document.getElementById(`card-${key}`);
    card.textContent = fmtRate(value);
    card.dataset.total = total;
    card.title = `${total} since start`;
  }
  const registry = server.failed_registry, kept = server.kept_results;
  const registryCard = document.getElementById("card-registry");
  registryCard.textContent = registry.size;
  registryCard.title = `${server.counters.buried} buried since start, ${registry.dropped} dropped (--failed-max)`;
  const keptCard = document.getElementById("card-kept");
  keptCard.textContent = kept.count;
  keptCard.title = `${kept.bytes} bytes; ${kept.expired} expired, ${kept.evicted} evicted`;
}

function renderFunctions(functions, dt) {
  const seen = new Set();
  const rows = functions.map((f) => {
    seen.add(f.name_url);
    const before = previous && previous.functions.get(f.name_url);
    const c = f.counters;
    const submitted = before ? rate(c.submitted, before.submitted, dt) : null;
    const completed = before ? rate(c.completed, before.completed, dt) : null;
    const failed = before ? rate(failures(c), failures(before), dt) : null;
    const retried = before ? rate(c.retried, before.retried, dt) : null;
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
      el("td", {class: "num", text: fmtRate(retried)}),
      el("td", {class: "num", text: c.buried}),
      el("td", {}, sparkline(s.done, "line-done")),
      el("td", {}, sparkline(s.waiting, "line-wait")));
  });
  for (const key of [...series.keys()]) if (!seen.has(key)) series.delete(key);
  fill("functions", rows);
}

function renderWorkers(workers, dt) {
  fill("workers", workers.map((w) => {
    const before = previous && previous.workers.get(w.id);
    const ran = w.ran;
    return el("tr", {"data-worker": w.id},
      el("td", {class: "num", text: w.id}),
      el("td", {text: w.host}),
      el("td", {class: "num", text: w.fd}),
      el("td", {class: "name", text: w.client_id}),
      el("td", {class: "name", text: w.functions.join(", ")}),
      el("td", {class: "name", text: w.running.join(", ") || "–"}),
      el("td", {text: w.running.length ? "busy" : w.sleeping ? "sleeping" : "idle"}),
      el("td", {class: "num", text: fmtRate(before ? rate(ran.completed, before.completed, dt) : null)}),
      el("td", {class: "num", text: fmtRate(before ? rate(ran.failed, before.failed, dt) : null)}),
      el("td", {class: "num", text: ran.completed}),
      el("td", {class: "num", text: ran.failed}),
      el("td", {class: "num", text: ran.taken_back}));
  }));
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

function renderRecent(listing, now) {
  document.getElementById("recent-more").textContent =
    listing.remembered > listing.jobs.length ? `(last ${listing.jobs.length} of ${listing.remembered})` : "";
  fill("recent", listing.jobs.map((job) => el("tr", {"data-handle": job.handle, class: `outcome-${job.outcome}`},
    el("td", {class: "name", text: job.handle}),
    el("td", {class: "name", text: job.function}),
    el("td", {class: "outcome", text: job.outcome}),
    el("td", {class: "num", text: `${fmtAge(Math.max(0, now - job.ended_at))} ago`}),
    el("td", {class: "num", text: job.ran === null ? "–" : fmtAge(job.ran)}),
    el("td", {class: "name", text: job.worker ? `${job.worker.id} ${job.worker.client_id}` : "–"}),
    el("td", {class: "error", text: job.error || "", title: job.error || ""}))));
}

async function act(method, path, button, done) {
  button.disabled = true;
  try {
    const response = await fetch(path, {method});
    const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(body.error);
    done(body);
  } catch (error) {
    button.disabled = false;
    setStatus(`${method} ${path} failed: ${error.message}`, "error");
  }
}

function failedButtons(job) {
  const requeue = el("button", {class: "requeue", type: "button", title: `queue job ${job.id} again`, text: "requeue"});
  requeue.addEventListener("click", () => act("POST", `/api/failed/${job.id}/requeue`, requeue, () => {
    requeue.closest("tr").remove();
    setStatus(`requeued failed job ${job.id} (${job.function})`, "ok");
  }));
  const discard = el("button", {class: "cancel discard", type: "button", title: `forget job ${job.id}`,
    text: "discard"});
  discard.addEventListener("click", () => act("DELETE", `/api/failed/${job.id}`, discard, () => {
    discard.closest("tr").remove();
    setStatus(`discarded failed job ${job.id} (${job.function})`, "ok");
  }));
  const tries = el("button", {class: "tries", type: "button", title: "every try's error",
    text: expanded.has(job.id) ? "hide tries" : "tries"});
  tries.addEventListener("click", async () => {
    if (expanded.has(job.id)) expanded.delete(job.id);
    else expanded.add(job.id);
    if (expanded.has(job.id) && !details.has(job.id)) {
      try {
        details.set(job.id, await getJSON(`/api/failed/${job.id}`));
      } catch (error) {
        setStatus(`cannot read failed job ${job.id}: ${error.message}`, "error");
      }
    }
    refreshSoon();
  });
  return [requeue, discard, tries];
}

function renderFailed(listing, now) {
  document.getElementById("failed-more").textContent =
    `(${listing.total} in the registry${listing.dropped ? `, ${listing.dropped} dropped` : ""}` +
    `${listing.more ? `, first ${listing.failed.length} shown` : ""})`;
  const seen = new Set(listing.failed.map((job) => job.id));
  for (const id of [...details.keys()]) if (!seen.has(id)) { details.delete(id); expanded.delete(id); }
  const rows = [];
  for (const job of listing.failed) {
    rows.push(el("tr", {"data-id": job.id},
      el("td", {class: "num", text: job.id}),
      el("td", {class: "name", text: job.function}),
      el("td", {class: "name", text: job.unique}),
      el("td", {class: "num", text: job.tries}),
      el("td", {class: "num", text: `${fmtAge(Math.max(0, now - job.failed_at))} ago`}),
      el("td", {class: "num", text: job.cut ? `${job.size} (cut)` : job.size}),
      el("td", {class: "error", text: job.error || "", title: job.error || ""}),
      el("td", {class: "buttons"}, ...failedButtons(job))));
    const detail = expanded.has(job.id) && details.get(job.id);
    if (detail) {
      const list = el("ol", {class: "tries"}, ...detail.history.map((t) => el("li", {},
        el("span", {class: "how", text: `${t.how} after ${fmtAge(Math.max(0, t.ended_at - t.started_at))}` +
          (t.worker ? ` on ${t.worker}` : "")}),
        el("pre", {text: t.text}))));
      rows.push(el("tr", {class: "tries-row", "data-tries-of": job.id}, el("td", {colspan: 8}, list)));
    }
  }
  fill("failed", rows);
}

let timer = null;
function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 0);
}

async function refresh() {
  try {
    const [server, functions, workers, jobs, recent, failed] = await Promise.all([
      getJSON("/api/server"), getJSON("/api/functions"), getJSON("/api/workers"),
      getJSON("/api/jobs?state=queued&limit=200"), getJSON("/api/recent?limit=50"), getJSON("/api/failed?limit=200"),
    ]);
    const t = performance.now() / 1000;
    const dt = previous ? t - previous.t : 0;
    const now = server.started + server.uptime;
    renderServer(server, dt);
    renderFunctions(functions.functions, dt);
    renderWorkers(workers.workers, dt);
    renderJobs(jobs, now);
    renderRecent(recent, now);
    renderFailed(failed, now);
    previous = {
      t, server: server.counters,
      functions: new Map(functions.functions.map((f) => [f.name_url, f.counters])),
      workers: new Map(workers.workers.map((w) => [w.id, w.ran])),
    };
    setStatus(`updated ${new Date().toLocaleTimeString()}`, "ok");
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, "error");
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, INTERVAL);
  }
}

refresh();
