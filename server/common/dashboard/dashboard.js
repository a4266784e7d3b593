// bnserve dashboard: one script for the trainer's page and the inference
// server's page (compiled into both binaries). It reads only the server's
// own JSON endpoints (/api/...) and draws every chart itself as SVG: no
// library, nothing fetched from elsewhere, so it works offline.
//
// Token: when an endpoint answers 401 the page shows a token field; the
// token is kept in this tab's sessionStorage and sent as
// "Authorization: Bearer <token>" on each fetch (never in a URL or cookie).
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "bnserve-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                 "#17becf", "#8c564b", "#e377c2"];

// ---- fetching -------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const res = await fetch(path, {headers: headers, cache: "no-store"});
  if (res.status === 401) throw new Unauthorized("token required");
  const body = await res.json();
  if (!res.ok) throw new Error(path + ": " + (body.error || res.status));
  return body;
}

function setupTokenForm(onToken) {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("token-input");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    form.hidden = true;
    onToken();
  });
}

// Calls `refresh` every POLL_MS. First asks /api/auth (which answers
// without the token) whether a token is needed and accepted, so that the
// page shows its token field instead of running into 401s. Errors go to the
// status line; the body's data-polls counts successful refreshes.
function poll(refresh) {
  const status = document.getElementById("status");
  const form = document.getElementById("token-form");
  let stopped = false;  // waiting for a token
  let authorized = false;
  let polls = 0;
  const askToken = (message) => {
    authorized = false;
    stopped = true;
    status.textContent = message;
    status.className = "error";
    form.hidden = false;
    document.body.dataset.token = "needed";
  };
  const tick = async () => {
    try {
      if (!authorized) {
        const auth = await api("/api/auth");
        if (auth.token_required && !auth.token_accepted) {
          askToken(sessionStorage.getItem(TOKEN_KEY)
              ? "the token was not accepted: enter this server's bearer token"
              : "this server needs its bearer token");
          return;  // resumes when a token is entered
        }
        authorized = true;
        document.body.dataset.token = auth.token_required ? "accepted" : "none";
      }
      await refresh();
      polls += 1;
      document.body.dataset.polls = String(polls);
      status.textContent = "updated " + new Date().toLocaleTimeString();
      status.className = "ok";
    } catch (e) {
      if (e instanceof Unauthorized) {
        askToken("the token was not accepted");
        return;
      }
      status.textContent = String(e.message || e);
      status.className = "error";
    }
    setTimeout(tick, POLL_MS);
  };
  setupTokenForm(() => { if (stopped) { stopped = false; tick(); } });
  tick();
}

// ---- formatting and DOM helpers -----------------------------------------

// Numbers as shown everywhere on the pages (the browser test parses them).
function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e15) return String(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return v.toPrecision(4);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// A table: `columns` [{key, title, cls}], one row per object, each cell
// tagged data-field=key (and the row data-key=rowKey(row)).
function table(columns, rows, rowKey, onClick) {
  const head = el("tr", {}, ...columns.map((c) => el("th", {}, c.title)));
  const body = rows.map((r) => {
    const tr = el("tr", {"data-key": rowKey(r)},
      ...columns.map((c) => {
        const v = c.value ? c.value(r) : r[c.key];
        return el("td", {"data-field": c.key, class: c.cls || ""},
                  typeof v === "number" || v === null ? fmt(v) : v);
      }));
    if (onClick) tr.addEventListener("click", () => onClick(r));
    return tr;
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

// ---- charts ------------------------------------------------------------

// A tick label: the shortest form of the tick value.
function tickLabel(t) {
  return String(Number(t.toPrecision(6)));
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return out;
}

// Draws a line chart into a new <figure data-chart=name>: `series` is
// [{name, points: [[x, y], ...], dashed, faint, dots, color}] (null y
// values are gaps; `dots` draws a dot per point instead of a line), `marks`
// vertical markers [{x, label}]. Each series is one
// <path class="series" data-series=name>.
function lineChart(name, title, series, marks, xLabel) {
  const box = chartBox(series, marks || []);
  const root = svg("svg", {viewBox: `0 0 ${box.W} ${box.H}`, class: "chart",
                           role: "img", "aria-label": title});
  drawAxes(root, box, xLabel, marks || []);
  series.forEach((s, i) => root.append(seriesPath(s, i, box)));
  const legend = el("div", {class: "legend"},
    ...series.map((s) => el("span", {class: "key"},
      el("span", {class: "swatch" + (s.dashed ? " dashed" : "") +
                         (s.faint ? " faint" : "")}), s.name)));
  series.forEach((s, i) => {
    legend.children[i].firstChild.style.borderColor =
        s.color || PALETTE[i % PALETTE.length];
  });
  return el("figure", {class: "chart-box", "data-chart": name},
            el("figcaption", {}, title), root, legend);
}

// The chart's geometry: size, margins, data ranges and the maps px, py from
// data to SVG coordinates.
function chartBox(series, marks) {
  const b = {W: 460, H: 220, L: 56, R: 10, T: 10, B: 30};
  const xs = [], ys = [];
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) continue;
      xs.push(x); ys.push(y);
    }
  }
  for (const m of marks) xs.push(m.x);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (!xs.length) { x0 = 0; x1 = 1; }
  if (!ys.length) { y0 = 0; y1 = 1; }
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y1 = y0 + Math.max(Math.abs(y0) * 0.1, 1e-6);
                   y0 = y0 - Math.max(Math.abs(y0) * 0.1, 1e-6); }
  Object.assign(b, {x0: x0, x1: x1, y0: y0, y1: y1});
  b.px = (x) => b.L + (x - x0) / (x1 - x0) * (b.W - b.L - b.R);
  b.py = (y) => b.H - b.B - (y - y0) / (y1 - y0) * (b.H - b.T - b.B);
  return b;
}

// Grid lines, tick labels, the x axis label and the vertical marks.
function drawAxes(root, b, xLabel, marks) {
  const text = (attrs, content) => {
    const t = svg("text", attrs);
    t.textContent = content;
    root.append(t);
  };
  for (const t of niceTicks(b.y0, b.y1, 4)) {
    root.append(svg("line", {x1: b.L, x2: b.W - b.R, y1: b.py(t), y2: b.py(t),
                             class: "grid"}));
    text({x: b.L - 4, y: b.py(t) + 4, class: "tick", "text-anchor": "end"},
         tickLabel(t));
  }
  for (const t of niceTicks(b.x0, b.x1, 5)) {
    text({x: b.px(t), y: b.H - b.B + 14, class: "tick",
          "text-anchor": "middle"}, tickLabel(t));
  }
  text({x: b.W - b.R, y: b.H - 2, class: "tick", "text-anchor": "end"},
       xLabel || "");
  for (const m of marks) {
    root.append(svg("line", {x1: b.px(m.x), x2: b.px(m.x), y1: b.T,
                             y2: b.H - b.B, class: "mark",
                             "data-mark": m.label}));
    text({x: b.px(m.x) + 2, y: b.T + 9, class: "mark-label"}, m.label);
  }
}

// One series as one <path class="series" data-series=name>.
function seriesPath(s, i, b) {
  let d = "";
  let pen = false;
  for (const [x, y] of s.points) {
    if (y === null || !Number.isFinite(y)) { pen = false; continue; }
    d += (pen ? "L" : "M") + b.px(x).toFixed(1) + " " + b.py(y).toFixed(1);
    if (s.dots) d += "l0 0";  // a zero-length segment: a round dot
    pen = !s.dots;
  }
  const path = svg("path", {d: d || "M0 0", class: "series",
                            "data-series": s.name, fill: "none",
                            stroke: s.color || PALETTE[i % PALETTE.length]});
  if (s.dots) {
    // Style, not attributes: the style sheet's stroke-width would win.
    path.style.strokeWidth = s.faint ? "6" : "9";
    path.style.strokeLinecap = "round";
  } else if (s.dashed) {
    path.setAttribute("stroke-dasharray", "4 3");
  }
  if (s.faint) path.setAttribute("stroke-opacity", "0.45");
  return path;
}

// A horizontal gauge: `value` against `scale` (full bar), with the number.
function gauge(field, value, scale, warn) {
  const frac = Number.isFinite(value) ? Math.min(Math.abs(value) / scale, 1) : 0;
  const bar = el("span", {class: "gauge-bar" + (value > warn ? " warn" : "")});
  bar.style.width = (100 * frac).toFixed(1) + "%";
  return el("span", {class: "gauge", "data-field": field},
            el("span", {class: "gauge-track"}, bar),
            el("span", {class: "gauge-value"}, fmt(value)));
}

// Replaces the children of the element with id `id`.
function fill(id, ...children) {
  const e = document.getElementById(id);
  e.replaceChildren(...children);
  return e;
}

// ---- trainer page --------------------------------------------------------

function trainerPage() {
  let selected = null;
  const columns = [
    {key: "job_id", title: "job"}, {key: "model", title: "model"},
    {key: "state", title: "state"}, {key: "steps", title: "steps", cls: "num"},
    {key: "examples_seen", title: "examples", cls: "num"},
    {key: "last_loss", title: "loss", cls: "num"},
    {key: "last_accuracy", title: "accuracy", cls: "num"},
    {key: "last_published_version", title: "published", cls: "num"}];
  const refresh = async () => {
    const jobs = (await api("/api/jobs")).jobs;
    if (selected === null || !jobs.some((j) => j.job_id === selected)) {
      const training = jobs.filter((j) => j.state === "TRAINING");
      const pick = training.length ? training : jobs;
      selected = pick.length ? pick[pick.length - 1].job_id : null;
    }
    const t = table(columns, jobs, (j) => j.job_id,
                    (j) => { selected = j.job_id; refresh(); });
    for (const tr of t.querySelectorAll("tbody tr")) {
      if (tr.dataset.key === selected) tr.classList.add("selected");
    }
    fill("jobs", jobs.length ? t : el("p", {class: "empty"},
         "No jobs yet: start one with bnctl train --trainer " + location.hostname + ":50051 …"));
    if (selected === null) { fill("job"); return; }
    const h = await api("/api/jobs/" + encodeURIComponent(selected) + "/history");
    drawJob(h);
  };
  poll(refresh);
}

function drawJob(h) {
  const pts = h.points.slice();
  if (h.latest && (!pts.length || pts[pts.length - 1].step < h.latest.step)) {
    pts.push(h.latest);
  }
  const marks = h.publishes.map((p) => ({x: p.step, label: "v" + p.version}));
  const info = el("p", {class: "job-info", "data-field": "history"},
      `${h.job.job_id} (${h.job.model}, ${h.job.state}): ${pts.length} points ` +
      `of ${h.job.steps} steps, one every ${h.stride} ` +
      `(at most ${h.capacity} kept); ${h.publishes.length} publishes`);
  const curves = el("div", {class: "charts"},
      lineChart("loss", "loss", [{name: "loss",
          points: pts.map((p) => [p.step, p.loss])}], marks, "step"),
      lineChart("accuracy", "minibatch accuracy", [{name: "accuracy",
          points: pts.map((p) => [p.step, p.accuracy])}], marks, "step"));
  const layers = h.batch_norm.map((bn, li) => {
    const chart = (stat, label) => {
      const series = [];
      for (let u = 0; u < bn.units; ++u) {
        const color = PALETTE[u % PALETTE.length];
        series.push({name: `unit ${u} running ${label}`, color: color,
                     points: pts.map((p) => [p.step, p.bn[li]["running_" + stat][u]])});
        series.push({name: `unit ${u} minibatch ${label}`, color: color,
                     faint: true, dashed: true,
                     points: pts.map((p) => [p.step, p.bn[li]["batch_" + stat][u]])});
      }
      return lineChart(`bn${bn.layer}-${stat}`,
                       `running ${label} vs minibatch ${label}`, series, marks, "step");
    };
    return el("section", {class: "layer", "data-layer": bn.layer},
        el("h3", {}, `batch norm, layer ${bn.layer}: ${bn.features} ` +
           `channels, first ${bn.units} shown, ${bn.average} ` +
           (bn.average === "ema" ? `a = ${fmt(bn.momentum)}` : "")),
        el("div", {class: "charts"}, chart("mean", "mean"), chart("var", "variance")));
  });
  fill("job", info, curves, ...layers);
}

// ---- inference page ------------------------------------------------------

function inferencePage() {
  const history = [];  // {t, requests, p50, p90, p99} per poll, newest last
  const refresh = async () => {
    const [models, traffic, drift] = await Promise.all(
        [api("/api/models"), api("/api/traffic"), api("/api/drift")]);
    drawModels(models);
    const prev = history.length ? history[history.length - 1] : null;
    const rate = prev && traffic.unix_seconds > prev.t
        ? (traffic.requests - prev.requests) / (traffic.unix_seconds - prev.t)
        : null;
    history.push({t: traffic.unix_seconds, requests: traffic.requests, rate: rate});
    if (history.length > 300) history.shift();
    drawTraffic(traffic, rate, history);
    drawDrift(drift);
  };
  poll(refresh);
}

function drawModels(m) {
  const rows = [];
  for (const model of m.models) {
    for (const v of model.versions) {
      rows.push({model: model.model, version: v.version,
                 serving: v.version === model.serving_version ? "serving" : "loaded",
                 labels: v.labels.join(", "), origin: v.origin,
                 training_step: v.training_step, training_loss: v.training_loss,
                 drift_samples: v.drift_samples});
    }
  }
  const columns = [{key: "model", title: "model"}, {key: "version", title: "version", cls: "num"},
    {key: "serving", title: "default"}, {key: "labels", title: "labels"},
    {key: "origin", title: "origin"}, {key: "training_step", title: "trained steps", cls: "num"},
    {key: "training_loss", title: "training loss", cls: "num"},
    {key: "drift_samples", title: "drift samples", cls: "num"}];
  fill("ready", m.ready ? "ready" : "not ready").className = m.ready ? "ok" : "error";
  fill("models", rows.length ? table(columns, rows, (r) => r.model + "/" + r.version)
                             : el("p", {class: "empty"}, "No model loaded yet."));
}

function drawTraffic(t, rate, history) {
  const columns = [{key: "method", title: "method"},
    {key: "requests", title: "requests", cls: "num"}, {key: "errors", title: "errors", cls: "num"},
    {key: "mean_ms", title: "mean ms", cls: "num"}, {key: "p50_ms", title: "p50 ms", cls: "num"},
    {key: "p90_ms", title: "p90 ms", cls: "num"}, {key: "p99_ms", title: "p99 ms", cls: "num"}];
  const t0 = history[0].t;
  const summary = el("p", {class: "summary"},
      "requests ", el("b", {"data-field": "requests"}, fmt(t.requests)),
      ", errors ", el("b", {"data-field": "errors"}, fmt(t.errors)),
      ", rate ", el("b", {"data-field": "rate"}, rate === null ? "–" : fmt(rate)),
      " req/s (latency percentiles since the server started)");
  fill("traffic", summary, table(columns, t.methods, (r) => r.method),
       el("div", {class: "charts"},
          lineChart("rate", "requests per second (all methods)", [{name: "req/s",
              points: history.map((h) => [h.t - t0, h.rate])}], [], "seconds")));
}

function drawDrift(d) {
  const rows = el("div", {class: "drift-list"});
  d.layers.forEach((l, i) => {
    const head = el("div", {class: "drift-head", "data-key": `${l.model}/${l.version}/${l.layer}`},
        el("span", {class: "drift-name"}, `${l.model} v${l.version}, layer ${l.layer} ` +
           `(${l.features} channels, ${l.samples} samples)`),
        el("label", {}, "max mean shift ", gauge("mean_shift_max", l.mean_shift_max, 3, 1)),
        el("label", {}, "mean shift ", gauge("mean_shift_avg", l.mean_shift_avg, 3, 1)),
        el("label", {}, "variance ratio ", gauge("variance_ratio", l.variance_ratio, 3, 2)));
    const item = el("section", {class: "drift-layer", "data-rank": i}, head);
    if (i < 6) {
      const units = l.running_mean.map((_, u) => u);
      const pair = (stat, label) => lineChart(`drift-${l.model}-${l.version}-${l.layer}-${stat}`,
          `${label} per unit: live traffic vs running statistics`,
          [{name: "running " + label, dots: true,
            points: units.map((u) => [u, l["running_" + stat][u]])},
           {name: "live " + label, dots: true, faint: true,
            points: units.map((u) => [u, l["live_" + stat][u]])}], [], "unit");
      item.append(el("div", {class: "charts"}, pair("mean", "mean"), pair("var", "variance")));
    }
    rows.append(item);
  });
  fill("drift", d.layers.length ? rows : el("p", {class: "empty"},
       "No drift statistics yet: they start with the first sampled request."));
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "trainer") trainerPage();
  else inferencePage();
});
