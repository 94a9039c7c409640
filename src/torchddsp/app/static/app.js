// torchddsp studio: the page's behaviour. Plain JavaScript, no dependencies, no network
// beyond the app's own server (its Content-Security-Policy forbids anything else).
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MB = 2 ** 20;

// Labels and steps of the controls; their ranges and defaults come from the server (the
// library's own definitions), so the page and the command line never disagree.
const CONTROLS = {
  transfer: [
    { key: "auto_adjust", label: "Auto-adjust register and loudness to the model" },
    { key: "octave_shift", label: "Octave shift", step: 1 },
    { key: "pitch_shift", label: "Semitone shift", step: 0.5, unit: "st" },
    { key: "loudness_shift", label: "Loudness shift", step: 1, unit: "dB" },
    { key: "autotune", label: "Autotune", step: 0.05 },
    { key: "autotune_mode", label: "Autotune scale" },
    { key: "quiet", label: "Quiet outside notes", step: 1, unit: "dB" },
    { key: "note_threshold", label: "Note threshold", step: 0.05 },
  ],
  play: [
    { key: "glide_s", label: "Glide (legato)", step: 0.01, unit: "s" },
    { key: "attack_s", label: "Attack", step: 0.01, unit: "s" },
    { key: "release_s", label: "Release", step: 0.05, unit: "s" },
    { key: "vibrato_cents", label: "Vibrato depth", step: 1, unit: "cents" },
    { key: "vibrato_hz", label: "Vibrato rate", step: 0.1, unit: "Hz" },
    { key: "vibrato_delay_s", label: "Vibrato delay", step: 0.05, unit: "s" },
  ],
  voice: [
    { key: "pitch_shift", label: "Pitch shift", step: 0.5, unit: "st", value: 0, optional: true },
    { key: "gender", label: "Gender (0 male, 1 female)", step: 0.05, value: 0.5, optional: true },
    { key: "age", label: "Age (years / 100)", step: 0.01, value: 0.3, optional: true },
  ],
};

const state = { options: null, models: [], inputs: {}, midi: null, recordings: [] };

// ---- talking to the server -------------------------------------------------------------------
async function api(path, { method = "GET", json, body } = {}) {
  const init = { method, headers: {} };
  if (method !== "GET") init.headers["X-Torchddsp"] = "1";
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Error("The server cannot be reached: is torchddsp app still running?");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
  return data;
}

function uploadFile(file, kind) {
  const limit = state.options.upload_bytes[kind];
  if (file.size > limit) {
    const size = (file.size / MB).toFixed(1);
    throw new Error(`${file.name} is ${size} MB, more than the ${limit / MB} MB this app accepts`);
  }
  const query = `kind=${kind}&name=${encodeURIComponent(file.name)}`;
  return api(`/api/uploads?${query}`, { method: "POST", body: file });
}

// A job runs on the server; the page asks how it is doing until it is done.
async function runJob(path, payload, page) {
  let job = await api(path, { method: "POST", json: payload });
  while (job.status === "queued" || job.status === "running") {
    setStatus(page, job.status === "queued" ? "Waiting for a free worker..." : "Working...");
    await sleep(300);
    job = await api(`/api/jobs/${job.id}`);
  }
  if (job.status === "failed") throw new Error(job.message);
  return job;
}

// ---- messages ---------------------------------------------------------------------------------
function showError(page, error) {
  $(`${page}-error`).textContent = error ? error.message : "";
}

function setStatus(page, text) {
  $(`${page}-status`).textContent = text;
}

async function guarded(page, button, action) {
  showError(page, null);
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(page, error);
    setStatus(page, "");
  } finally {
    button.disabled = false;
  }
}

// ---- tabs -------------------------------------------------------------------------------------
function showTab() {
  const name = (location.hash || "#transfer").slice(1);
  const known = $(name) && $(name).getAttribute("role") === "tabpanel" ? name : "transfer";
  for (const panel of document.querySelectorAll("[role=tabpanel]")) panel.hidden = panel.id !== known;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.hash === `#${known}`));
  }
}

// ---- controls built from the server's limits and defaults -------------------------------------
function buildControls(page, defaults, limits, extra = {}) {
  const box = $(`${page}-controls`);
  for (const spec of CONTROLS[page]) {
    const value = spec.value ?? defaults[spec.key];
    const id = `${page}-${spec.key}`;
    const row = document.createElement("div");
    row.className = "control";
    if (typeof value === "boolean") {
      row.innerHTML = `<label><input type="checkbox" id="${id}"> ${spec.label}</label>`;
      row.querySelector("input").checked = value;
    } else if (typeof value === "string") {
      row.innerHTML = `<label for="${id}">${spec.label}</label><select id="${id}"></select>`;
      for (const choice of extra[spec.key]) row.querySelector("select").add(new Option(choice, choice));
      row.querySelector("select").value = value;
    } else {
      const [low, high] = limits[spec.key];
      const toggle = spec.optional
        ? `<input type="checkbox" id="${id}-on" title="tick to set it">`
        : "";
      row.innerHTML =
        `<label for="${id}">${toggle}${spec.label}</label>` +
        `<input type="range" id="${id}" min="${low}" max="${high}" step="${spec.step}">` +
        `<output for="${id}"></output>`;
      const range = row.querySelector("input[type=range]");
      const output = row.querySelector("output");
      const unit = spec.unit ? ` ${spec.unit}` : "";
      const show = () => (output.textContent = `${Number(range.value)}${unit}`);
      range.value = value;
      range.addEventListener("input", show);
      show();
      if (spec.optional) {
        const on = row.querySelector(`#${id}-on`);
        const sync = () => {
          range.disabled = !on.checked;
          output.classList.toggle("off", !on.checked);
        };
        on.addEventListener("change", sync);
        sync();
      }
    }
    box.append(row);
  }
}

function readControls(page) {
  const values = {};
  for (const spec of CONTROLS[page]) {
    const element = $(`${page}-${spec.key}`);
    if (element.type === "checkbox") values[spec.key] = element.checked;
    else if (element.tagName === "SELECT") values[spec.key] = element.value;
    else if (spec.optional && !$(`${page}-${spec.key}-on`).checked) values[spec.key] = null;
    else values[spec.key] = Number(element.value);
  }
  return values;
}

// ---- models -----------------------------------------------------------------------------------
async function refreshModels() {
  const listed = await api("/api/models");
  state.models = listed.models;
  fillModels("transfer-model", "instrument", "violin");
  fillModels("play-model", "instrument", "violin");
  fillModels("voice-model", "voice", "voice");
  const voices = state.models.filter((m) => m.kind === "voice");
  $("voice-missing").hidden = voices.length > 0;
  $("voice-run").disabled = voices.length === 0;
  $("voice-models-dir").textContent = listed.user_models_dir;
  $("models-hint").textContent =
    `Bundled models, and your own in ${listed.user_models_dir}. ` +
    "Export one for nn~ (Pure Data, Max) or for the Neutone plugin.";
  renderModelTable();
}

function fillModels(id, kind, preferred) {
  const select = $(id);
  const previous = select.value;
  select.replaceChildren();
  for (const model of state.models.filter((m) => m.kind === kind)) {
    select.add(new Option(`${model.name} (${model.origin})`, model.name));
  }
  const names = [...select.options].map((o) => o.value);
  if (!names.length) select.add(new Option(`no ${kind} model installed`, ""));
  select.value = names.includes(previous) ? previous : names.includes(preferred) ? preferred : names[0] ?? "";
}

function renderModelTable() {
  const rows = state.models.map((model) => {
    const row = document.createElement("tr");
    for (const text of [model.name, model.kind, model.origin, model.step]) {
      const cell = row.insertCell();
      cell.textContent = text;
    }
    const cell = row.insertCell();
    for (const format of state.options.export_formats) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "small";
      button.textContent = format === "nn" ? "nn~" : "Neutone";
      button.addEventListener("click", () => exportModel(model.name, format, button));
      cell.append(button);
    }
    return row;
  });
  $("models-table").replaceChildren(...rows);
}

async function exportModel(name, format, button) {
  $("models-download").hidden = true;
  await guarded("models", button, async () => {
    setStatus("models", `Exporting ${name}...`);
    const job = await runJob("/api/export", { model: name, format }, "models");
    const [file, url] = Object.entries(job.files)[0];
    showDownload("models", url, `Download ${file}`);
    setStatus("models", job.summary);
  });
}

function showDownload(page, url, label) {
  const link = $(`${page}-download`);
  link.href = `${url}?download=1`;
  link.textContent = label;
  link.hidden = false;
}

// ---- inputs: upload, record or the bundled example ---------------------------------------------
function setupPicker(page) {
  const picker = $(`${page}-picker`);
  const chosen = picker.querySelector(".chosen");
  const choose = (id, label, url) => {
    state.inputs[page] = id;
    chosen.textContent = label;
    $(`${page}-input-audio`).src = url;
  };
  picker.querySelector("input[type=file]").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    await takeAudio(page, file, choose, chosen);
  });
  picker.querySelector(".example").addEventListener("click", () => {
    const example = picker.dataset.example;
    showError(page, null);
    choose(example, picker.dataset.label, `/api/examples/${example}`);
  });
  const record = picker.querySelector(".record");
  record.addEventListener("click", () => toggleRecording(page, record, choose, chosen));
}

async function takeAudio(page, file, choose, chosen) {
  showError(page, null);
  chosen.textContent = `Uploading ${file.name}...`;
  try {
    const upload = await uploadFile(file, "audio");
    const seconds = upload.seconds.toFixed(1);
    choose(upload.id, `${upload.name}: ${seconds} s at ${upload.sample_rate} Hz.`, URL.createObjectURL(file));
  } catch (error) {
    state.inputs[page] = null;
    chosen.textContent = "No input yet.";
    showError(page, error);
  }
}

let recording = null;

async function toggleRecording(page, button, choose, chosen) {
  if (recording) {
    recording.recorder.stop();
    return;
  }
  showError(page, null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch {
    showError(page, new Error("The microphone is not available: allow it in the browser, or upload a file."));
    return;
  }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recording = { recorder };
  recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
  recorder.addEventListener("stop", async () => {
    stream.getTracks().forEach((track) => track.stop());
    recording = null;
    button.textContent = "\u25CF Record";
    try {
      // Browsers record WebM or Ogg; the server reads WAV everywhere, so the page converts.
      const wav = await toWav(new Blob(chunks, { type: recorder.mimeType }));
      await takeAudio(page, new File([wav], "recording.wav", { type: "audio/wav" }), choose, chosen);
    } catch {
      showError(page, new Error("The recording could not be decoded: try again, or upload a file."));
    }
  });
  recorder.start();
  button.textContent = "\u25A0 Stop recording";
}

async function toWav(blob) {
  const context = new AudioContext();
  try {
    return encodeWav(await context.decodeAudioData(await blob.arrayBuffer()));
  } finally {
    context.close();
  }
}

function encodeWav(buffer) {
  // Mono 16-bit PCM: the channels averaged, as the server would downmix them anyway.
  const n = buffer.length;
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  const rate = buffer.sampleRate;
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * n, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, 2 * n, true);
  const channels = [...Array(buffer.numberOfChannels).keys()].map((c) => buffer.getChannelData(c));
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const channel of channels) sum += channel[i];
    const sample = Math.max(-1, Math.min(1, sum / channels.length));
    view.setInt16(44 + 2 * i, Math.round(sample * 32767), true);
  }
  return view.buffer;
}

// ---- transfer, play, voice --------------------------------------------------------------------
function showResult(page, job, withPlot) {
  $(`${page}-output-audio`).src = job.files["output.wav"];
  showDownload(page, job.files["output.wav"], "Download WAV");
  if (withPlot) {
    $(`${page}-plot`).src = job.files["plot.png"];
    $(`${page}-plot`).hidden = false;
  }
  setStatus(page, job.summary);
}

function needInput(page, what) {
  if (!state.inputs[page]) throw new Error(`Choose ${what} first.`);
  return state.inputs[page];
}

function setupTransfer() {
  const button = $("transfer-run");
  button.addEventListener("click", () =>
    guarded("transfer", button, async () => {
      const input = needInput("transfer", "an input: upload a file, record, or use the example");
      const payload = { input, model: $("transfer-model").value, settings: readControls("transfer") };
      showResult("transfer", await runJob("/api/transfer", payload, "transfer"), true);
    }),
  );
}

function setupPlay() {
  $("play-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    showError("play", null);
    $("play-chosen").textContent = `Uploading ${file.name}...`;
    try {
      const upload = await uploadFile(file, "midi");
      state.inputs.play = upload.id;
      $("play-chosen").textContent = `${upload.name}: ${upload.notes} notes in ${upload.tracks} track(s).`;
    } catch (error) {
      state.inputs.play = null;
      $("play-chosen").textContent = "No MIDI file yet.";
      showError("play", error);
    }
  });
  const button = $("play-run");
  button.addEventListener("click", () =>
    guarded("play", button, async () => {
      const midi = needInput("play", "a MIDI file");
      const part = (id) => ($(id).value === "" ? null : Number($(id).value));
      const payload = {
        midi,
        model: $("play-model").value,
        settings: readControls("play"),
        track: part("play-track"),
        channel: part("play-channel"),
      };
      showResult("play", await runJob("/api/play", payload, "play"), true);
    }),
  );
}

function setupVoice() {
  const button = $("voice-run");
  button.addEventListener("click", () =>
    guarded("voice", button, async () => {
      const input = needInput("voice", "an input: upload a file, record, or use the example");
      const payload = { input, model: $("voice-model").value, ...readControls("voice") };
      showResult("voice", await runJob("/api/convert", payload, "voice"), false);
    }),
  );
}

// ---- training ---------------------------------------------------------------------------------
function setupTraining() {
  const train = state.options.train;
  $("train-steps").value = train.steps;
  $("train-minutes").value = train.max_minutes;
  $("train-recipe").textContent =
    `The ${train.recipe} recipe: ${train.steps} steps, at most ${train.max_minutes} minutes a run ` +
    "on a laptop CPU. Stop and resume at any time; the finished model joins the model list.";
  $("train-files").addEventListener("change", async (event) => {
    const files = [...event.target.files];
    showError("train", null);
    for (const [index, file] of files.entries()) {
      $("train-chosen").textContent = `Uploading ${index + 1} of ${files.length}: ${file.name}...`;
      try {
        state.recordings.push(await uploadFile(file, "recording"));
      } catch (error) {
        showError("train", error);
      }
    }
    const seconds = state.recordings.reduce((sum, r) => sum + r.seconds, 0);
    $("train-chosen").textContent = state.recordings.length
      ? `${state.recordings.length} recording(s), ${(seconds / 60).toFixed(1)} minutes.`
      : "No recordings yet.";
  });
  const button = $("train-start");
  button.addEventListener("click", () =>
    guarded("train", button, async () => {
      const folder = $("train-folder").value.trim();
      const payload = {
        name: $("train-name").value.trim(),
        steps: Number($("train-steps").value),
        max_minutes: Number($("train-minutes").value),
      };
      if (folder) payload.folder = folder;
      else payload.uploads = state.recordings.map((r) => r.id);
      await api("/api/trainings", { method: "POST", json: payload });
      state.recordings = [];
      $("train-chosen").textContent = "No recordings yet.";
      $("train-name").value = $("train-folder").value = "";
      await refreshTrainings();
    }),
  );
}

const PHASES = {
  preparing: "Preparing the recordings",
  training: "Training",
  publishing: "Saving the model",
  finished: "Finished",
  stopped: "Stopped",
  failed: "Failed",
};
const trainingCards = new Map();
let lastPhases = {};

async function refreshTrainings() {
  const { trainings } = await api("/api/trainings");
  $("trainings-empty").hidden = trainings.length > 0;
  const phases = {};
  for (const training of trainings) {
    if (!trainingCards.has(training.name)) trainingCards.set(training.name, makeTrainingCard(training.name));
    updateTrainingCard(trainingCards.get(training.name), training);
    phases[training.name] = training.phase;
  }
  const finishedNow = trainings.some((t) => t.phase === "finished" && lastPhases[t.name] !== "finished");
  lastPhases = phases;
  if (finishedNow) await refreshModels();
}

function makeTrainingCard(name) {
  const card = document.createElement("div");
  card.className = "training";
  card.dataset.name = name;
  card.innerHTML = `
    <div class="training-head"><h3></h3><span class="phase"></span></div>
    <progress max="1" value="0"></progress>
    <p class="numbers"></p>
    <p class="error" role="alert"></p>
    <canvas width="520" height="150" aria-label="training loss by step"></canvas>
    <div class="previews" hidden>
      <figure><figcaption>Target</figcaption><audio controls class="target"></audio></figure>
      <figure><figcaption>Model</figcaption><audio controls class="resynthesis"></audio></figure>
    </div>
    <div class="actions">
      <button type="button" class="stop">Stop</button>
      <button type="button" class="resume">Resume</button>
    </div>
    <details><summary>Resume from a terminal</summary><code class="command"></code></details>`;
  card.querySelector("h3").textContent = name;
  const act = (action) => async (event) => {
    card.querySelector(".error").textContent = "";
    try {
      await api(`/api/trainings/${encodeURIComponent(name)}/${action}`, { method: "POST" });
      await refreshTrainings();
    } catch (error) {
      card.querySelector(".error").textContent = error.message;
    }
    event.target.blur();
  };
  card.querySelector(".stop").addEventListener("click", act("stop"));
  card.querySelector(".resume").addEventListener("click", act("resume"));
  $("trainings").prepend(card);
  return card;
}

function updateTrainingCard(card, training) {
  card.dataset.phase = training.phase;
  card.querySelector(".phase").textContent = PHASES[training.phase] ?? training.phase;
  card.querySelector("progress").value = training.step / training.steps;
  const eta = training.eta_seconds == null ? "" : `, about ${formatDuration(training.eta_seconds)} left`;
  const loss = training.losses.length ? `, loss ${training.losses.at(-1)[1].toFixed(3)}` : "";
  card.querySelector(".numbers").textContent = `Step ${training.step} of ${training.steps}${loss}${eta}`;
  card.querySelector(".error").textContent = training.message;
  card.querySelector(".stop").hidden = !training.running;
  card.querySelector(".resume").hidden = training.running || training.phase === "finished";
  card.querySelector(".command").textContent = training.resume_command;
  drawLosses(card.querySelector("canvas"), training.losses);
  const latest = training.previews.at(-1);
  if (latest !== undefined && card.dataset.preview !== String(latest)) {
    card.dataset.preview = String(latest);
    const base = `/api/trainings/${encodeURIComponent(training.name)}/previews/${latest}`;
    card.querySelector("audio.target").src = `${base}/target`;
    card.querySelector("audio.resynthesis").src = `${base}/resynthesis`;
    card.querySelector(".previews").hidden = false;
    card.querySelectorAll(".previews figcaption")[1].textContent = `Model at step ${latest}`;
  }
}

function formatDuration(seconds) {
  const minutes = Math.floor(seconds / 60);
  return minutes ? `${minutes} min ${Math.round(seconds % 60)} s` : `${Math.round(seconds)} s`;
}

function drawLosses(canvas, losses) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 48, right: 10, top: 10, bottom: 22 };
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  if (losses.length < 2) {
    g.fillText("The loss curve appears after the first logged steps.", pad.left, height / 2);
    return;
  }
  const steps = losses.map(([step]) => step);
  const logs = losses.map(([, loss]) => Math.log10(Math.max(loss, 1e-9)));
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...logs), Math.max(...logs) + 1e-6];
  const x = (step) => pad.left + ((step - x0) / (x1 - x0 || 1)) * (width - pad.left - pad.right);
  const y = (log) => height - pad.bottom - ((log - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  g.strokeStyle = "#d0d5dd";
  g.strokeRect(pad.left, pad.top, width - pad.left - pad.right, height - pad.top - pad.bottom);
  g.fillText(`${10 ** y1 < 10 ? (10 ** y1).toFixed(2) : (10 ** y1).toFixed(0)}`, 4, pad.top + 8);
  g.fillText(`${(10 ** y0).toFixed(2)}`, 4, height - pad.bottom);
  g.fillText("loss, log scale", (width - 70) / 2, height - 6);
  g.fillText(`step ${x0}`, pad.left, height - 6);
  g.fillText(`step ${x1}`, width - pad.right - 60, height - 6);
  g.strokeStyle = "#0e7c86";
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach(([step], i) => (i ? g.lineTo(x(step), y(logs[i])) : g.moveTo(x(step), y(logs[i]))));
  g.stroke();
}

// ---- start ------------------------------------------------------------------------------------
async function main() {
  showTab();
  window.addEventListener("hashchange", showTab);
  try {
    state.options = await api("/api/options");
    const { transfer, play, voice } = state.options;
    buildControls("transfer", transfer.defaults, transfer.limits, { autotune_mode: transfer.autotune_modes });
    buildControls("play", play.defaults, play.limits);
    buildControls("voice", {}, voice.limits);
    for (const page of ["transfer", "voice"]) setupPicker(page);
    setupTransfer();
    setupPlay();
    setupVoice();
    setupTraining();
    await refreshModels();
    await refreshTrainings();
  } catch (error) {
    showError("transfer", error);
    return;
  }
  document.body.dataset.ready = "true";
  setInterval(() => refreshTrainings().catch((error) => showError("train", error)), 1500);
}

main();
