// The page of `lxmert serve`: pick an image, ask, draw the answers and the attended boxes.
// Plain DOM and fetch, no libraries (the page must work offline); server text is only
// ever put into the page as text, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = { model: null, images: new Map(), uploadUrl: null };

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : `${url}: HTTP ${response.status}`);
  }
  return body;
}

// A grey picture of the image's size, for store images without one: the boxes still fit.
function blankPicture(width, height) {
  const svg = `<svg xmlns="${SVG_NS}" width="${width}" height="${height}">` +
    `<rect width="100%" height="100%" fill="#d9dde3"/></svg>`;
  return "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
}

function clearResults() {
  $("answers").replaceChildren();
  $("boxes").replaceChildren();
}

function showStoreImage() {
  const id = $("image-select").value;
  const entry = state.images.get(id);
  clearResults();
  if (!entry) return;
  const picture = $("picture");
  picture.src = entry.picture ? `/api/images/${encodeURIComponent(id)}/picture` : blankPicture(entry.width, entry.height);
  picture.alt = `image ${id}`;
}

function showUpload() {
  const file = $("image-file").files[0];
  clearResults();
  if (!file) return;
  if (state.uploadUrl) URL.revokeObjectURL(state.uploadUrl);
  state.uploadUrl = URL.createObjectURL(file);
  const picture = $("picture");
  picture.src = state.uploadUrl;
  picture.alt = `uploaded picture ${file.name}`;
}

function source() {
  return document.querySelector('input[name="source"]:checked').value;
}

function drawBoxes(result) {
  const svg = $("boxes");
  const [height, width] = result.image_size;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const weights = result.attention;
  const strongest = Math.max(...weights, 1e-9);
  const order = weights.map((w, i) => i).sort((a, b) => weights[a] - weights[b]); // strongest drawn last, on top
  const line = Math.max(width, height) / 320;
  const ranked = [...order].reverse();
  for (const i of order) {
    const [x1, y1, x2, y2] = result.boxes[i];
    const share = weights[i] / strongest;
    const rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("class", "box");
    rect.setAttribute("x", x1);
    rect.setAttribute("y", y1);
    rect.setAttribute("width", Math.max(x2 - x1, 0));
    rect.setAttribute("height", Math.max(y2 - y1, 0));
    // squared: a box with half the top attention is shaded a quarter as much, so the few
    // boxes the model reads stand out from the many it barely looks at
    rect.setAttribute("fill-opacity", (0.45 * share * share).toFixed(3));
    rect.setAttribute("stroke-opacity", (0.1 + 0.9 * share * share).toFixed(3));
    rect.setAttribute("stroke-width", (line * (0.5 + 1.5 * share)).toFixed(2));
    rect.dataset.attention = weights[i].toFixed(4);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `box ${i}: ${(100 * weights[i]).toFixed(1)}% of the attention`;
    rect.appendChild(title);
    svg.appendChild(rect);
  }
  const placed = [];
  for (const i of ranked.slice(0, 3)) { // label the three most attended boxes, never on top of each other
    const [x1, y1] = result.boxes[i];
    const x = x1 + 3 * line;
    let y = y1 + 12 * line;
    while (placed.some(([px, py]) => Math.abs(px - x) < 30 * line && Math.abs(py - y) < 12 * line)) {
      y += 12 * line;
    }
    placed.push([x, y]);
    const label = document.createElementNS(SVG_NS, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", y);
    label.setAttribute("font-size", 11 * line);
    label.setAttribute("stroke-width", 2 * line);
    label.textContent = `${(100 * weights[i]).toFixed(0)}%`;
    svg.appendChild(label);
  }
}

function showAnswers(result) {
  const list = $("answers");
  list.replaceChildren();
  for (const { answer, score } of result.answers) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "answer";
    name.textContent = answer;
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(3);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * score).toFixed(1)}%`;
    bar.appendChild(fill);
    item.append(name, value, bar);
    list.appendChild(item);
  }
  const t = result.timing_ms;
  const detector = t.detector > 0 ? `, detector ${t.detector.toFixed(0)} ms` : "";
  setStatus(`Answered in ${t.total.toFixed(0)} ms (model ${t.model.toFixed(0)} ms in a batch of ` +
            `${result.batch_size}${detector}). Scores are sigmoids: several answers may score high.`);
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) {
    setStatus("Type a question first.", true);
    $("question").focus();
    return;
  }
  const topK = $("top-k").value || "5";
  let request;
  if (source() === "store") {
    const imageId = $("image-select").value;
    if (!imageId) {
      setStatus("This server has no feature store images: upload a picture.", true);
      return;
    }
    request = { method: "POST", headers: { "Content-Type": "application/json" },
                body: JSON.stringify({ image_id: imageId, question, top_k: Number(topK) }) };
  } else {
    const file = $("image-file").files[0];
    if (!file) {
      setStatus("Choose a picture file first.", true);
      $("image-file").focus();
      return;
    }
    const form = new FormData();
    form.append("image", file);
    form.append("question", question);
    form.append("top_k", topK);
    request = { method: "POST", body: form };
  }
  const button = $("ask-button");
  button.disabled = true;
  setStatus("Asking…");
  try {
    const response = await fetch("/api/vqa", request);
    const result = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(result.error ? result.error.message : `HTTP ${response.status}`);
    }
    showAnswers(result);
    drawBoxes(result);
  } catch (error) {
    clearResults();
    setStatus(`Could not answer: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

function describeModel(info) {
  const parts = [`${info.model.class}, ${info.model.num_answers} answers`];
  if (info.features) parts.push(`${info.features.images} images in the feature store`);
  parts.push(info.detector ? (info.detector.random_init ? "detector with RANDOM weights (uploads mean nothing)"
                                                        : "detector for uploads") : "no detector");
  $("model-info").textContent = parts.join(" · ");
  $("question").maxLength = info.limits.max_question_chars;
  $("top-k").max = Math.min(20, info.limits.max_top_k);
  if (!info.detector) {
    $("source-upload").disabled = true;
    $("image-file").disabled = true;
    const note = $("upload-note");
    note.hidden = false;
    note.textContent = "Uploads need a detector (lxmert serve --detector WEIGHTS).";
  }
  if (!info.features) {
    $("source-store").disabled = true;
    $("image-select").disabled = true;
    $("source-upload").checked = true;
  }
}

async function start() {
  $("ask-form").addEventListener("submit", ask);
  $("image-select").addEventListener("change", () => { $("source-store").checked = true; showStoreImage(); });
  $("image-file").addEventListener("change", () => { $("source-upload").checked = true; showUpload(); });
  $("source-store").addEventListener("change", showStoreImage);
  $("source-upload").addEventListener("change", showUpload);
  try {
    state.model = await getJSON("/api/model");
    describeModel(state.model);
    if (state.model.features) {
      const listing = await getJSON("/api/images");
      const select = $("image-select");
      for (const entry of listing.images) {
        state.images.set(entry.id, entry);
        const option = document.createElement("option");
        option.value = entry.id;
        option.textContent = `${entry.id} (${entry.width}×${entry.height})`;
        select.appendChild(option);
      }
      showStoreImage();
    }
    document.body.dataset.ready = "true";
  } catch (error) {
    setStatus(`The server did not describe its model: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
