// The dictionary page: text -> the nearest signs; a sign (.pose or video) -> the nearest signs and glosses.
// Talks only to this server's own API (/info, /v1/indexes, /v1/search, /v1/poses, /v1/skeleton); nothing external.
"use strict";

import { parsePose, PosePlayer, play } from "./pose.js";

const $ = (id) => document.getElementById(id);
let skeleton = {};

function headers() {
  const token = sessionStorage.getItem("signclip-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// The API's error shape: {"error": {"message", "code", ...}}; shown to the person, never swallowed.
async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  } catch (e) {
    throw new Error(`the server cannot be reached (${e.message})`);
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body.error && body.error.message) message = `${body.error.message} (${response.status})`;
  } catch (_) { /* not JSON: keep the status line */ }
  throw new Error(message);
}

function showError(where, error) {
  const box = $(where);
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function status(where, text) { $(where).textContent = text; }

// The server's limit on results (GET /info's max_k) bounds the "top" box and its default.
async function loadLimits() {
  const maxK = (await (await call("info")).json()).limits.max_k;
  const k = $("k");
  k.max = String(maxK);
  k.value = String(Math.min(Number(k.value) || maxK, maxK));
}

async function loadIndexes() {
  const select = $("index");
  try {
    await loadLimits();
    const reply = await (await call("v1/indexes")).json();
    select.replaceChildren(...reply.data.map((ix) => {
      const option = document.createElement("option");
      option.value = ix.name;
      option.textContent = `${ix.name} (${ix.clips} clips)`;
      return option;
    }));
    if (!reply.data.length) showError("search-error", new Error("this server serves no index (signclip serve --index NAME=DIR)"));
    skeleton = (await (await call("v1/skeleton")).json()).limbs;
  } catch (e) {
    showError("search-error", e);
  }
}

function card(hit, index) {
  const item = document.createElement("figure");
  item.className = "hit";
  item.dataset.id = hit.id;
  const canvas = document.createElement("canvas");
  canvas.width = 220;
  canvas.height = 220;
  const caption = document.createElement("figcaption");
  const label = hit.gloss || hit.text || hit.id;
  caption.innerHTML = "";
  const title = document.createElement("strong");
  title.textContent = `${hit.rank}. ${label}`;
  const meta = document.createElement("span");
  meta.textContent = `${hit.language || "?"} · score ${hit.score.toFixed(3)}`;
  caption.append(title, document.createElement("br"), meta);
  item.append(canvas, caption);
  drawClip(canvas, index, hit.id).catch((e) => {
    canvas.replaceWith(Object.assign(document.createElement("p"), { className: "error", textContent: e.message }));
  });
  return item;
}

async function drawClip(canvas, index, id) {
  const path = id.split("/").map(encodeURIComponent).join("/");
  const buffer = await (await call(`v1/poses/${encodeURIComponent(index)}/${path}`)).arrayBuffer();
  const player = new PosePlayer(canvas, parsePose(buffer), skeleton);
  play(player);
  canvas.dataset.drawn = "1";
}

function showHits(target, hits, index) {
  $(target).replaceChildren(...hits.map((h) => card(h, index)));
}

async function searchText(event) {
  event.preventDefault();
  showError("search-error", null);
  const q = $("query").value.trim();
  const index = $("index").value;
  if (!q) { showError("search-error", new Error("type a word or a phrase to look up")); return; }
  status("search-status", "searching…");
  try {
    const params = new URLSearchParams({ q, k: $("k").value, index });
    const reply = await (await call(`v1/search?${params}`)).json();
    status("search-status", `${reply.hits.length} signs for “${reply.query}” in ${reply.index}`);
    showHits("results", reply.hits, reply.index);
  } catch (e) {
    status("search-status", "");
    showError("search-error", e);
  }
}

async function searchSign(event) {
  event.preventDefault();
  showError("sign-error", null);
  const file = $("sign-file").files[0];
  if (!file) { showError("sign-error", new Error("choose a .pose file or a video first")); return; }
  status("sign-status", `recognising ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("k", $("k").value);
  form.append("index", $("index").value);
  try {
    const reply = await (await call("v1/search", { method: "POST", body: form })).json();
    status("sign-status", `${file.name}: nearest signs and best glosses in ${reply.index}`);
    $("glosses").replaceChildren(...reply.glosses.map((g) => {
      const li = document.createElement("li");
      li.textContent = `${g.label} (${g.language || "?"}) · ${g.score.toFixed(3)}`;
      return li;
    }));
    showHits("sign-results", reply.hits, reply.index);
  } catch (e) {
    status("sign-status", "");
    showError("sign-error", e);
  }
}

function saveToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("signclip-token", token); else sessionStorage.removeItem("signclip-token");
  loadIndexes();
}

$("search-form").addEventListener("submit", searchText);
$("sign-form").addEventListener("submit", searchSign);
$("token-form").addEventListener("submit", saveToken);
loadIndexes();
