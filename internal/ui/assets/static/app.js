// Gantry's dashboard: polls /ui/api/summary, follows /ui/api/events
// (Server-Sent Events) and redraws in place. No framework: the page is a
// few tables, a grid and one canvas.
"use strict";

const POLL_MS = 2000;
const HISTORY = 150; // samples kept for the chart: 5 minutes at POLL_MS
const MAX_EVENTS = 100;
// The CloudEvents types the server sends (events.Kinds); SSE delivers
// named events only to listeners of their name.
const EVENT_TYPES = [
  "gantry.function.created", "gantry.function.deleted",
  "gantry.deployment.status_changed", "gantry.deployment.deleted", "gantry.deployment.scaled",
  "gantry.instance.started", "gantry.instance.stopped", "gantry.instance.failed",
  "gantry.cluster.ready", "gantry.cluster.not_ready",
  "gantry.key.rotated",
];

const $ = (id) => document.getElementById(id);
const samples = [];
let prevStats = null, prevAt = 0;
let timer = 0, stopped = false, painted = false;
const rows = new Map(); // versionId -> <tr>
let rowOrder = "";
let clustersKey = "";

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setLive(state) {
  const l = $("live");
  l.dataset.state = state;
  l.textContent = state;
}

function banner(msg) {
  const b = $("banner");
  b.textContent = msg;
  b.hidden = !msg;
}

function schedule(ms) {
  if (stopped) return;
  clearTimeout(timer);
  timer = setTimeout(refresh, ms);
}

async function refresh() {
  let res;
  try {
    res = await fetch("/ui/api/summary", { cache: "no-store", credentials: "same-origin" });
  } catch (e) {
    setLive("offline");
    schedule(POLL_MS);
    return;
  }
  if (res.status === 401) {
    stopped = true;
    setLive("logged out");
    banner("This dashboard session has ended: run `gantry dashboard` and open the URL it prints.");
    return;
  }
  if (!res.ok) {
    const p = await res.json().catch(() => ({}));
    banner("The server answered " + res.status + ": " + (p.detail || p.title || res.statusText));
    setLive("error");
    schedule(POLL_MS);
    return;
  }
  const s = await res.json();
  banner("");
  setLive("live");
  render(s);
  schedule(POLL_MS);
}

function render(s) {
  $("account").textContent = "account " + s.account;
  $("updated").textContent = "updated " + new Date(s.generatedAt).toLocaleTimeString();
  renderClusters(s.clusters);
  renderFunctions(s.functions);
  renderTiles(s);
  sample(s);
  drawChart();
  if (!painted) {
    painted = true;
    // After the frame that shows the data: what the benchmark times.
    requestAnimationFrame(() => setTimeout(() => {
      window.gantryPaintedAt = performance.now();
      document.body.dataset.painted = "1";
    }, 0));
  }
}

function renderTiles(s) {
  const ready = s.clusters.filter((c) => c.status === "READY").length;
  let used = 0, total = 0;
  for (const c of s.clusters) for (const g of c.gpus) { used += g.used; total += g.total; }
  const deployed = s.functions.filter((f) => f.deployed);
  $("t-clusters").textContent = ready + " / " + s.clusters.length;
  $("t-gpus").textContent = used + " / " + total;
  $("t-functions").textContent = String(s.functions.length);
  $("t-active").textContent = deployed.filter((f) => f.status === "ACTIVE").length + " / " + deployed.length;
  $("t-queue").textContent = String(s.queueDepth);
  $("c-count").textContent = "(" + s.clusters.length + ")";
  $("f-count").textContent = "(" + s.functions.length + ")";
}

function renderClusters(clusters) {
  const key = JSON.stringify(clusters);
  if (key === clustersKey) return;
  clustersKey = key;
  const box = $("clusters");
  const frag = document.createDocumentFragment();
  for (const c of clusters) {
    const d = h("div", "cluster");
    d.dataset.clusterId = c.id;
    const name = h("div", "name");
    name.append(h("span", "", c.name + " "), h("span", "st st-" + c.status, c.status));
    if (c.cordoned) name.append(h("span", "muted", c.draining ? " draining" : " cordoned"));
    name.title = c.id + (c.region ? " · " + c.region : "");
    d.append(name);
    if (c.gpus.length === 0) d.append(h("div", "gpu", "no GPUs reported"));
    for (const g of c.gpus) {
      const bar = h("div", "bar");
      const fill = h("span");
      fill.style.width = (g.total ? Math.min(100, (100 * g.used) / g.total) : 0) + "%";
      bar.append(fill);
      bar.title = g.used + " of " + g.total + " " + g.model + " in use";
      const lab = h("div", "gpu");
      lab.append(h("span", "", g.model), h("span", "", g.used + " / " + g.total));
      d.append(bar, lab);
    }
    frag.append(d);
  }
  box.replaceChildren(frag);
}

const CELLS = ["name", "ids", "status", "instances", "queue", "calls"];

function renderFunctions(fns) {
  const body = $("functions");
  const seen = new Set();
  const order = [];
  for (const f of fns) {
    seen.add(f.versionId);
    order.push(f.versionId);
    let tr = rows.get(f.versionId);
    if (!tr) {
      tr = h("tr");
      tr.dataset.versionId = f.versionId;
      tr.dataset.functionId = f.id;
      for (const c of CELLS) tr.append(h("td", c === "ids" ? "ids" : (c === "queue" || c === "calls" || c === "instances") ? "num" : ""));
      tr.cells[1].textContent = f.id + " / " + f.versionId;
      tr.cells[2].append(h("span", "st"));
      rows.set(f.versionId, tr);
    }
    set(tr.cells[0], f.name);
    const st = tr.cells[2].firstChild;
    if (tr.dataset.status !== f.status) {
      tr.dataset.status = f.status;
      st.className = "st st-" + f.status;
      st.textContent = f.status;
    }
    st.title = f.reason || "";
    set(tr.cells[3], f.deployed ? f.running + " / " + f.desired : "–");
    set(tr.cells[4], f.deployed ? String(f.queueDepth) : "–");
    set(tr.cells[5], String(f.invocations));
    tr.dataset.search = (f.name + " " + f.id + " " + f.versionId + " " + f.status).toLowerCase();
  }
  for (const [id, tr] of rows) {
    if (!seen.has(id)) { tr.remove(); rows.delete(id); }
  }
  const key = order.join(",");
  if (key !== rowOrder) {
    rowOrder = key;
    const frag = document.createDocumentFragment();
    for (const id of order) frag.append(rows.get(id));
    body.replaceChildren(frag);
  }
  applyFilter();
}

function set(td, text) {
  if (td.textContent !== text) td.textContent = text;
}

function applyFilter() {
  const q = $("filter").value.trim().toLowerCase();
  for (const tr of rows.values()) tr.hidden = q !== "" && !tr.dataset.search.includes(q);
}

// quantile estimates q of the calls between two cumulative histograms, as
// Prometheus's histogram_quantile does: linear within the bucket.
function quantile(q, bounds, now, before) {
  const d = now.map((c, i) => c - (before ? before[i] || 0 : 0));
  const total = d.length ? d[d.length - 1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < d.length; i++) {
    if (d[i] >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1], below = i === 0 ? 0 : d[i - 1];
      const inBucket = d[i] - below;
      return inBucket > 0 ? lo + ((bounds[i] - lo) * (rank - below)) / inBucket : bounds[i];
    }
  }
  return bounds[bounds.length - 1];
}

function sample(s) {
  const inv = s.invocations;
  const now = performance.now();
  if (!inv) {
    $("t-rate").textContent = "off";
    $("t-latency").textContent = "metrics off";
    return;
  }
  if (prevStats) {
    const dt = (now - prevAt) / 1000;
    const calls = Math.max(0, inv.total - prevStats.total);
    const rate = dt > 0 ? calls / dt : 0;
    const p50 = quantile(0.5, inv.bounds, inv.counts, prevStats.counts);
    const p95 = quantile(0.95, inv.bounds, inv.counts, prevStats.counts);
    samples.push({ rate, p50: p50 === null ? null : p50 * 1000, p95: p95 === null ? null : p95 * 1000 });
    if (samples.length > HISTORY) samples.shift();
    $("t-rate").textContent = rate.toFixed(rate < 10 ? 1 : 0);
    $("t-latency").textContent = p50 === null ? "–" : fmtMs(p50 * 1000) + " / " + fmtMs(p95 * 1000);
  }
  prevStats = inv;
  prevAt = now;
}

function fmtMs(ms) {
  return ms < 10 ? ms.toFixed(1) + "ms" : Math.round(ms) + "ms";
}

function drawChart() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 900, ht = cv.clientHeight || 180;
  if (cv.width !== Math.round(w * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(ht * dpr); }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, ht);
  const pad = { l: 44, r: 48, t: 8, b: 16 };
  const iw = w - pad.l - pad.r, ih = ht - pad.t - pad.b;
  const maxRate = Math.max(1, ...samples.map((p) => p.rate));
  const maxMs = Math.max(1, ...samples.map((p) => p.p95 || 0));
  g.strokeStyle = "#2a3440";
  g.fillStyle = "#8b98a5";
  g.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (ih * i) / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(pad.l + iw, y); g.stroke();
    g.textAlign = "right"; g.fillText(((maxRate * (4 - i)) / 4).toFixed(1), pad.l - 4, y + 4);
    g.textAlign = "left"; g.fillText(((maxMs * (4 - i)) / 4).toFixed(0) + "ms", pad.l + iw + 4, y + 4);
  }
  const x = (i) => pad.l + (iw * (i + HISTORY - samples.length)) / (HISTORY - 1);
  const line = (color, val, max) => {
    g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
    let on = false;
    samples.forEach((p, i) => {
      const v = val(p);
      if (v === null) { on = false; return; }
      const y = pad.t + ih - (ih * v) / max;
      if (on) g.lineTo(x(i), y); else g.moveTo(x(i), y);
      on = true;
    });
    g.stroke(); g.lineWidth = 1;
  };
  line("#58a6ff", (p) => p.rate, maxRate);
  line("#3fb950", (p) => p.p50, maxMs);
  line("#d29922", (p) => p.p95, maxMs);
}

// Events: the latest ones once, then followed as they happen.
function eventItem(e) {
  const li = h("li");
  li.dataset.type = e.type;
  const t = h("time", "", new Date(e.time).toLocaleTimeString());
  t.dateTime = e.time;
  let data = "";
  try { data = JSON.stringify(e.data); } catch (_) { /* leave empty */ }
  li.append(t, h("span", "type", e.type.replace(/^gantry\./, "")), h("span", "", e.subject || ""), h("span", "data", data));
  return li;
}

function addEvent(e, atTop) {
  const list = $("events");
  if (e.id && list.querySelector('li[data-id="' + CSS.escape(e.id) + '"]')) return;
  const li = eventItem(e);
  li.dataset.id = e.id || "";
  if (atTop) list.prepend(li); else list.append(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

async function loadEvents() {
  try {
    const res = await fetch("/ui/api/events?limit=50", { cache: "no-store", credentials: "same-origin" });
    if (!res.ok) return;
    const body = await res.json();
    const list = (body.events || []).slice().sort((a, b) => (a.time < b.time ? 1 : -1));
    for (const e of list) addEvent(e, false);
  } catch (_) { /* the follow below retries */ }
}

function followEvents() {
  const es = new EventSource("/ui/api/events?follow=true");
  const on = (m) => {
    try { addEvent(JSON.parse(m.data), true); } catch (_) { return; }
    schedule(150); // a change happened: redraw soon rather than at the next poll
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, on);
  es.onerror = () => { if (stopped) es.close(); };
}

$("filter").addEventListener("input", applyFilter);
refresh();
loadEvents().then(followEvents);
