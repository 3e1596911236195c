// report.html's plots and conversation browser: inline SVG from the JSON in <script id="report-data">.
// Hand-written (no charting library) so that the page is one self-contained file that needs no network.
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const NS = "http://www.w3.org/2000/svg";
const PEOPLE_COLOR = "#111";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const color = (i) => COLORS[i % COLORS.length];

function el(tag, attrs, parent, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function series() {  // real people first, then each run
  const out = [{label: DATA.people.label, color: PEOPLE_COLOR, people: true, run: DATA.people}];
  DATA.runs.forEach((r, i) => out.push({label: r.label, color: color(i), people: false, run: r}));
  return out;
}

function legend(parent, items) {
  const box = el("div", {class: "legend"}, parent);
  for (const s of items) {
    const item = el("span", {class: "legend-item"}, box);
    el("span", {class: "swatch", style: "background:" + s.color}, item);
    item.appendChild(document.createTextNode(s.label));
  }
}

// A line chart of shares per bin (one line per series); bins are labelled categories.
function shareChart(target, binLabels, lines, xTitle, yTitle) {
  const W = 640, H = 260, L = 48, R = 28, T = 12, B = 48;
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"}, target);
  const ymax = Math.max(0.05, ...lines.flatMap((l) => l.values));
  const x = (i) => L + (binLabels.length === 1 ? 0.5 : i / (binLabels.length - 1)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  for (let k = 0; k <= 4; k++) {
    const v = (ymax * k) / 4;
    el("svg:line", {x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid"}, svg);
    el("svg:text", {x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick"}, svg, Math.round(v * 100) + "%");
  }
  binLabels.forEach((b, i) => el("svg:text", {x: x(i), y: H - B + 16, "text-anchor": "middle", class: "tick"}, svg, b));
  el("svg:text", {x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", class: "axis"}, svg, xTitle);
  el("svg:text", {x: 12, y: T + (H - T - B) / 2, class: "axis", transform: `rotate(-90 12 ${T + (H - T - B) / 2})`,
    "text-anchor": "middle"}, svg, yTitle);
  for (const l of lines) {
    const pts = l.values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    el("svg:polyline", {points: pts, fill: "none", stroke: l.color, "stroke-width": l.people ? 3 : 2}, svg);
    l.values.forEach((v, i) => el("svg:circle", {cx: x(i), cy: y(v), r: 3, fill: l.color}, svg)
      .appendChild(el("svg:title", {}, null, `${l.label}: ${(v * 100).toFixed(1)}% (${binLabels[i]}, n=${l.n})`)));
  }
  return svg;
}

function shares(values, edges) {  // edges: upper bounds (inclusive) of each bin, the last is Infinity
  const counts = edges.map(() => 0);
  for (const v of values) counts[edges.findIndex((e) => v <= e)] += 1;
  return counts.map((c) => (values.length ? c / values.length : 0));
}

function plotTurnLengths() {
  const target = document.getElementById("plot-turn-length");
  const edges = [2, 4, 8, 16, 32, 64, 128, 256, Infinity];
  const labels = ["1-2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", "129-256", ">256"];
  const lines = series().filter((s) => s.run.turn_words.length)
    .map((s) => ({...s, values: shares(s.run.turn_words, edges), n: s.run.turn_words.length}));
  shareChart(target, labels, lines, "words per user turn", "share of turns");
  legend(target, lines);
}

function plotPAi() {
  const target = document.getElementById("plot-p-ai");
  const edges = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, Infinity];
  const labels = edges.map((e, i) => (i / 10).toFixed(1) + "+");
  const lines = series().filter((s) => s.run.p_ai.length)
    .map((s) => ({...s, values: shares(s.run.p_ai, edges), n: s.run.p_ai.length}));
  if (!lines.length) { el("p", {class: "note"}, target, "No run was scored by the AI-voice classifier."); return; }
  shareChart(target, labels, lines, "P(AI) of a user turn, bins of 0.1 (AI-voice classifier)", "share of turns");
  legend(target, lines);
}

function plotEnds() {
  const target = document.getElementById("plot-ends");
  // Stop reasons: one stacked bar per run.
  const reasons = [...new Set(DATA.runs.flatMap((r) => Object.keys(r.stop_reasons)))].sort();
  const W = 640, rowH = 26, L = 190, H = 20 + rowH * DATA.runs.length + 24;
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", id: "svg-stop-reasons"}, target);
  const rc = (k) => ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d"][k % 7];
  DATA.runs.forEach((r, i) => {
    const total = Object.values(r.stop_reasons).reduce((a, b) => a + b, 0) || 1;
    let x0 = L;
    el("svg:text", {x: L - 8, y: 20 + i * rowH + 15, "text-anchor": "end", class: "tick"}, svg, r.label);
    reasons.forEach((reason, k) => {
      const w = ((r.stop_reasons[reason] || 0) / total) * (W - L - 10);
      if (w > 0) {
        el("svg:rect", {x: x0, y: 20 + i * rowH, width: w, height: rowH - 6, fill: rc(k)}, svg)
          .appendChild(el("svg:title", {}, null, `${reason}: ${r.stop_reasons[reason]} of ${total}`));
        if (w > 28) el("svg:text", {x: x0 + w / 2, y: 20 + i * rowH + 15, "text-anchor": "middle", class: "bar-label"},
          svg, r.stop_reasons[reason]);
      }
      x0 += w;
    });
  });
  el("svg:text", {x: L, y: 12, class: "axis"}, svg, "why each conversation stopped (share of conversations)");
  legend(target, reasons.map((reason, k) => ({label: reason, color: rc(k)})));
  // Conversation length: user turns per conversation, against people's.
  const maxT = Math.min(12, Math.max(1, ...series().flatMap((s) => s.run.conversation_turns || [])));
  const edges = [...Array(maxT - 1).keys()].map((k) => k + 1).concat([Infinity]);
  const labels = edges.map((e, i) => (e === Infinity ? `${i + 1}+` : String(e)));
  const lines = series().filter((s) => (s.run.conversation_turns || []).length)
    .map((s) => ({...s, values: shares(s.run.conversation_turns, edges), n: s.run.conversation_turns.length}));
  const sub = el("div", {id: "plot-conversation-length"}, target);
  el("h4", {}, sub, "User turns per conversation (where it ended)");
  shareChart(sub, labels, lines, "user turns in the conversation", "share of conversations");
  legend(sub, lines);
}

const MEASURES = {human_likeness: "1 - mean P(AI)", mean_turn_words: "words per user turn",
  mean_user_turns: "user turns per conversation", ended_share: "share the user ended"};

function plotScenarios() {
  const target = document.getElementById("plot-scenarios");
  const measure = document.getElementById("scenario-measure").value;
  target.querySelectorAll("svg, .legend").forEach((n) => n.remove());
  const ids = [...new Set(DATA.runs.flatMap((r) => Object.keys(r.scenarios)))].sort();
  const vals = DATA.runs.flatMap((r) => ids.map((id) => (r.scenarios[id] || {})[measure])).filter((v) => v != null);
  const W = 640, rowH = 24, L = 190, R = 20, H = 30 + rowH * ids.length + 20;
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", id: "svg-scenarios"}, target);
  const lo = Math.min(0, ...vals), hi = Math.max(1e-9, ...vals);
  const x = (v) => L + ((v - lo) / (hi - lo || 1)) * (W - L - R);
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    el("svg:line", {x1: x(v), x2: x(v), y1: 20, y2: H - 20, class: "grid"}, svg);
    el("svg:text", {x: x(v), y: 14, "text-anchor": "middle", class: "tick"}, svg, +v.toFixed(2));
  }
  ids.forEach((id, j) => {
    const cy = 30 + j * rowH + rowH / 2;
    el("svg:text", {x: L - 8, y: cy + 4, "text-anchor": "end", class: "tick"}, svg, id);
    DATA.runs.forEach((r, i) => {
      const s = r.scenarios[id];
      if (!s || s[measure] == null) return;
      el("svg:circle", {cx: x(s[measure]), cy: cy + (i - (DATA.runs.length - 1) / 2) * 4, r: 6, fill: color(i),
        "fill-opacity": 0.8}, svg).appendChild(el("svg:title", {}, null,
        `${r.label}, ${id}: ${MEASURES[measure]} ${s[measure]} (${s.conversations} conversations)`));
    });
  });
  legend(target, DATA.runs.map((r, i) => ({label: r.label, color: color(i)})));
}

function turnBox(parent, who, text, pAi, extra) {
  const box = el("div", {class: "turn " + who}, parent);
  const head = el("div", {class: "who"}, box, extra && extra.title ? extra.title : who);
  if (pAi != null) {
    el("span", {class: "p-ai " + (pAi > 0.5 ? "high" : "low"), title: "the AI-voice classifier's P(AI)"}, head,
      "P(AI) " + Number(pAi).toFixed(2));
  }
  if (extra && extra.truncated) el("span", {class: "flag"}, head, "cut at max_new_tokens");
  el("div", {class: "text"}, box, text == null ? "" : text);
  return box;
}

function showConversation(run, conv) {
  const panel = document.getElementById("conversation");
  panel.textContent = "";
  el("h3", {}, panel, `${run.label}: ${conv.id}`);
  el("p", {class: "note"}, panel, `scenario ${conv.scenario}; stopped: ${conv.stop}; ${conv.user_turns} user turns` +
    (conv.intent ? `; intent: ${conv.intent}` : ""));
  for (const item of conv.items) {
    if (item.role !== "user") { turnBox(panel, "assistant", item.text); continue; }
    if (!conv.replay) { turnBox(panel, "user", item.text, item.p_ai, {truncated: item.truncated}); continue; }
    const pair = el("div", {class: "pair"}, panel);
    const model = item.text != null ? item.text : (item.ended ? "(ended the conversation here)" : "(no turn)");
    turnBox(pair, "user", model, item.p_ai, {title: "user model", truncated: item.truncated});
    const real = item.real != null ? item.real : (item.person_ended ? "(the person stopped here)" : "(no turn)");
    turnBox(pair, "person", real, null, {title: "real person"});
  }
}

function showRun() {
  const run = DATA.runs[Number(document.getElementById("run-select").value)];
  const list = document.getElementById("conv-list");
  list.textContent = "";
  document.getElementById("conversation").textContent = "";
  el("p", {class: "note"}, list, `${run.mode} run, user ${run.user}, ${run.conversations.length} conversations`);
  if (!run.conversations.length) el("p", {class: "note"}, list, "No transcripts.jsonl beside this run's metrics.");
  run.conversations.forEach((conv, i) => {
    const b = el("button", {class: "conv-item", "data-index": i}, list, `${conv.id} (${conv.stop}, ${conv.user_turns})`);
    b.addEventListener("click", () => {
      list.querySelectorAll(".conv-item").forEach((n) => n.classList.remove("active"));
      b.classList.add("active");
      showConversation(run, conv);
    });
  });
}

function init() {
  const select = document.getElementById("run-select");
  DATA.runs.forEach((r, i) => el("option", {value: i}, select, `${r.label} (${r.mode})`));
  select.addEventListener("change", showRun);
  const measure = document.getElementById("scenario-measure");
  Object.entries(MEASURES).forEach(([k, v]) => el("option", {value: k}, measure, v));
  measure.addEventListener("change", plotScenarios);
  plotTurnLengths();
  plotPAi();
  plotEnds();
  plotScenarios();
  if (DATA.runs.length) showRun();
}

init();
