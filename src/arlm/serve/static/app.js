// arlm playground: plain JavaScript, plain SVG, no libraries. Talks to the JSON API under /v1.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = {
  models: {},        // name -> model info (GET /v1/models)
  prompt: "",        // the prompt of the last run
  tokens: [],        // the generated token events of the last run
  position: null,    // which generated token the distribution shows (null: after the prompt)
  abort: null,       // AbortController of the running stream
};

// ---------------------------------------------------------------- requests

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const r = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(`${r.status}: ${data.detail || r.statusText}`);
  return data;
}

// The decoding settings from the form: only the fields the user filled in.
function settings() {
  const f = $("controls");
  const out = { model: $("model").value, strategy: $("strategy").value };
  const ints = ["top_k", "num_beams", "max_new_tokens", "seed"];
  const floats = ["temperature", "top_p", "min_p", "length_penalty", "repetition_penalty"];
  const beam = out.strategy === "beam";
  for (const name of ints.concat(floats)) {
    const input = f.elements[name];
    if (!input || input.value === "" || input.closest("fieldset").disabled) continue;
    if (beam && ["temperature", "top_k", "top_p", "min_p"].includes(name)) continue;
    if (!beam && ["num_beams", "length_penalty"].includes(name)) continue;
    out[name] = ints.includes(name) ? parseInt(input.value, 10) : parseFloat(input.value);
  }
  return out;
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = String(err.message || err);
}

// ---------------------------------------------------------------- text and colours

// p -> a light background: red below 1 %, through yellow, to green above 90 % (log scale).
function probColour(p) {
  const x = Math.min(1, Math.max(0, (Math.log10(Math.max(p, 1e-6)) + 2) / 2));
  const hue = Math.round(120 * x);
  return `hsl(${hue}, ${85 - 30 * x}%, ${86 - 4 * Math.sin(Math.PI * x)}%)`;
}

// How a token's text is drawn in a chart label: visible spaces and newlines.
function visible(text) {
  return text.replace(/ /g, "\u2423").replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
}

function pct(p) {
  if (p === null || p === undefined) return "–";
  return p >= 0.1 ? (100 * p).toFixed(1) + "%" : p >= 0.001 ? (100 * p).toFixed(2) + "%" : p.toExponential(1);
}

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- the output

function resetOutput(prompt) {
  const out = $("output");
  out.textContent = "";
  const span = document.createElement("span");
  span.className = "prompt";
  span.textContent = prompt;
  out.appendChild(span);
  state.prompt = prompt;
  state.tokens = [];
  state.position = null;
}

function addToken(event) {
  state.tokens.push(event);
  const span = document.createElement("span");
  span.className = "tok" + (event.special ? " special" : "");
  span.textContent = event.special ? (event.text || "[EOS]") : event.text;
  span.style.background = probColour(event.prob ?? 0);
  span.title = `#${event.index} id ${event.id}: p = ${pct(event.prob)} (log p = ${event.logprob})`;
  span.dataset.index = event.index;
  span.addEventListener("click", () => selectToken(event.index));
  $("output").appendChild(span);
}

function selectToken(index) {
  for (const s of document.querySelectorAll(".tok.selected")) s.classList.remove("selected");
  const span = document.querySelector(`.tok[data-index="${index}"]`);
  if (span) span.classList.add("selected");
  state.position = index;
  showDistribution().catch(showError);
}

// ---------------------------------------------------------------- generation

async function generate(ev) {
  ev.preventDefault();
  showError(null);
  const body = { ...settings(), prompt: $("prompt").value };
  if (body.strategy === "beam") return runBeam(body);
  resetOutput(body.prompt);
  $("beam-card").hidden = true;
  setRunning(true);
  const started = performance.now();
  state.abort = new AbortController();
  try {
    const r = await fetch("/v1/generate", { method: "POST", headers: headers(),
      body: JSON.stringify({ ...body, stream: true }), signal: state.abort.signal });
    if (!r.ok) {
      const data = await r.json().catch(() => ({ detail: r.statusText }));
      throw new Error(`${r.status}: ${data.detail}`);
    }
    $("status").textContent = "streaming…";
    await readEvents(r, (name, data) => {
      if (name === "token") {
        addToken(data);
        const secs = (performance.now() - started) / 1000;
        $("status").textContent = `${state.tokens.length} tokens, ${(state.tokens.length / secs).toFixed(0)} tok/s`;
      } else if (name === "done") {
        $("status").textContent = `done: ${data.num_tokens} tokens, stopped by ${data.stop_reason}`;
      } else if (name === "error") {
        throw new Error(data.detail);
      }
    });
  } catch (err) {
    if (err.name === "AbortError") $("status").textContent = `stopped after ${state.tokens.length} tokens`;
    else showError(err);
  } finally {
    setRunning(false);
  }
  if (state.tokens.length) selectToken(0);
  await showAttention().catch(showError);
}

// Server-sent events from a fetch() body: blocks of "event: NAME" and "data: JSON", blank-line separated.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
}

// ---------------------------------------------------------------- the next-token distribution

async function showDistribution() {
  const s = settings();
  const before = state.position === null ? [] : state.tokens.slice(0, state.position).map((t) => t.id);
  const prompt = state.position === null ? $("prompt").value : state.prompt;
  const body = { ...s, prompt, tokens: before, top_n: 20 };
  delete body.max_new_tokens;
  const d = await api("/v1/next", body);
  const chosen = state.position === null ? null : state.tokens[state.position];
  $("dist-title").textContent = `after ${d.prefix ? "«" + tail(d.prefix) + "»" : "[SOS]"}`
    + ` · ${d.kept} of ${d.vocab_size} tokens kept · entropy ${d.entropy_bits} bits`;
  drawBars(d, chosen);
}

function tail(text) {
  return text.length > 40 ? "…" + text.slice(-40) : text;
}

function drawBars(d, chosen) {
  const rowH = 26, labelW = 90, numW = 150, width = Math.max(420, $("chart").clientWidth || 640);
  const barW = width - labelW - numW - 10;
  const rows = d.candidates;
  const svg = el("svg", { width, height: rows.length * rowH + 24, role: "img", id: "dist-svg",
    "aria-label": "next-token distribution" });
  const defs = el("defs");
  const pattern = el("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)" });
  pattern.appendChild(el("rect", { width: 6, height: 6, fill: "#fff" }));
  pattern.appendChild(el("rect", { width: 3, height: 6, fill: "#e5484d" }));
  defs.appendChild(pattern);
  svg.appendChild(defs);
  const maxP = Math.max(...rows.map((c) => Math.max(c.p ?? 0, c.p_final ?? 0, c.p_shaped ?? 0)), 1e-9);
  rows.forEach((c, i) => {
    const y = 8 + i * rowH;
    const g = el("g", { class: "bar-row" + (c.removed_by ? " removed" : "") });
    const isChosen = chosen && chosen.id === c.id;
    g.appendChild(el("text", { x: labelW - 8, y: y + 15, "text-anchor": "end",
      "font-weight": isChosen ? "700" : "400" }, (isChosen ? "▶ " : "") + visible(c.text)));
    const wModel = barW * (c.p ?? 0) / maxP;
    g.appendChild(el("rect", { class: "bar model", x: labelW, y: y + 2, width: Math.max(wModel, 1),
      height: 8, fill: "#c9ced6" }));
    if (c.removed_by) {
      const w = barW * (c.p_shaped ?? c.p ?? 0) / maxP;
      g.appendChild(el("rect", { class: "bar removed", x: labelW, y: y + 11, width: Math.max(w, 2), height: 9,
        fill: "url(#hatch)", stroke: "#e5484d", "stroke-width": 0.6 }));
      g.appendChild(el("text", { class: "num", x: labelW + Math.max(w, 2) + 6, y: y + 19 },
        `removed by ${c.removed_by.replace("_", "-")}`));
    } else {
      const w = barW * (c.p_final ?? 0) / maxP;
      g.appendChild(el("rect", { class: "bar final", x: labelW, y: y + 11, width: Math.max(w, 1), height: 9,
        fill: "#2f6fdb" }));
    }
    g.appendChild(el("text", { class: "num", x: width - numW + 4, y: y + 15 },
      `${pct(c.p)} → ${c.removed_by ? "0" : pct(c.p_final)}`));
    const title = el("title", {}, `${visible(c.text)} (id ${c.id}): model ${pct(c.p)}, after temperature `
      + `${pct(c.p_shaped)}, sampled from ${pct(c.p_final)}` + (c.removed_by ? `; removed by ${c.removed_by}` : ""));
    g.appendChild(title);
    svg.appendChild(g);
  });
  const chart = $("chart");
  chart.textContent = "";
  chart.appendChild(svg);
}

// ---------------------------------------------------------------- beam search

async function runBeam(body) {
  resetOutput(body.prompt);
  setRunning(true);
  try {
    const d = await api("/v1/beam", body);
    const best = d.best[0];
    if (best) for (const t of best.tokens) addToken(t);
    $("status").textContent = best ? `best of ${d.best.length}: score ${best.score} (log p ${best.log_prob}), `
      + `stopped by ${best.stop_reason}` : "no hypothesis";
    $("beam-card").hidden = false;
    $("beam-title").textContent = `K = ${d.num_beams}, α = ${d.length_penalty}, ${d.steps} steps, `
      + `${d.nodes.length - 1} candidates`;
    drawTree(d);
  } catch (err) {
    showError(err);
  } finally {
    setRunning(false);
  }
  await showAttention().catch(showError);
}

function drawTree(d) {
  const colW = 92, rowH = 26, boxW = 78, boxH = 20;
  const byStep = new Map();
  for (const n of d.nodes) {
    if (!byStep.has(n.step)) byStep.set(n.step, []);
    byStep.get(n.step).push(n);
  }
  const pos = new Map();
  let maxRows = 1;
  for (const [step, nodes] of byStep) {
    nodes.sort((a, b) => (b.score ?? -1e9) - (a.score ?? -1e9));
    nodes.forEach((n, i) => pos.set(n.id, { x: 10 + (step + 1) * colW, y: 10 + i * rowH }));
    maxRows = Math.max(maxRows, nodes.length);
  }
  // the best hypothesis: the finished node with the best normalised score, and its ancestors
  const finished = d.nodes.filter((n) => n.status === "finished" && n.norm !== null);
  const bestPath = new Set();
  if (finished.length) {
    let n = finished.reduce((a, b) => (b.norm > a.norm ? b : a));
    const byId = new Map(d.nodes.map((x) => [x.id, x]));
    while (n) { bestPath.add(n.id); n = n.parent === null ? null : byId.get(n.parent); }
  }
  const width = 20 + (d.steps + 1) * colW + boxW, height = 20 + maxRows * rowH;
  const svg = el("svg", { width, height, id: "beam-svg" });
  for (const n of d.nodes) {
    if (n.parent === null) continue;
    const a = pos.get(n.parent), b = pos.get(n.id);
    const onBest = bestPath.has(n.id);
    svg.appendChild(el("path", { d: `M${a.x + boxW} ${a.y + boxH / 2} C${a.x + boxW + 10} ${a.y + boxH / 2} `
      + `${b.x - 10} ${b.y + boxH / 2} ${b.x} ${b.y + boxH / 2}`, fill: "none",
      stroke: onBest ? "#f2a516" : n.status === "pruned" ? "#dde1e7" : "#9fb6e0", "stroke-width": onBest ? 3 : 1.2 }));
  }
  const fill = { kept: "#e8effc", finished: "#def3e6", pruned: "#f3f4f6" };
  const stroke = { kept: "#2f6fdb", finished: "#2e9e5b", pruned: "#b8bec8" };
  for (const n of d.nodes) {
    const p = pos.get(n.id);
    const g = el("g", { class: `node ${n.status}`, opacity: n.status === "pruned" ? 0.7 : 1 });
    g.appendChild(el("rect", { x: p.x, y: p.y, width: boxW, height: boxH, rx: 4,
      fill: fill[n.status], stroke: bestPath.has(n.id) ? "#f2a516" : stroke[n.status],
      "stroke-width": bestPath.has(n.id) ? 2 : 1 }));
    const label = n.parent === null ? "prompt" : visible(n.text).slice(0, 6);
    g.appendChild(el("text", { x: p.x + 5, y: p.y + 14 }, label));
    if (n.parent !== null) g.appendChild(el("text", { class: "num", x: p.x + boxW - 4, y: p.y + 14,
      "text-anchor": "end" }, n.score.toFixed(1)));
    g.appendChild(el("title", {}, n.parent === null ? `prompt: ${n.text}` :
      `${visible(n.text)}: s = ${n.score}` + (n.norm !== undefined ? `, s/|y|^α = ${n.norm}` : "") + ` (${n.status})`));
    svg.appendChild(g);
  }
  const box = $("beam");
  box.textContent = "";
  box.appendChild(svg);
}

// ---------------------------------------------------------------- attention

let attention = null;

async function showAttention() {
  const info = state.models[$("model").value];
  if (!info || !info.attention) { $("attn-card").hidden = true; return; }
  attention = await api("/v1/attention", { model: info.name, prompt: state.prompt,
    tokens: state.tokens.map((t) => t.id) });
  const layer = $("attn-layer"), head = $("attn-head");
  layer.textContent = ""; head.textContent = "";
  for (let l = 0; l < attention.n_layer; l++) layer.add(new Option(String(l), String(l)));
  head.add(new Option("mean", "mean"));
  for (let h = 0; h < attention.n_head; h++) head.add(new Option(String(h), String(h)));
  $("attn-card").hidden = false;
  $("attn-title").textContent = `${attention.tokens.length} tokens` + (attention.truncated ? " (the first ones)" : "");
  drawAttention();
}

function drawAttention() {
  if (!attention) return;
  const T = attention.tokens.length, l = +$("attn-layer").value, h = $("attn-head").value;
  const maskOnly = $("attn-mask").checked;
  const cell = Math.max(8, Math.min(22, Math.floor(620 / T))), label = 46;
  const weights = attention.weights[l];
  const w = (i, j) => h === "mean" ? weights.reduce((s, hw) => s + hw[i][j], 0) / weights.length : weights[+h][i][j];
  const svg = el("svg", { width: label + T * cell + 10, height: label + T * cell + 10, id: "attn-svg" });
  for (let i = 0; i < T; i++) {
    const name = visible(attention.tokens[i]).slice(0, 5);
    svg.appendChild(el("text", { x: label - 4, y: label + i * cell + cell * 0.75, "text-anchor": "end",
      "font-size": Math.min(12, cell) }, name));
    svg.appendChild(el("text", { x: 0, y: 0, "font-size": Math.min(12, cell),
      transform: `translate(${label + i * cell + cell * 0.75}, ${label - 4}) rotate(-90)` }, name));
    for (let j = 0; j < T; j++) {
      const allowed = attention.mask[i][j] === 1;
      const v = allowed ? w(i, j) : 0;
      const fill = !allowed ? "#e6e8ec" : maskOnly ? "#9fb6e0" : `rgba(47, 111, 219, ${0.06 + 0.94 * Math.sqrt(v)})`;
      const r = el("rect", { x: label + j * cell, y: label + i * cell, width: cell - 1, height: cell - 1, fill });
      r.appendChild(el("title", {}, `${attention.tokens[i]} → ${attention.tokens[j]}: `
        + (allowed ? `weight ${v.toFixed(3)}` : "masked (a later position)")));
      svg.appendChild(r);
    }
  }
  const box = $("attn");
  box.textContent = "";
  box.appendChild(svg);
}

// ---------------------------------------------------------------- wiring

function strategyChanged() {
  const beam = $("strategy").value === "beam";
  document.querySelector("fieldset.sampling").disabled = beam;
  document.querySelector("fieldset.beam").disabled = !beam;
  $("next").disabled = false;
}

function modelChanged() {
  const info = state.models[$("model").value];
  if (!info) return;
  $("model-info").textContent = `${info.family}, ${info.tokenizer} tokenizer, ${info.vocab_size} tokens`
    + (info.parameters ? `, ${info.parameters.toLocaleString()} parameters` : "")
    + (info.block_size ? `, context ${info.block_size}` : "");
  if (!info.attention) $("attn-card").hidden = true;
}

let refresh = null;
function knobChanged() {  // re-draw the shown distribution with the new processors
  if (!$("chart").querySelector("svg")) return;
  clearTimeout(refresh);
  refresh = setTimeout(() => showDistribution().then(() => showError(null), showError), 250);
}

async function init() {
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", () => state.abort && state.abort.abort());
  $("next").addEventListener("click", () => {
    showError(null);
    state.position = null;
    state.prompt = $("prompt").value;
    showDistribution().catch(showError);
  });
  $("strategy").addEventListener("change", () => { strategyChanged(); knobChanged(); });
  $("model").addEventListener("change", modelChanged);
  for (const input of document.querySelectorAll("fieldset input")) input.addEventListener("input", knobChanged);
  for (const id of ["attn-layer", "attn-head", "attn-mask"]) $(id).addEventListener("change", drawAttention);
  strategyChanged();
  try {
    const { data: models } = await api("/v1/models");  // OpenAI's list; arlm's details in each entry
    for (const m of models) {
      state.models[m.name] = m;
      $("model").add(new Option(`${m.name} (${m.family})`, m.name));
    }
    modelChanged();
  } catch (err) {
    showError(err);
  }
}

init();
