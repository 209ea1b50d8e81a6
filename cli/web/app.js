// rampart dashboard: renders the rollouts list, one rollout and one model from the dashboard's JSON API, keeps them
// live from the server-sent overview events, and draws the per-look analysis charts with the vendored Chart.js.
// All text from the cluster goes in with textContent, never as HTML.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
let overview = null; // latest overview event
let page = null; // {kind, key, refresh()}
const charts = [];

// ---- small DOM helpers -------------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const text = (value, fallback = "–") => (value === null || value === undefined || value === "" ? fallback : String(value));
const link = (href, label, attrs) => h("a", Object.assign({ href }, attrs || {}), label);
const rolloutHref = (ns, name) => `#/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const modelHref = (model) => `#/models/${encodeURIComponent(model)}`;

function age(iso) {
  if (!iso) return "–";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function phaseBadge(phase) {
  return h("span", { class: `phase phase-${text(phase, "Pending")}`, "data-field": "phase" }, text(phase, "Pending"));
}

function weightBar(weight) {
  const pct = Math.max(0, Math.min(100, Number(weight) || 0));
  return h("span", { class: "weight", "data-field": "weight", "data-weight": pct },
    h("span", { class: "bar", role: "img", "aria-label": `canary weight ${pct}%` }, h("span", { class: "fill", style: null })),
    `${pct}%`);
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), { hint: body.hint });
  return body;
}

function problem(err) {
  return h("div", { class: "problem", role: "alert" }, h("strong", {}, "Could not load: "), text(err.message),
    err.hint ? h("div", { class: "hint" }, err.hint) : null);
}

function setPage(kind, key, refresh, ...content) {
  for (const chart of charts.splice(0)) chart.destroy();
  page = { kind, key, refresh };
  main.replaceChildren(...content);
}

// ---- the list of rollouts -----------------------------------------------------------------------------------------
let filter = "";
function renderList() {
  const data = overview;
  if (!data) {
    setPage("list", "", renderList, h("p", {}, "Loading rollouts…"));
    return;
  }
  const rows = data.rollouts.filter((r) => !filter || `${r.namespace}/${r.name} ${r.model} ${r.phase}`.toLowerCase().includes(filter));
  const input = h("input", { id: "filter", type: "search", placeholder: "filter by name, model or phase", value: filter,
    "aria-label": "Filter rollouts", oninput: (event) => { filter = event.target.value.toLowerCase(); renderList(); focusFilter(); } });
  const table = h("table", { class: "rollouts", "aria-label": "Rollouts" },
    h("thead", {}, h("tr", {}, ["Namespace", "Name", "Model", "Candidate", "Phase", "Weight", "Step", "Age", "Message"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-rollout": `${r.namespace}/${r.name}` },
      h("td", {}, r.namespace),
      h("td", {}, link(rolloutHref(r.namespace, r.name), r.name, { class: "open" })),
      h("td", {}, link(modelHref(r.model), r.model)),
      h("td", {}, r.candidate),
      h("td", {}, phaseBadge(r.phase)),
      h("td", {}, weightBar(r.canaryWeight)),
      h("td", { "data-field": "step" }, r.currentStep === null || r.currentStep === undefined ? "–" : `${r.currentStep + 1}/${r.steps}`),
      h("td", {}, age(r.created)),
      h("td", { class: "message" }, text(r.message, ""))))));
  setPage("list", "", renderList,
    h("h1", {}, "Rollouts"),
    h("p", { class: "sub" }, `${data.rollouts.length} rollout(s) in ${data.scope} · cluster ${data.cluster}`,
      data.registry ? "" : " · no registry (start with --database-url for model history)"),
    input,
    rows.length ? table : h("p", { class: "empty" }, data.rollouts.length ? "No rollout matches the filter." : "No ModelRollouts yet."));
  for (const bar of main.querySelectorAll(".weight")) bar.querySelector(".fill").style.width = `${bar.dataset.weight}%`;
}
function focusFilter() {
  const input = document.getElementById("filter");
  if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
}

// ---- one rollout --------------------------------------------------------------------------------------------------
function stepLabel(step) {
  if (step.setWeight !== undefined) return `set weight ${step.setWeight}%`;
  if (step.pause !== undefined) return step.pause && step.pause.duration ? `pause ${step.pause.duration}` : "pause until promoted";
  if (step.analysis !== undefined) return `analysis ${text(step.analysis.duration, "")} every ${text(step.analysis.interval, "default")}`;
  if (step.cohort !== undefined) {
    const rules = (step.cohort.headers || []).map((r) => `${r.name}${r.type === "RegularExpression" ? " ~ " : ": "}${r.value}`);
    return `cohort ${rules.join(", ")}`;
  }
  if (step.shadow !== undefined) return `shadow ${text(step.shadow.duration, "")}, agreement within ${(100 * (step.shadow.tolerance ?? 0.01)).toFixed(1)}%`;
  return JSON.stringify(step);
}

function stepsTimeline(spec, status) {
  const current = status.currentStep ?? (status.phase === "Succeeded" ? spec.steps.length : -1);
  const ended = ["Succeeded", "RolledBack", "Failed"].includes(status.phase);
  return h("ol", { class: "timeline", "aria-label": "Steps" }, spec.steps.map((step, i) => {
    let state = "pending";
    if (i < current || status.phase === "Succeeded") state = "done";
    else if (i === current && !ended) state = "current";
    else if (i === current && ended) state = status.phase === "Succeeded" ? "done" : "stopped";
    return h("li", { class: `step step-${state}`, "aria-current": state === "current" ? "step" : null },
      h("span", { class: "num" }, i + 1), stepLabel(step), h("span", { class: "state" }, state));
  }));
}

function checksTable(checks) {
  const rows = [["signature", "Signature"], ["artifact", "Artifact bytes"], ["contract", "Tensor contract"], ["smokeTraining", "Smoke training"]]
    .map(([key, label]) => {
      const check = (checks || {})[key];
      return h("tr", { "data-check": key }, h("th", { scope: "row" }, label),
        h("td", {}, check ? h("span", { class: `result result-${check.result}` }, check.result) : "not run"),
        h("td", {}, check && check.signer ? `signer ${check.signer}` : ""),
        h("td", { class: "message" }, check ? text(check.message, "") : ""),
        h("td", {}, check && check.job ? `Job ${check.job}` : ""));
    });
  return h("table", { class: "checks", "aria-label": "Checks" }, h("tbody", {}, rows));
}

const num = (value) => (value === null || value === undefined || value === "" ? null : Number.parseFloat(value));
function bounds(interval) {
  const match = /^\[\s*([^,\]]+)\s*,\s*([^\]]+)\]$/.exec(interval || "");
  return match ? [num(match[1]), num(match[2])] : [null, null];
}

// The tolerance line in the effect's units: where "worse than the margin" starts for this metric.
function toleranceAt(metricSpec, look) {
  const tolerance = (metricSpec && metricSpec.tolerance) || {};
  const lowerIsBetter = metricSpec && metricSpec.direction === "lowerIsBetter";
  let margin = null;
  if (tolerance.absolute !== undefined && tolerance.absolute !== null) margin = Number(tolerance.absolute);
  else if (tolerance.relative !== undefined && tolerance.relative !== null && num(look.baseline) !== null) margin = Number(tolerance.relative) * Math.abs(num(look.baseline));
  if (margin === null) return null;
  return lowerIsBetter ? margin : -margin;
}

function metricCard(name, spec, looks, failed) {
  const series = looks.map((look, i) => {
    const metric = (look.metrics || []).find((m) => m.name === name) || {};
    const [low, high] = bounds(metric.interval);
    return { label: `${i + 1}`, effect: num(metric.effect), low, high, tolerance: toleranceAt(spec, metric), metric };
  }).filter((point) => point.effect !== null || point.low !== null);
  const latest = series.length ? series[series.length - 1].metric : {};
  const canvasId = `chart-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const card = h("section", { class: `card metric ${failed ? "failed" : ""}`, "data-metric": name, "aria-labelledby": `${canvasId}-title` },
    h("h3", { id: `${canvasId}-title` }, name, " ", h("span", { class: `verdict verdict-${text(latest.verdict, "none")}` }, text(latest.verdict, "no look yet"))),
    h("p", { class: "reason", "data-field": "reason" }, text(latest.reason, "")),
    h("table", { class: "numbers" }, h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "canary"), h("td", {}, text(latest.canary)), h("th", { scope: "row" }, "baseline"), h("td", {}, text(latest.baseline))),
      h("tr", {}, h("th", { scope: "row" }, "effect"), h("td", {}, text(latest.effect)), h("th", { scope: "row" }, "interval"), h("td", {}, text(latest.interval))),
      h("tr", {}, h("th", { scope: "row" }, "p"), h("td", {}, text(latest.pValue)), h("th", { scope: "row" }, "samples"), h("td", {}, text(latest.samples))))),
    series.length
      ? h("div", { class: "chart" }, h("canvas", { id: canvasId, role: "img",
        "aria-label": `${name}: effect of canary minus baseline with its confidence band and the tolerance, over ${series.length} look(s)` }))
      : h("p", { class: "empty" }, "No looks recorded yet."));
  return { card, draw: () => series.length && drawMetric(canvasId, series) };
}

function drawMetric(canvasId, series) {
  const canvas = document.getElementById(canvasId);
  if (!canvas) return;
  if (!window.Chart) {
    canvas.replaceWith(h("p", { class: "problem" }, window.RAMPART_CHARTS_MISSING || "Chart.js did not load."));
    return;
  }
  const labels = series.map((p) => p.label);
  charts.push(new window.Chart(canvas, {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "upper bound", data: series.map((p) => p.high), borderColor: "rgba(37,99,235,0.35)", borderWidth: 1, pointRadius: 0, fill: false },
        { label: "confidence band", data: series.map((p) => p.low), borderColor: "rgba(37,99,235,0.35)", borderWidth: 1, pointRadius: 0, fill: "-1", backgroundColor: "rgba(37,99,235,0.15)" },
        { label: "effect (canary − baseline)", data: series.map((p) => p.effect), borderColor: "rgb(37,99,235)", borderWidth: 2, pointRadius: 2 },
        { label: "tolerance", data: series.map((p) => p.tolerance), borderColor: "rgb(220,38,38)", borderDash: [6, 4], borderWidth: 2, pointRadius: 0 },
      ],
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "look" } }, y: { title: { display: true, text: "effect" } } },
      plugins: { legend: { position: "bottom" } },
    },
  }));
}

function srmCard(looks) {
  const series = looks.map((look, i) => ({ label: `${i + 1}`, srm: look.srm })).filter((p) => p.srm);
  if (!series.length) return null;
  const latest = series[series.length - 1].srm;
  const card = h("section", { class: `card metric ${latest.verdict === "Fail" ? "failed" : ""}`, "data-metric": "sample-ratio" },
    h("h3", {}, "traffic split (sample ratio) ", h("span", { class: `verdict verdict-${latest.verdict}` }, latest.verdict)),
    h("p", { class: "reason", "data-field": "reason" }, text(latest.reason, "")),
    h("p", {}, `canary share observed ${text(latest.canary)}, expected ${text(latest.baseline)}, p ${text(latest.pValue)}, requests ${text(latest.samples)}`),
    h("div", { class: "chart" }, h("canvas", { id: "chart-srm", role: "img", "aria-label": "observed and expected canary share of requests over the looks" })));
  const draw = () => {
    const canvas = document.getElementById("chart-srm");
    if (!canvas || !window.Chart) return;
    charts.push(new window.Chart(canvas, {
      type: "line",
      data: { labels: series.map((p) => p.label), datasets: [
        { label: "observed canary share", data: series.map((p) => num(p.srm.canary)), borderColor: "rgb(37,99,235)", pointRadius: 2 },
        { label: "expected (weight)", data: series.map((p) => num(p.srm.baseline)), borderColor: "rgb(107,114,128)", borderDash: [6, 4], pointRadius: 0 },
      ] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } } },
    }));
  };
  return { card, draw };
}

// The smoke-training run's loss over its steps (a gap where the loss was not finite).
function lossCard(checks) {
  const smoke = (checks || {}).smokeTraining;
  const points = (smoke && smoke.lossCurve) || [];
  if (!points.length) return null;
  const gaps = points.filter((p) => p.loss === undefined || p.loss === null).length;
  const card = h("section", { class: `card metric ${smoke.result === "Failed" ? "failed" : ""}`, "data-metric": "smoke-loss" },
    h("h3", {}, "smoke-training loss ", h("span", { class: `verdict verdict-${smoke.result}` }, smoke.result)),
    h("p", { class: "reason", "data-field": "reason" }, text(smoke.message, "")),
    h("p", {}, `${points.length} point(s), steps ${points[0].step} to ${points[points.length - 1].step}` +
      (gaps ? `; ${gaps} point(s) not finite (NaN or infinite loss)` : "")),
    h("div", { class: "chart" }, h("canvas", { id: "chart-loss", role: "img", "aria-label": "smoke-training loss by step" })));
  const draw = () => {
    const canvas = document.getElementById("chart-loss");
    if (!canvas || !window.Chart) return;
    charts.push(new window.Chart(canvas, {
      type: "line",
      data: { labels: points.map((p) => `${p.step}`), datasets: [
        { label: "loss", data: points.map((p) => (p.loss === undefined ? null : p.loss)), borderColor: "rgb(220,38,38)", pointRadius: 2, spanGaps: false },
      ] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } },
        scales: { x: { title: { display: true, text: "step" } }, y: { title: { display: true, text: "loss" } } } },
    }));
  };
  return { card, draw };
}

// The last action's answer per rollout: the live update that follows an action re-renders the page, and the answer
// must survive it.
const actionResults = new Map();

function actionBar(data, ns, name) {
  const allowed = Object.entries(data.actions).filter(([, ok]) => ok).map(([action]) => action);
  if (!allowed.length) return h("p", { class: "readonly", id: "read-only" }, "Read-only: your Kubernetes user may not change this rollout (or it has ended).");
  const key = `${ns}/${name}`;
  const result = h("p", { class: "action-result", role: "status", "aria-live": "polite" }, actionResults.get(key) || "");
  const buttons = allowed.map((action) => h("button", { type: "button", id: `action-${action}`, class: `action action-${action}`,
    onclick: async (event) => {
      const button = event.currentTarget;
      if (button.dataset.armed !== "yes") {
        button.dataset.armed = "yes";
        button.textContent = `confirm ${action}`;
        result.textContent = `Press again to ${action} ${ns}/${name}.`;
        return;
      }
      button.disabled = true;
      try {
        const response = await fetch(`/api/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${action}`,
          { method: "POST", headers: { "X-Rampart-Dashboard": "1" } });
        const body = await response.json();
        result.textContent = response.ok ? body.message : `${body.error}${body.hint ? ` (${body.hint})` : ""}`;
      } catch (err) {
        result.textContent = String(err);
      }
      actionResults.set(key, result.textContent);
      button.disabled = false;
      button.dataset.armed = "";
      button.textContent = action;
    } }, action));
  return h("div", { class: "actions", role: "group", "aria-label": "Actions" }, buttons, result);
}

async function renderRollout(ns, name) {
  const key = `${ns}/${name}`;
  let data;
  try {
    data = await getJson(`/api/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  } catch (err) {
    setPage("rollout", key, () => renderRollout(ns, name), h("h1", {}, key), problem(err));
    return;
  }
  const rollout = data.rollout;
  const status = rollout.status || {};
  const spec = rollout.spec;
  const metricSpecs = Object.fromEntries(data.metrics.map((m) => [m.name, m]));
  const failing = new Set();
  const lastLook = data.looks.length ? data.looks[data.looks.length - 1] : null;
  for (const m of (lastLook && lastLook.metrics) || []) if (m.verdict === "Fail") failing.add(m.name);
  const cards = data.metrics.map((m) => metricCard(m.name, metricSpecs[m.name], data.looks, failing.has(m.name)));
  // Failing metrics first: on a rolled-back rollout the chart that explains why is at the top.
  cards.sort((a, b) => Number(b.card.classList.contains("failed")) - Number(a.card.classList.contains("failed")));
  const srm = srmCard(data.looks);
  if (srm) cards.unshift(srm);
  const loss = lossCard(status.checks);
  const history = (status.history || []).slice().reverse();
  setPage("rollout", key, () => renderRollout(ns, name),
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/", "Rollouts"), " / ", ns, " / ", name),
    h("h1", {}, name, " ", phaseBadge(status.phase)),
    h("p", { class: "sub" }, "model ", link(modelHref(spec.model), spec.model), ` · candidate ${spec.candidate.version}`,
      ` · baseline ${text(status.baselineVersion)} · canary weight `, weightBar(status.canaryWeight)),
    h("p", { class: `status-message phase-${text(status.phase, "Pending")}`, id: "status-message" }, text(status.message, "")),
    actionBar(data, ns, name),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Steps"), stepsTimeline(spec, status)),
      h("section", { class: "card" }, h("h2", {}, "Checks"), checksTable(status.checks))),
    loss ? loss.card : null,
    h("h2", {}, "Analysis"),
    h("p", { class: "sub" }, data.looksSource === "registry"
      ? `${data.looks.length} look(s) from the registry`
      : `latest look from the rollout's status${data.registryNote ? ` (${data.registryNote})` : ""}`),
    cards.length ? h("div", { class: "metrics" }, cards.map((c) => c.card)) : h("p", { class: "empty" }, "No analysis yet."),
    h("section", { class: "card" }, h("h2", {}, "History"),
      history.length ? h("ol", { class: "history", reversed: true }, history.map((entry) => h("li", {},
        h("time", { datetime: entry.time }, entry.time), " ", phaseBadge(entry.phase), " ", text(entry.message, ""))))
        : h("p", { class: "empty" }, "No transitions yet.")));
  for (const bar of main.querySelectorAll(".weight")) bar.querySelector(".fill").style.width = `${bar.dataset.weight}%`;
  for (const c of cards) c.draw();
  if (loss) loss.draw();
  page.resourceVersion = rollout.metadata.resourceVersion;
}

// ---- one model ----------------------------------------------------------------------------------------------------
async function renderModel(model) {
  let data;
  try {
    data = await getJson(`/api/models/${encodeURIComponent(model)}`);
  } catch (err) {
    setPage("model", model, () => renderModel(model), h("h1", {}, model), problem(err));
    return;
  }
  const clusterTable = data.clusterRollouts.length ? h("table", { class: "rollouts" },
    h("thead", {}, h("tr", {}, ["Rollout", "Candidate", "Phase", "Weight"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, data.clusterRollouts.map((r) => h("tr", {}, h("td", {}, link(rolloutHref(r.namespace, r.name), `${r.namespace}/${r.name}`)),
      h("td", {}, r.candidate), h("td", {}, phaseBadge(r.phase)), h("td", {}, `${r.canaryWeight}%`)))))
    : h("p", { class: "empty" }, "None in the cluster now.");
  if (!data.registry) {
    setPage("model", model, () => renderModel(model), h("h1", {}, `model ${model}`),
      h("p", { class: "problem" }, data.registryNote), h("h2", {}, "Rollouts in the cluster"), clusterTable);
    return;
  }
  const chain = data.chain;
  const chainLine = chain.intact
    ? h("p", { class: "chain chain-intact", id: "chain" }, `Event log: chain intact (${chain.rowsChecked} event(s) checked, head #${chain.headSeq})`)
    : h("p", { class: "chain chain-broken", id: "chain", role: "alert" },
      `Event log: HASH CHAIN BROKEN at event #${chain.firstBreak && chain.firstBreak.seq}: ${text(chain.firstBreak && chain.firstBreak.reason)} — the history was altered; investigate before trusting it.`);
  setPage("model", model, () => renderModel(model),
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/", "Rollouts"), " / model ", model),
    h("h1", {}, `model ${model}`),
    h("p", { class: "sub" }, "production: ", data.production ? `${data.production.version} (${data.production.digest})` : "none yet"),
    chainLine,
    h("section", { class: "card" }, h("h2", {}, "Rollouts and rollbacks"),
      data.rollouts.length ? h("table", { class: "history-table", "aria-label": "Rollouts and rollbacks" },
        h("thead", {}, h("tr", {}, ["Rollout", "Candidate", "Baseline", "Started (UTC)", "Outcome", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, data.rollouts.map((r) => h("tr", { "data-outcome": text(r.outcome, "running") },
          h("td", {}, link(rolloutHref(r.namespace, r.name), `${r.namespace}/${r.name}`)),
          h("td", {}, r.candidate), h("td", {}, text(r.baseline)), h("td", {}, text(r.startedAt)),
          h("td", {}, h("span", { class: `outcome outcome-${text(r.outcome, "running")}` }, text(r.outcome, "in progress"))),
          h("td", { class: "message" }, text(r.rollback ? r.rollback.reason : r.reason, ""))))))
        : h("p", { class: "empty" }, "No rollouts recorded.")),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Versions"),
        h("table", { class: "versions" }, h("thead", {}, h("tr", {}, ["Version", "Status", "Digest", "Signer", "Verified"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, data.versions.map((v) => h("tr", {}, h("td", {}, v.version), h("td", {}, text(v.status)),
            h("td", { class: "digest", title: v.digest }, v.digest.slice(0, 19) + "…"), h("td", {}, text(v.signerKeyId)), h("td", {}, text(v.verifiedAt))))))),
      h("section", { class: "card" }, h("h2", {}, "production alias"),
        data.productionMoves.length ? h("ol", { class: "history" }, data.productionMoves.map((m) => h("li", {},
          `${text(m.from, "(none)")} → ${m.to} at ${m.at} by ${m.actor}: ${m.reason}`)))
          : h("p", { class: "empty" }, "Never moved."))),
    h("h2", {}, "Rollouts in the cluster"), clusterTable);
}

// ---- routing, live updates, keyboard ------------------------------------------------------------------------------
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "rollouts" && parts.length === 3) renderRollout(parts[1], parts[2]);
  else if (parts[0] === "models" && parts.length === 2) renderModel(parts[1]);
  else renderList();
  main.focus({ preventScroll: true });
}
window.addEventListener("hashchange", route);

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("overview", (event) => {
    overview = JSON.parse(event.data);
    live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    live.className = "live ok";
    if (!page || page.kind === "list") { renderList(); return; }
    if (page.kind === "rollout") {
      const entry = overview.rollouts.find((r) => `${r.namespace}/${r.name}` === page.key);
      if (!entry || entry.resourceVersion !== page.resourceVersion) page.refresh();
    } else if (page.kind === "model") {
      page.refresh();
    }
  });
  source.addEventListener("problem", (event) => {
    const body = JSON.parse(event.data);
    live.textContent = `problem: ${body.error}`;
    live.className = "live bad";
  });
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live bad"; };
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "g") { location.hash = "#/"; event.preventDefault(); }
  else if (event.key === "/") { if (page && page.kind === "list") { focusFilter(); event.preventDefault(); } }
  else if (event.key === "j" || event.key === "k") {
    const links = [...main.querySelectorAll("a.open")];
    if (!links.length) return;
    const at = links.indexOf(document.activeElement);
    const next = event.key === "j" ? Math.min(links.length - 1, at + 1) : Math.max(0, at - 1);
    links[next].focus();
    event.preventDefault();
  }
});

route();
connect();
