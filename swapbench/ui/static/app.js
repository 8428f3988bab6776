// swapbench ui: the page's behaviour. Every edit is one request to the server (swapbench/ui/server.py),
// which calls swapbench.editing.session; this file only keeps the page's choices and shows results.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  model: null, images: [], a: null, b: null,
  rows: new Set(), cols: new Set(), withSet: new Set(), withoutSet: new Set(),
  painted: false,
};
window.swapbench = ui;  // read by the browser tests
ui.pending = 0;

function showError(message) {
  const box = $("error");
  box.textContent = "error: " + message;
  box.style.display = "block";
}
function clearError() { $("error").style.display = "none"; $("error").textContent = ""; }
function setStatus() { $("status").textContent = ui.pending > 0 ? (ui.statusText || "working…") : ""; }

async function call(path, body, statusText) {
  ui.pending += 1;
  ui.statusText = statusText;
  setStatus();
  try {
    const opts = body === undefined ? { method: "POST" }
      : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const reply = await fetch(path, opts);
    let data;
    try { data = await reply.json(); } catch (e) { data = { error: `the server answered ${reply.status} without JSON` }; }
    if (!reply.ok || data.error) throw new Error(data.error || `the server answered ${reply.status}`);
    return data;
  } catch (e) {
    showError(e.message.startsWith("Failed to fetch") ? "the server cannot be reached; is `swapbench ui` still running?" : e.message);
    throw e;
  } finally {
    ui.pending -= 1;
    setStatus();
  }
}

// one request of a kind in flight at a time; a change while one runs sends one more when it returns
function coalesced(fn) {
  let busy = false, again = false;
  const run = async () => {
    if (busy) { again = true; return; }
    busy = true;
    ui.pending += 1;  // counts the queued follow-up too, so tests can wait for the last result
    try { await fn(); } catch (e) { /* shown by call() */ }
    finally {
      busy = false;
      ui.pending -= 1;
      if (again) { again = false; run(); }
      setStatus();
    }
  };
  return run;
}

function downloads(where, name, src, record) {
  const box = $(where);
  box.innerHTML = "";
  const png = document.createElement("a");
  png.href = src; png.download = name + ".png"; png.textContent = "download PNG"; png.className = "download-png";
  const json = document.createElement("a");
  json.href = URL.createObjectURL(new Blob([JSON.stringify(record, null, 1)], { type: "application/json" }));
  json.download = name + ".json"; json.textContent = "download JSON"; json.className = "download-json";
  box.append(png, json);
  box.dataset.record = JSON.stringify(record);
}

// ---- model ------------------------------------------------------------------------------------
function showState(state) {
  ui.model = state.model;
  ui.limits = state.limits;
  $("model-info").textContent = state.model
    ? `${state.model.source} · recipe ${state.model.recipe} · ${state.model.resolution} px · commit ${state.model.commit.slice(0, 10)}`
    : "no model loaded";
  const select = $("model-select");
  select.innerHTML = "";
  for (const [group, items] of [["zoo", state.models.zoo], ["local runs", state.models.runs]]) {
    if (!items.length) continue;
    const og = document.createElement("optgroup");
    og.label = group;
    for (const m of items) {
      const o = document.createElement("option");
      o.value = m.source; o.textContent = m.label; o.title = m.description;
      if (state.model && state.model.source === m.source) o.selected = true;
      og.append(o);
    }
    select.append(og);
  }
  ui.images = state.images || [];
  ui.a = ui.b = null;
  ui.rows.clear(); ui.cols.clear(); ui.withSet.clear(); ui.withoutSet.clear();
  if (ui.model) {
    const paint = $("paint");
    paint.width = paint.height = ui.model.resolution;
    clearPaint();
  }
  renderImages();
}

$("model-load").onclick = async () => {
  clearError();
  const source = $("model-text").value.trim() || $("model-select").value;
  try { showState(await call("/api/model", { source }, `loading ${source}…`)); } catch (e) { /* shown */ }
};

// ---- images -----------------------------------------------------------------------------------
function addImage(img) {
  ui.images.push(img);
  if (ui.a === null) ui.a = img.id; else if (ui.b === null) ui.b = img.id;
}

function byId(id) { return ui.images.find((im) => im.id === id); }

function toggle(set, id) { if (set.has(id)) set.delete(id); else set.add(id); }

function renderImages() {
  const list = $("images");
  list.innerHTML = "";
  for (const im of ui.images) {
    const div = document.createElement("div");
    div.className = "thumb" + (im.id === ui.a ? " is-a" : "") + (im.id === ui.b ? " is-b" : "");
    div.dataset.id = im.id;
    div.innerHTML = `<img alt=""><div class="name"></div>
      <button class="pick-a" title="structure">A</button><button class="pick-b" title="texture">B</button>
      <label title="grid row"><input type="checkbox" class="grid-row">r</label>
      <label title="grid column"><input type="checkbox" class="grid-col">c</label>
      <button class="attr-with" title="has the attribute">w</button><button class="attr-without" title="lacks the attribute">w/o</button>`;
    div.querySelector("img").src = im.src;
    div.querySelector(".name").textContent = im.label;
    div.querySelector(".name").title = im.label;
    div.querySelector(".pick-a").onclick = () => { ui.a = im.id; changed(); };
    div.querySelector(".pick-b").onclick = () => { ui.b = im.id; changed(); };
    const row = div.querySelector(".grid-row"), col = div.querySelector(".grid-col");
    row.checked = ui.rows.has(im.id); col.checked = ui.cols.has(im.id);
    row.onchange = () => toggle(ui.rows, im.id);
    col.onchange = () => toggle(ui.cols, im.id);
    const w = div.querySelector(".attr-with"), wo = div.querySelector(".attr-without");
    w.style.fontWeight = ui.withSet.has(im.id) ? "bold" : ""; wo.style.fontWeight = ui.withoutSet.has(im.id) ? "bold" : "";
    w.onclick = () => { toggle(ui.withSet, im.id); ui.withoutSet.delete(im.id); renderImages(); requestGlobal(); };
    wo.onclick = () => { toggle(ui.withoutSet, im.id); ui.withSet.delete(im.id); renderImages(); requestGlobal(); };
    list.append(div);
  }
  $("attr-sets").textContent = `(${ui.withSet.size} with, ${ui.withoutSet.size} without)`;
  $("a-img").src = ui.a ? byId(ui.a).src : "";
  $("b-img").src = ui.b ? byId(ui.b).src : "";
  $("paint-under").src = ui.a ? byId(ui.a).src : "";
}

function changed() {
  renderImages();
  requestSwap();
  if (ui.painted) requestRegion();
  requestGlobal();
}

$("upload").onchange = async (event) => {
  clearError();
  let added = false;
  for (const file of event.target.files) {
    const limit = ui.limits ? ui.limits.upload_bytes : Infinity;
    if (file.size > limit) {  // refused here too: a server that answers before reading a large body can look like a reset
      showError(`'${file.name}' is ${(file.size / 2 ** 20).toFixed(1)} MiB, over the limit of ${limit / 2 ** 20} MiB; upload a smaller image`);
      continue;
    }
    try {
      const reply = await fetch("/api/upload", { method: "POST", headers: { "X-Filename": encodeURIComponent(file.name) }, body: file });
      let data;
      try { data = await reply.json(); } catch (e) { data = { error: `the server answered ${reply.status}` }; }
      if (!reply.ok || data.error) { showError(data.error || `upload failed (${reply.status})`); continue; }
      addImage(data.image);
      added = true;
    } catch (e) {
      showError(`uploading '${file.name}' failed (${e.message}); is \`swapbench ui\` still running?`);
    }
  }
  event.target.value = "";
  if (added) changed();
};

$("gallery").onclick = async () => {
  clearError();
  try {
    const data = await call("/api/gallery", undefined, "reading the dataset's test images…");
    for (const im of data.images) if (!byId(im.id)) addImage(im);
    changed();
  } catch (e) { /* shown */ }
};

// ---- swap and its scores ----------------------------------------------------------------------
const requestSwap = coalesced(async () => {
  if (!ui.a || !ui.b) return;
  const alpha = parseFloat($("alpha").value);
  const data = await call("/api/swap", { a: ui.a, b: ui.b, alpha }, "swapping…");
  $("swap-result").src = data.image;
  downloads("swap-downloads", "swapbench-swap", data.image, data.record);
  requestScores();
});

const SCORE_NAMES = {
  structure_code: "structure code to A (0 = A's, 1 = as far as B)",
  texture_code: "texture code to B (0 = B's, 1 = as far as A)",
  structure_dist_A: "structure distance to A (self-similarity)",
  structure_dist_B: "structure distance to B",
  texture_dist_B: "texture distance to B (Gram)",
  texture_dist_A: "texture distance to A",
};
const requestScores = coalesced(async () => {
  const data = await call("/api/scores", { a: ui.a, b: ui.b, alpha: parseFloat($("alpha").value) }, "scoring…");
  const table = $("scores");
  table.innerHTML = "";
  for (const [k, v] of Object.entries(data.scores)) {
    const tr = document.createElement("tr");
    tr.dataset.score = k;
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = SCORE_NAMES[k] || k;
    tr.children[1].textContent = typeof v === "number" ? v.toFixed(3) : v;
    table.append(tr);
  }
});

$("alpha").oninput = () => { $("alpha-value").textContent = $("alpha").value; requestSwap(); };

// ---- region -----------------------------------------------------------------------------------
const paint = $("paint");
const pctx = paint.getContext("2d");
let drawing = false, boxStart = null, beforeBox = null;

function clearPaint() {
  pctx.clearRect(0, 0, paint.width, paint.height);
  ui.painted = false;
  $("region-result").src = ""; $("region-mask").src = ""; $("region-change").textContent = "";
}

function at(event) {
  const r = paint.getBoundingClientRect();
  return [(event.clientX - r.left) * paint.width / r.width, (event.clientY - r.top) * paint.height / r.height];
}

let last = null;
function dab(x, y) {  // a round brush: a stroke from the previous point, so fast moves leave no gaps
  pctx.strokeStyle = pctx.fillStyle = "#fff";
  pctx.lineWidth = parseFloat($("brush").value);
  pctx.lineCap = pctx.lineJoin = "round";
  pctx.beginPath();
  if (last) { pctx.moveTo(last[0], last[1]); pctx.lineTo(x, y); pctx.stroke(); }
  else { pctx.arc(x, y, pctx.lineWidth / 2, 0, 2 * Math.PI); pctx.fill(); }
  last = [x, y];
}

paint.addEventListener("pointerdown", (event) => {
  if (!ui.model) return;
  drawing = true;
  paint.setPointerCapture(event.pointerId);
  const [x, y] = at(event);
  last = null;
  if ($("tool").value === "box") { boxStart = [x, y]; beforeBox = pctx.getImageData(0, 0, paint.width, paint.height); }
  else dab(x, y);
  ui.painted = true;
  requestRegion();
});
paint.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = at(event);
  if (boxStart) {
    pctx.putImageData(beforeBox, 0, 0);
    pctx.fillStyle = "#fff";
    pctx.fillRect(Math.min(boxStart[0], x), Math.min(boxStart[1], y), Math.abs(x - boxStart[0]), Math.abs(y - boxStart[1]));
  } else dab(x, y);
  requestRegion();
});
const stop = () => { if (drawing) { drawing = false; boxStart = null; last = null; requestRegion(); } };
paint.addEventListener("pointerup", stop);
paint.addEventListener("pointercancel", stop);
$("clear").onclick = clearPaint;
$("part").onchange = () => { if (ui.painted) requestRegion(); };

const requestRegion = coalesced(async () => {
  if (!ui.a || !ui.b || !ui.painted) return;
  const data = await call("/api/region", { a: ui.a, b: ui.b, mask: paint.toDataURL("image/png"), part: $("part").value },
    "editing the region…");
  $("region-result").src = data.image;
  $("region-mask").src = data.mask;
  $("region-result").dataset.reconstruction = data.reconstruction;
  $("region-change").textContent = `mean change inside ${data.record.mean_change_inside.toFixed(3)}, outside ${data.record.mean_change_outside.toFixed(3)}`;
  downloads("region-downloads", "swapbench-region", data.image, data.record);
});

// ---- global edits -----------------------------------------------------------------------------
const PCA_SLIDERS = 3;
for (let k = 0; k < PCA_SLIDERS; k++) {
  const label = document.createElement("label");
  label.className = "slider";
  label.innerHTML = `PCA ${k} <input type="range" class="pca" min="-3" max="3" step="0.25" value="0"> <span>0</span> std`;
  const input = label.querySelector("input");
  input.oninput = () => { label.querySelector("span").textContent = input.value; requestGlobal(); };
  $("pca-sliders").append(label);
}
$("attribute").oninput = () => { $("attribute-value").textContent = $("attribute").value; requestGlobal(); };

const requestGlobal = coalesced(async () => {
  if (!ui.a) return;
  const pca = [...document.querySelectorAll("input.pca")].map((i) => parseFloat(i.value));
  let attribute = parseFloat($("attribute").value);
  if (!ui.withSet.size || !ui.withoutSet.size) attribute = 0;
  const data = await call("/api/global", { a: ui.a, pca, attribute, with_ids: [...ui.withSet], without_ids: [...ui.withoutSet] },
    pca.some((v) => v !== 0) ? "editing (the first PCA edit fits the directions to training crops)…" : "editing…");
  $("global-result").src = data.image;
  downloads("global-downloads", "swapbench-global", data.image, data.record);
});

// ---- grid -------------------------------------------------------------------------------------
$("make-grid").onclick = async () => {
  clearError();
  try {
    const data = await call("/api/grid", { a: [...ui.rows], b: [...ui.cols] }, "making the grid…");
    $("grid-result").src = data.image;
    downloads("grid-downloads", "swapbench-grid", data.image, data.record);
  } catch (e) { /* shown */ }
};

// ---- start ------------------------------------------------------------------------------------
(async () => {
  try {
    const reply = await fetch("/api/state");
    const state = await reply.json();
    if (state.error) showError(state.error); else showState(state);
    ui.ready = true;
  } catch (e) { showError("the server cannot be reached; is `swapbench ui` still running?"); }
})();
