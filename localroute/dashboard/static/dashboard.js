// The dashboard page: polls /ui/api/* and draws with plotly.js. Every string from the server
// (queries, answers, names) reaches the DOM as text (textContent), never as markup, and
// reaches plotly with its markup characters escaped (plotly reads a little HTML in labels).
"use strict";

const POLL_NOW_MS = 3000;
const POLL_CHARTS_MS = 10000;
const POLL_RUNS_MS = 60000;
const FOLLOW_UP_MS = 1500;
let followUp = null;
const CONFIG = { displaylogo: false, responsive: true };
const $ = (id) => document.getElementById(id);

function plain(value) {
  return String(value ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillTable(id, items, build) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    build(row, item);
    body.appendChild(row);
  }
}

function list(id, items) {
  const ul = $(id);
  ul.replaceChildren();
  for (const text of items) {
    const li = document.createElement("li");
    li.textContent = text;
    ul.appendChild(li);
  }
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = "none";
    li.className = "muted";
    ul.appendChild(li);
  }
}

const time = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString() : "");
const date = (ts) => new Date(ts * 1000);
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
const mib = (b) => (b === null || b === undefined ? "–" : (b / 1048576).toFixed(0) + " MiB");
const windowName = () => $("window").value;

async function getJSON(url, options) {
  const response = await fetch(url, { cache: "no-store", ...(options || {}) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error((body.error && body.error.message) || `${url}: HTTP ${response.status}`);
  }
  return body;
}

function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
}

function draw(id, traces, layout) {
  if (!window.Plotly) return;
  const base = { margin: { l: 50, r: 10, t: 30, b: 30 }, legend: { orientation: "h" },
                 font: { size: 11 } };
  window.Plotly.react($(id), traces, { ...base, ...layout }, CONFIG);
}

function stacked(series, times, kind) {
  return Object.entries(series).map(([name, values]) => ({
    type: kind || "bar", name: plain(name), x: times, y: values }));
}

// ---- Now -----------------------------------------------------------------------------------

function renderNow(now) {
  $("mode").textContent = now.mode || "?";
  $("mode").className = "mode " + (now.mode || "");
  $("now-mode").textContent = now.mode || "?";
  $("now-cause").textContent = now.cause || "no change since start";
  const change = now.last_change;
  const readings = change ? Object.entries(change.readings || {})
    .filter(([, v]) => v !== null).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`) : [];
  $("now-change").textContent = change
    ? `last change ${time(change.ts)}: ${change.from} → ${change.to} (${change.reason})` +
      (readings.length ? `; readings: ${readings.join(", ")}` : "")
    : "";
  const mem = now.memory || {};
  const instances = mem.instances || [];
  const resident = instances.filter((i) => ["ready", "starting", "stopping"].includes(i.state));
  const held = resident.reduce((s, i) => s + (i.footprint_bytes || 0), 0);
  $("memory-text").textContent = mem.budget_bytes
    ? `${mib(held)} of ${mib(mem.budget_bytes)} budget held by ${resident.length} model(s)`
    : `${resident.length} model(s) resident, no memory budget configured`;
  const traces = resident.map((i) => ({
    type: "bar", orientation: "h", y: ["memory"], x: [(i.footprint_bytes || 0) / 1048576],
    name: plain(`${i.instance} (${i.residency}, ${i.state})`),
    marker: { pattern: { shape: i.residency === "pinned" ? "" : "/" } },
    hovertext: plain(`${i.instance}: ${i.model}, ${mib(i.footprint_bytes)}`),
  }));
  if (mem.budget_bytes) {
    traces.push({ type: "bar", orientation: "h", y: ["memory"], name: "free",
                  x: [Math.max(0, (mem.budget_bytes - held) / 1048576)],
                  marker: { color: "#e0e0e0" } });
  }
  draw("chart-memory", traces, { barmode: "stack", xaxis: { title: { text: "MiB" } },
                                 margin: { l: 60, r: 10, t: 10, b: 30 }, showlegend: true });
  fillTable("gates", Object.entries(now.gates || {}), (row, [name, g]) => {
    cell(row, name); cell(row, g.capacity ?? g.slots ?? ""); cell(row, g.in_flight ?? "");
    cell(row, g.waiting ?? g.queued ?? "");
  });
  fillTable("recent", now.recent || [], (row, r) => {
    row.className = "clickable" + (r.ok === false ? " failed" : "");
    row.dataset.trace = r.trace_id || "";
    cell(row, time(r.ts)); cell(row, (r.trace_id || "").slice(0, 8)); cell(row, r.route);
    cell(row, r.decided_by); cell(row, r.role || "(tool)"); cell(row, r.validation);
    cell(row, r.duration_ms === null || r.duration_ms === undefined ? "" : r.duration_ms.toFixed(0));
    cell(row, r.query, "query").title = r.query || "";
    if (r.trace_id) row.addEventListener("click", () => openTrace(r.trace_id));
  });
  if (now.telemetry_error) showError(now.telemetry_error);
}

// ---- Routing, latency and quality ----------------------------------------------------------

function renderOverview(data) {
  const s = data.stats, series = data.series;
  const t = series.t.map(date);
  $("routing-figures").textContent =
    `${s.requests} requests; tool bypass ${pct(s.tool_bypass_rate)}; router-model ` +
    `escalation ${pct(s.router_model_escalation_rate)}; cache hits ${pct(s.cache.hit_rate)}; ` +
    `success ${pct(s.success_rate)}`;
  draw("chart-routes", stacked(series.routes, t),
       { barmode: "stack", title: { text: "requests by route" } });
  draw("chart-decided", [...stacked(series.decided_by, t),
    { type: "scatter", mode: "lines+markers", name: "escalation rate", x: t,
      y: series.escalation_rate, yaxis: "y2" }],
       { barmode: "stack", title: { text: "decided by (bars), router-model escalation (line)" },
         yaxis2: { overlaying: "y", side: "right", range: [0, 1], tickformat: ".0%" } });
  draw("chart-roles", stacked(series.roles, t),
       { barmode: "stack", title: { text: "roles that answered (model calls)" } });
  const v = s.validation;
  $("quality-figures").textContent =
    `validation: ${v.verdicts} verdicts, failure rate ${pct(v.failure_rate)}, retries ` +
    `${pct(v.retry_rate)}, ${v.flagged_unvalidated} delivered unvalidated; feedback ` +
    `${s.feedback.good || 0} good / ${s.feedback.bad || 0} bad`;
  const lines = (obj, suffix, dash) => Object.entries(obj).map(([role, y]) => ({
    type: "scatter", mode: "lines+markers", connectgaps: false, name: plain(`${role} ${suffix}`),
    x: t, y, line: { dash } }));
  draw("chart-latency", [...lines(series.p50_ms, "p50", "solid"),
                         ...lines(series.p95_ms, "p95", "dot")],
       { title: { text: "model call latency per role (ms)" } });
  draw("chart-speed", [...lines(series.ttft_ms, "time to first token (ms)", "solid"),
    ...lines(series.tokens_per_s, "tokens/s", "dot").map((tr) => ({ ...tr, yaxis: "y2" }))],
       { title: { text: "time to first token (ms, left), tokens/s (right)" },
         yaxis2: { overlaying: "y", side: "right" } });
  draw("chart-quality", [
    { type: "bar", name: "validation failures", x: t, y: series.validation_failed },
    { type: "bar", name: "retries", x: t, y: series.retries },
    { type: "bar", name: "feedback good", x: t, y: series.feedback_good },
    { type: "bar", name: "feedback bad", x: t, y: series.feedback_bad },
  ], { barmode: "group", title: { text: "validation failures, retries, feedback" } });
}

function renderResidency(data) {
  const stays = data.stays.map((s) => ({ ...s, end: s.end || data.now }));
  const traces = stays.map((s) => ({
    type: "bar", orientation: "h", y: [plain(s.instance)], base: [date(s.start)],
    x: [(s.end - s.start) * 1000], name: plain(s.instance), showlegend: false,
    hovertext: plain(`${s.instance} (${s.model}): loaded by ${s.load_cause || "before the window"}` +
                     `, ${s.eviction_cause ? "evicted: " + s.eviction_cause : "still resident"}`),
  }));
  for (const kind of ["load", "eviction"]) {
    const marks = data.marks.filter((m) => m.kind === kind);
    traces.push({ type: "scatter", mode: "markers", name: kind + "s",
                  x: marks.map((m) => date(m.ts)), y: marks.map((m) => plain(m.instance)),
                  text: marks.map((m) => plain(m.summary)), hoverinfo: "text",
                  marker: { symbol: kind === "load" ? "triangle-right" : "x", size: 11 } });
  }
  draw("chart-residency", traces, { barmode: "overlay", title: { text: "resident models" },
                                    xaxis: { type: "date", range: [date(data.since), date(data.now)] } });
  fillTable("residency-marks", data.marks.slice().reverse(), (row, m) => {
    cell(row, time(m.ts)); cell(row, m.kind); cell(row, m.instance); cell(row, m.cause);
    cell(row, m.summary);
  });
}

// ---- A request -----------------------------------------------------------------------------

let currentTrace = null;

async function openTrace(traceId) {
  $("trace-input").value = traceId;
  try {
    const data = await getJSON("/ui/api/trace/" + encodeURIComponent(traceId));
    currentTrace = data.trace_id;
    renderTrace(data);
    showError(null);
  } catch (err) {
    showError(err);
  }
}

function renderTrace(data) {
  $("request").hidden = false;
  $("request").dataset.trace = data.trace_id;
  const o = data.outcome;
  $("request-outcome").textContent = `${data.trace_id}: ${o.summary || o.event}` +
    (o.duration_ms !== null && o.duration_ms !== undefined ? ` in ${o.duration_ms.toFixed(1)} ms` : "");
  const states = data.states;
  draw("chart-waterfall", [{
    type: "bar", orientation: "h", y: states.map((s, i) => `${i + 1}. ${plain(s.state)}`),
    base: states.map((s) => s.offset_ms), x: states.map((s) => Math.max(s.duration_ms, 0.05)),
    text: states.map((s) => `${s.duration_ms.toFixed(1)} ms`), textposition: "outside",
    hovertext: states.map((s) => plain(`${s.state} → ${s.next_state}: ${s.detail || ""}`)),
    marker: { color: states.map((s) => (s.ok === false ? "#e53935" : "#1e88e5")) },
  }], { title: { text: "states (ms since the request started)" },
        yaxis: { autorange: "reversed" }, showlegend: false, margin: { l: 170, r: 40, t: 30, b: 30 } });
  list("request-states", states.map((s) =>
    `${s.state} → ${s.next_state} at ${s.offset_ms.toFixed(1)} ms for ${s.duration_ms.toFixed(1)} ms` +
    (s.detail ? `: ${s.detail}` : "")));
  list("request-routing", [...data.routing, ...data.role_selection].map((r) => r.summary));
  list("request-tools", data.tools.map((r) => r.summary));
  list("request-models", data.model_calls.map((r) => r.summary));
  list("request-validation", data.validation.map((r) => r.summary));
  list("request-feedback", data.feedback.map((r) => r.summary));
  $("request-query").textContent = data.query ?? "(not recorded)";
  $("request-answer").textContent = data.answer ?? "(not recorded)";
}

async function sendFeedback(verdict) {
  if (!currentTrace) return;
  const note = $("feedback-note").value.trim();
  $("feedback-status").textContent = "sending…";
  try {
    await getJSON("/ui/api/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ trace_id: currentTrace, verdict, note: note || null }) });
    await openTrace(currentTrace);  // shows the feedback now stored with the request
    $("feedback-status").textContent = `recorded: ${verdict}`;
  } catch (err) {
    $("feedback-status").textContent = String(err.message || err);
  }
}

// ---- Evaluations ---------------------------------------------------------------------------

function headline(run) {
  const f = run.figures || {};
  if (run.kind === "ab") {
    return `B vs A: ${f.wins ?? "?"} wins, ${f.ties ?? "?"} ties, ${f.losses ?? "?"} losses` +
      (f.sign_test_p !== null && f.sign_test_p !== undefined ? `, sign test p ${Number(f.sign_test_p).toFixed(3)}` : "");
  }
  if (f.note) return f.note;
  return `accuracy ${pct(f.accuracy)} (${f.correct ?? 0}/${f.samples ?? 0}), ${f.errors ?? 0} errors`;
}

function renderRuns(data) {
  $("runs-dir").textContent = data.exists
    ? `${data.runs.length} run(s) in ${data.runs_dir}`
    : `no runs directory at ${data.runs_dir} (serve --runs DIR)`;
  fillTable("runs", data.runs, (row, run) => {
    cell(row, run.created_at); cell(row, run.kind); cell(row, run.suite);
    cell(row, run.kind === "ab" ? `A ${run.a ?? "?"} / B ${run.b ?? "?"}` : run.role);
    cell(row, run.model); cell(row, headline(run));
    const td = cell(row, "");
    if (typeof run.report === "string" && run.report.startsWith("/ui/runs/")) {
      const a = document.createElement("a");
      a.href = run.report;
      a.textContent = "report.html";
      a.rel = "noopener";
      td.appendChild(a);
    }
  });
}

// ---- Polling -------------------------------------------------------------------------------

async function pollNow() {
  try {
    renderNow(await getJSON("/ui/api/now"));
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    showError(err);
  }
}

async function pollCharts() {
  const w = windowName();
  try {
    const [overview, residency] = await Promise.all([
      getJSON("/ui/api/overview?window=" + w), getJSON("/ui/api/residency?window=" + w)]);
    renderOverview(overview);
    renderResidency(residency);
    document.body.dataset.chartsWindow = w;
    // Newer figures are being computed (new events since these): fetch them in a moment.
    document.body.dataset.chartsFresh = overview.refreshing ? "0" : "1";
    if (overview.refreshing && !followUp) {
      followUp = setTimeout(() => { followUp = null; pollCharts(); }, FOLLOW_UP_MS);
    }
  } catch (err) {
    showError(err);
  }
}

async function pollRuns() {
  try {
    renderRuns(await getJSON("/ui/api/evaluations"));
  } catch (err) {
    showError(err);
  }
}

function start() {
  $("window").addEventListener("change", pollCharts);
  $("trace-open").addEventListener("click", () => openTrace($("trace-input").value.trim()));
  $("feedback-good").addEventListener("click", () => sendFeedback("good"));
  $("feedback-bad").addEventListener("click", () => sendFeedback("bad"));
  pollNow(); pollCharts(); pollRuns();
  setInterval(pollNow, POLL_NOW_MS);
  setInterval(pollCharts, POLL_CHARTS_MS);
  setInterval(pollRuns, POLL_RUNS_MS);
}

start();
