"use strict";
// The page: upload, the owner's jobs with live state, the transcript with playback and editing.
// Everything comes from this origin; no inline script or style (the CSP forbids both).

const $ = (id) => document.getElementById(id);
const FORMATS = ["txt", "srt", "vtt", "json", "docx"];
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "DELETED"]);
// Browsers allow six connections per origin over HTTP/1.1: keep most of them for the API.
const MAX_LIVE_STREAMS = 3;
const REFRESH_MS = 5000;
const LANGUAGE_KEY = "kazru.ui-language";
const SPEAKER_COLOURS = 10;
// The languages a segment may be corrected to (the service's supported ones).
const SEGMENT_LANGUAGES = ["kk", "ru", "en"];
const SEEK_STEP_SECONDS = 5;
// Each new estimate of the time left moves the one shown this part of the way: no jumps.
const ETA_BLEND = 0.2;
const UNDO_MS = 15000;
// The list is read a page at a time (the API's page_token); "Show more" adds a page.
const JOBS_PAGE_SIZE = 50;
// A click on a turn's text waits this long before it plays: it may be the first click of a double-click,
// which edits the text and must not start playback.
const DOUBLE_CLICK_MS = 300;

// How the page names the engines (a job's `engine`, /api/v1/status's `engine.name`); the DOCX export has the
// same names (services/exporter/formats.py).
const ENGINE_TITLES = { whisper: "Whisper", gigaam: "GigaAM-Multilingual", speechkit: "Yandex SpeechKit" };

// The page's words in each language: static/locale-{en,ru,kk}.js, loaded before this file.
const TEXT = window.KAZRU_TEXT;

// API error codes → the message key that explains them to a person.
const ERROR_TEXT = {
  UPLOAD_TOO_LARGE: "err_UPLOAD_TOO_LARGE", RECORDING_TOO_LONG: "err_RECORDING_TOO_LONG", NOT_AUDIO: "err_NOT_AUDIO", UNSUPPORTED_MEDIA: "err_NOT_AUDIO",
  AUDIO_UNDECODABLE: "err_AUDIO_UNDECODABLE", NO_AUDIO_TRACK: "err_NO_AUDIO_TRACK",
  AUDIO_CODEC_UNSUPPORTED: "err_AUDIO_CODEC_UNSUPPORTED", EMPTY_FILE: "err_EMPTY", AUDIO_EMPTY: "err_EMPTY",
  RATE_LIMITED: "err_RATE_LIMITED", JOB_NOT_FOUND: "err_JOB_NOT_FOUND", JOB_EXPIRED: "err_JOB_EXPIRED",
  JOB_DELETED: "err_JOB_DELETED", AUDIO_DELETED: "err_JOB_DELETED", TRANSCRIPT_NOT_READY: "err_TRANSCRIPT_NOT_READY",
  STORAGE_UNAVAILABLE: "err_UNAVAILABLE", DATABASE_UNAVAILABLE: "err_UNAVAILABLE", BUS_UNAVAILABLE: "err_UNAVAILABLE",
  SERVICE_UNAVAILABLE: "err_UNAVAILABLE", UNAVAILABLE: "err_UNAVAILABLE", INTERNAL: "err_INTERNAL",
  API_KEY_REQUIRED: "err_AUTH", INVALID_API_KEY: "err_AUTH", INVALID_AUTHORIZATION: "err_AUTH",
  SPEAKER_NAME_EMPTY: "err_SPEAKER_NAME_EMPTY", SPEAKER_NAME_TOO_LONG: "err_SPEAKER_NAME_TOO_LONG",
  SPEAKER_NAME_INVALID: "err_SPEAKER_NAME_INVALID", SEGMENT_TEXT_TOO_LONG: "err_SEGMENT_TEXT_TOO_LONG",
  SEGMENT_TEXT_INVALID: "err_SEGMENT_TEXT_INVALID", LANGUAGE_NOT_SUPPORTED: "err_LANGUAGE_NOT_SUPPORTED",
  INVALID_LANGUAGE: "err_LANGUAGE_NOT_SUPPORTED", NO_LANGUAGE: "err_LANGUAGE_NOT_SUPPORTED",
  UPLOAD_INTERRUPTED: "err_UPLOAD_INTERRUPTED", WORKER_LOST: "err_WORKER_LOST", NETWORK: "err_NETWORK",
  CSRF_TOKEN_MISSING: "err_FORBIDDEN", CSRF_TOKEN_INVALID: "err_FORBIDDEN", CSRF_ORIGIN_REFUSED: "err_FORBIDDEN",
};
// When a code is not one of the above, the HTTP status still says enough.
const STATUS_TEXT = {
  401: "err_AUTH", 403: "err_FORBIDDEN", 404: "err_JOB_NOT_FOUND", 413: "err_UPLOAD_TOO_LARGE", 415: "err_NOT_AUDIO",
  429: "err_RATE_LIMITED", 500: "err_INTERNAL", 502: "err_UNAVAILABLE", 503: "err_UNAVAILABLE", 504: "err_UNAVAILABLE",
};

let language = chooseLanguage();
const jobs = new Map(); // job_id → {job, element, samples: [[ms, progress]], stream}
const uploadedHere = new Set();
let shown = null; // {jobId, transcript, turns (elements), current turn, word being spoken, search}
let noticeTimer = 0;
const uploadQueue = []; // {file, languages, maxSpeakers, row}, sent one at a time
let uploading = false;
let jobPages = 1; // how many pages of the job list the page shows
let jobsRead = null; // the list read under way, if any
let configuredEngine = null; // {name, model} that new uploads run on (/api/v1/status), once read
let signedOut = false; // the service wants an API key and this browser has none (or one no longer valid)

function chooseLanguage() {
  const saved = localStorage.getItem(LANGUAGE_KEY);
  if (saved && TEXT[saved]) return saved;
  for (const wanted of navigator.languages || [navigator.language || "en"]) {
    const base = String(wanted).toLowerCase().split("-")[0];
    if (TEXT[base]) return base;
  }
  return "en";
}

function t(key, values = {}) {
  const template = TEXT[language][key] ?? TEXT.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

function applyLanguage() {
  document.documentElement.lang = language;
  $("ui-language").value = language;
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    const label = t(element.dataset.i18nLabel);
    element.setAttribute("aria-label", label);
    element.title = label;
    if (element.tagName === "INPUT") element.placeholder = label;
  }
  for (const entry of jobs.values()) renderJob(entry);
  if (shown) renderTranscript();
  renderConfiguredEngine();
}

function engineText(name, model) {
  // "GigaAM-Multilingual (gigaam-multilingual-ctc)"; the model alone repeats nothing when it is absent.
  const title = ENGINE_TITLES[name] || name;
  return model ? `${title} (${model})` : title;
}

async function readConfiguredEngine() {
  try {
    configuredEngine = (await api("GET", "/api/v1/status")).engine;
  } catch {
    return; // the line stays hidden: the upload works without it
  }
  renderConfiguredEngine();
}

function renderConfiguredEngine() {
  const line = $("configured-engine");
  line.hidden = !configuredEngine;
  line.textContent = configuredEngine ? t("configuredEngine", { engine: engineText(configuredEngine.name, configuredEngine.model) }) : "";
}

// ---- API ----

class ApiError extends Error {
  constructor(status, code, message, details = {}, retryAfter = null) {
    super(message || code);
    Object.assign(this, { status, code, details, retryAfter });
  }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((pair) => pair.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

function writeHeaders(method) {
  // A double-submit CSRF token, when the gateway hands one out in a readable cookie.
  const token = cookie("kazru_csrf");
  return method !== "GET" && token ? { "X-CSRF-Token": token } : {};
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", ...writeHeaders(method) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "NETWORK", "");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "", error.message || "", error.details || {}, response.headers.get("Retry-After"));
  }
  return data;
}

function bytesText(bytes) {
  const mib = Number(bytes) / (1024 * 1024);
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${Math.round(mib)} MiB`;
}

function explain(error) {
  // The code (or, without one, the status) as a sentence in the page's language; else the server's message.
  const key = ERROR_TEXT[error.code] || (!error.message && (STATUS_TEXT[error.status] || "err_INTERNAL"));
  if (!key) return error.message;
  const details = error.details || {};
  return t(key, {
    seconds: error.retryAfter || details.retry_after_seconds || "60",
    limit: details.max_bytes ? bytesText(details.max_bytes) : "500 MiB",
    hours: details.max_duration_seconds ? Number(details.max_duration_seconds) / 3600 : 3,
  });
}

function notify(text, isError = false, action = null) {
  // `action`: {label, run} shown as a button in the notice (e.g. Undo), which then stays longer.
  const notice = $("notice");
  notice.replaceChildren(element("span", "", text));
  if (action) {
    const button = element("button", "notice-action", action.label);
    button.type = "button";
    button.addEventListener("click", (e) => { e.stopPropagation(); notice.hidden = true; action.run(); });
    notice.append(button);
  }
  notice.className = isError ? "notice error" : "notice";
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, action ? UNDO_MS : isError ? 10000 : 4000);
}

function sayUpload(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// ---- time ----

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const rest = `${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  return hours ? `${hours}:${rest}` : rest;
}

function hoursMinutes(seconds) {
  // "23 h 57 min": a time left, never to be read as a time of day.
  const minutes = Math.max(1, Math.ceil(seconds / 60));
  const hours = Math.floor(minutes / 60);
  return hours ? `${hours} ${t("hours")} ${minutes % 60} ${t("minutes")}` : `${minutes} ${t("minutes")}`;
}

function duration(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} ${t("seconds")}`;
  const minutes = Math.floor(s / 60);
  return s % 60 && minutes < 10 ? `${minutes} ${t("minutes")} ${s % 60} ${t("seconds")}` : `${minutes} ${t("minutes")}`;
}

function secondsLeft(entry) {
  // From the progress seen over time on this page; before that, from the job's own start time.
  const { job, samples } = entry;
  if (job.progress <= 0) return null;
  const [firstAt, firstProgress] = samples[0] || [0, 0];
  const [lastAt, lastProgress] = samples[samples.length - 1] || [0, 0];
  if (samples.length >= 2 && lastProgress > firstProgress && lastAt - firstAt >= 1000) {
    const perSecond = (lastProgress - firstProgress) / ((lastAt - firstAt) / 1000);
    return (100 - job.progress) / perSecond - (Date.now() - lastAt) / 1000;
  }
  if (job.started_at) {
    const elapsed = (Date.now() - Date.parse(job.started_at)) / 1000;
    if (elapsed > 1) return (elapsed * (100 - job.progress)) / job.progress;
  }
  return null;
}

function steadyEstimate(previous, estimate, now) {
  // The time left as shown: it counts down with the clock and moves only part of the way to each new estimate,
  // so it never jumps about while the progress stands still. `previous`: {value, at} or null.
  if (estimate === null) return previous;
  if (!previous) return { value: estimate, at: now };
  const counted = Math.max(0, previous.value - (now - previous.at) / 1000);
  return { value: counted + ETA_BLEND * (estimate - counted), at: now };
}

// ---- upload ----

function chosenLanguages() {
  return [...document.querySelectorAll("input[name=language]:checked")].map((box) => box.value);
}

function enqueueUploads(files) {
  // Each file its own job and its own bar; sent one after another (a burst would only meet the rate limit).
  const languages = chosenLanguages();
  if (!languages.length) { sayUpload(t("noLanguage"), true); return; }
  sayUpload("");
  const maxSpeakers = $("max-speakers").value;
  for (const file of files) uploadQueue.push({ file, languages, maxSpeakers, row: buildUploadRow(file) });
  pumpUploads();
}

function buildUploadRow(file) {
  const row = element("li", "upload");
  const name = element("span", "upload-name", file.name);
  const bar = element("progress", "upload-progress");
  bar.max = 100;
  bar.value = 0;
  const percent = element("span", "percent", t("waiting"));
  const message = element("span", "upload-message");
  const dismiss = element("button", "link-button dismiss", t("dismiss"));
  dismiss.type = "button";
  dismiss.hidden = true;
  dismiss.addEventListener("click", () => row.remove());
  row.append(name, bar, percent, message, dismiss);
  $("uploads").append(row);
  return row;
}

async function pumpUploads() {
  if (uploading) return;
  uploading = true;
  try {
    while (uploadQueue.length) await sendUpload(uploadQueue.shift());
  } finally {
    uploading = false;
  }
}

async function sendUpload(item) {
  // Until the server takes the file or refuses it for good; a 429 waits out Retry-After and goes again.
  for (;;) {
    const { status, body, retryAfter } = await postFile(item);
    if (status === 202 && body) {
      item.row.remove();
      uploadedHere.add(body.job_id);
      track(body);
      placeJobs();
      notify(t("uploadedNotice", { name: item.file.name }));
      return;
    }
    const error = (body && body.error) || {};
    if (status === 429) {
      await countdown(item.row, Math.max(1, Number(retryAfter) || Number(error.details && error.details.retry_after_seconds) || 5));
      continue;
    }
    const explained = status === 0 ? t("err_NETWORK")
      : explain(new ApiError(status, error.code || "", error.message || "", error.details || {}, retryAfter));
    item.row.classList.add("error");
    item.row.querySelector(".upload-message").textContent = explained;
    item.row.querySelector(".upload-progress").hidden = true;
    item.row.querySelector(".percent").textContent = "";
    item.row.querySelector(".dismiss").hidden = false;
    return;
  }
}

function countdown(row, seconds) {
  return new Promise((resolve) => {
    const message = row.querySelector(".upload-message");
    let left = Math.ceil(seconds);
    const tick = () => {
      if (left <= 0) { message.textContent = ""; resolve(); return; }
      message.textContent = t("retryIn", { seconds: left });
      left -= 1;
      setTimeout(tick, 1000);
    };
    row.querySelector(".percent").textContent = "";
    tick();
  });
}

function postFile({ file, languages, maxSpeakers, row }) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("language", languages.join(","));
    if (maxSpeakers) form.append("max_speakers", maxSpeakers);
    form.append("file", file);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/v1/upload");
    for (const [name, value] of Object.entries(writeHeaders("POST"))) request.setRequestHeader(name, value);
    request.setRequestHeader("Accept", "application/json");
    const bar = row.querySelector(".upload-progress");
    const percent = row.querySelector(".percent");
    bar.hidden = false;
    bar.value = 0;
    percent.textContent = "0%";
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.value = (100 * e.loaded) / e.total;
      percent.textContent = `${Math.floor(bar.value)}%`;
    });
    request.upload.addEventListener("load", () => { row.querySelector(".upload-message").textContent = t("checking", { name: file.name }); });
    request.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { body = null; }
      resolve({ status: request.status, body, retryAfter: request.getResponseHeader("Retry-After") });
    });
    request.addEventListener("error", () => resolve({ status: 0, body: null, retryAfter: null }));
    request.send(form);
  });
}

// ---- jobs ----

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function track(job) {
  let entry = jobs.get(job.job_id);
  if (!entry) {
    entry = { job, samples: [], stream: null, element: buildJob(job.job_id) };
    jobs.set(job.job_id, entry);
  }
  const finishedNow = !TERMINAL.has(entry.job.state) && TERMINAL.has(job.state);
  entry.job = job;
  if (job.state === "RUNNING") {
    const last = entry.samples[entry.samples.length - 1];
    if (!last || last[1] !== job.progress) entry.samples.push([Date.now(), job.progress]);
  }
  renderJob(entry);
  if (TERMINAL.has(job.state)) {
    if (entry.stream) { entry.stream.close(); entry.stream = null; }
    if (finishedNow && job.state === "SUCCEEDED" && uploadedHere.has(job.job_id) && !shown) openTranscript(job.job_id);
  }
  return entry;
}

function buildJob(jobId) {
  const item = element("li", "job");
  item.dataset.jobId = jobId;
  const head = element("div", "job-head");
  head.append(element("span", "job-name"), element("span", "state"));
  // What tells two uploads of one file apart: when, how long, which language(s).
  const facts = element("div", "job-facts");
  facts.append(element("time", "job-date"), element("span", "job-duration"), element("span", "job-languages"));
  const bar = element("progress", "job-progress");
  bar.max = 100;
  const meta = element("div", "job-meta");
  meta.append(element("span", "eta"), element("span", "expiry"), element("span", "job-error"), element("span", "job-note"));
  const actions = element("div", "job-actions");
  const open = element("button", "open button small");
  open.type = "button";
  open.addEventListener("click", () => openTranscript(jobId));
  const remove = element("button", "delete button small danger");
  remove.type = "button";
  remove.addEventListener("click", () => deleteJob(jobId));
  actions.append(open, remove);
  item.append(head, facts, bar, meta, actions);
  return item;
}

function renderJob(entry) {
  const { job, element: item } = entry;
  item.querySelector(".job-name").textContent = job.filename;
  renderFacts(item, job);
  const state = item.querySelector(".state");
  state.className = `state ${job.state}`;
  state.textContent = job.state === "RUNNING" ? `${t("state_RUNNING")} ${job.progress}%` : t(`state_${job.state}`);
  const bar = item.querySelector(".job-progress");
  bar.value = job.progress;
  bar.hidden = TERMINAL.has(job.state) && job.state !== "SUCCEEDED";
  const failure = job.error ? explain(new ApiError(0, job.error.code || "", job.error.message || "")) : "";
  item.querySelector(".job-error").textContent = failure;
  const audio = job.audio || {};
  const notes = (job.notices || []).map((notice) => noticeText(notice, job));
  if (audio.truncated) {
    notes.unshift(t("truncated", { decoded: clock(audio.duration_seconds), declared: clock(audio.declared_duration_seconds) }));
  }
  item.querySelector(".job-note").textContent = notes.join(" ");
  item.querySelector(".open").textContent = t("open");
  item.querySelector(".open").hidden = job.state !== "SUCCEEDED";
  item.querySelector(".delete").textContent = t("delete");
  item.querySelector(".delete").hidden = job.state === "EXPIRED" || job.state === "DELETED";
  item.classList.toggle("selected", Boolean(shown && shown.jobId === job.job_id));
  renderTimes(entry);
}

function renderFacts(item, job) {
  const date = item.querySelector(".job-date");
  date.dateTime = job.created_at || "";
  date.textContent = job.created_at ? dateTimeText(job.created_at) : "";
  date.title = job.created_at ? t("uploadedAt", { time: date.textContent }) : "";
  const seconds = (job.audio && job.audio.duration_seconds) || 0;
  const length = item.querySelector(".job-duration");
  length.textContent = seconds ? clock(seconds) : "";
  length.title = seconds ? t("durationLabel", { time: length.textContent }) : "";
  const languages = item.querySelector(".job-languages");
  languages.textContent = languagesText(job);
  languages.title = t("languages");
}

function dateTimeText(stamp) {
  // The upload's date and time in the page's language and the browser's time zone.
  const date = new Date(stamp);
  if (!/^M\d+$/.test(new Intl.DateTimeFormat(language, { month: "short" }).format(date))) {
    return new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "short" }).format(date);
  }
  // Chromium has no month names for Kazakh (it writes "2026 M12 6"): the digits, as Kazakhstan writes them.
  const numeric = { day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  const part = Object.fromEntries(new Intl.DateTimeFormat(language, numeric).formatToParts(date).map((p) => [p.type, p.value]));
  return `${part.day}.${part.month}.${part.year}, ${part.hour}:${part.minute}`;
}

function languagesText(job) {
  // What was heard, largest share first, once known; before that, the languages the upload allowed.
  const shares = Object.entries(job.language_shares || {}).filter(([, share]) => share > 0).sort((a, b) => b[1] - a[1]);
  if (shares.length > 1) return shares.map(([code, share]) => `${code.toUpperCase()} ${Math.round(share * 100)}%`).join(" · ");
  if (shares.length === 1) return shares[0][0].toUpperCase();
  if (job.detected_language) return job.detected_language.toUpperCase();
  return (job.languages || []).map((code) => code.toUpperCase()).join(", ");
}

// A job's notice in the reader's language; one this page has no words for keeps the server's English sentence.
function noticeText(notice, job) {
  const known = (key) => key in TEXT[language] || key in TEXT.en;
  if (notice.code === "UNSUPPORTED_LANGUAGE") {
    if (!known(`lang_${notice.language}`)) return notice.message;
    const allowed = (job.languages || []).map((code) => (known(`lang_${code}`) ? t(`lang_${code}`) : code));
    return t("notice_UNSUPPORTED_LANGUAGE", { heard: t(`lang_${notice.language}`), allowed: allowed.join(", ") });
  }
  return known(`notice_${notice.code}`) ? t(`notice_${notice.code}`) : notice.message;
}

function renderTimes(entry) {
  const { job, element: item } = entry;
  let eta = "";
  if (job.state === "RUNNING") {
    entry.eta = steadyEstimate(entry.eta || null, secondsLeft(entry), Date.now());
    eta = entry.eta ? t("timeLeft", { time: duration(entry.eta.value) }) : t("estimating");
  }
  item.querySelector(".eta").textContent = eta;
  let expiry = "";
  if (job.expires_at && job.state !== "EXPIRED" && job.state !== "DELETED") {
    const left = (Date.parse(job.expires_at) - Date.now()) / 1000;
    expiry = left > 0 ? t("expiresIn", { time: hoursMinutes(left) }) : t("expiringNow");
  }
  item.querySelector(".expiry").textContent = expiry;
}

function placeJobs() {
  // Newest first, as the API lists them; nodes are kept so a click is never lost to a redraw.
  const ordered = [...jobs.values()].sort((a, b) => String(b.job.created_at).localeCompare(String(a.job.created_at)));
  const list = $("jobs");
  ordered.forEach((entry, index) => {
    if (list.children[index] !== entry.element) list.insertBefore(entry.element, list.children[index] || null);
  });
  $("no-jobs").hidden = jobs.size > 0;
  watchLiveJobs();
}

function watchLiveJobs() {
  let streams = [...jobs.values()].filter((entry) => entry.stream).length;
  for (const entry of jobs.values()) {
    if (streams >= MAX_LIVE_STREAMS) return;
    if (entry.stream || TERMINAL.has(entry.job.state) || !window.EventSource) continue;
    const stream = new EventSource(`/api/v1/jobs/${entry.job.job_id}/status`);
    entry.stream = stream;
    streams += 1;
    stream.addEventListener("message", (e) => track(JSON.parse(e.data)));
    stream.addEventListener("error", (e) => {
      if (e.data) notify(explain(Object.assign(new ApiError(0, ""), JSON.parse(e.data).error || {})), true);
      // A stream the server ended or refused is not retried: the periodic refresh takes over.
      if (e.data || stream.readyState === EventSource.CLOSED) { stream.close(); entry.stream = null; }
    });
  }
}

function refreshJobs() {
  // One read at a time: the periodic refresh and "Show more" share the one under way.
  if (!jobsRead) jobsRead = readJobs().finally(() => { jobsRead = null; });
  return jobsRead;
}

async function readJobs() {
  // Every page shown so far, read again from the newest: the pages are keyset pages (stable while jobs are
  // added), and a job missing from them has been deleted.
  const listed = [];
  let token = "";
  try {
    for (let page = 0; page < jobPages && (page === 0 || token); page += 1) {
      const query = new URLSearchParams({ page_size: String(JOBS_PAGE_SIZE) });
      if (token) query.set("page_token", token);
      const body = await api("GET", `/api/v1/jobs?${query}`);
      listed.push(...body.jobs);
      token = body.next_page_token || "";
    }
  } catch (error) {
    if (error.status === 401) showSignIn(); // the key it was signed in with was revoked
    else notify(explain(error), true);
    return;
  }
  $("more-jobs").hidden = !token;
  const seen = new Set();
  for (const job of listed) {
    seen.add(job.job_id);
    const entry = jobs.get(job.job_id);
    // The live stream is fresher than a list read that started before its last event.
    if (!entry || !entry.stream) track(job);
  }
  for (const [jobId, entry] of jobs) {
    if (seen.has(jobId) || uploadedHere.has(jobId)) continue;
    if (entry.stream) entry.stream.close();
    entry.element.remove();
    jobs.delete(jobId);
  }
  placeJobs();
}

async function showMoreJobs() {
  const button = $("more-jobs");
  jobPages += 1;
  button.disabled = true;
  try {
    if (jobsRead) await jobsRead; // it started with a page fewer
    await refreshJobs();
  } finally {
    button.disabled = false;
  }
}

async function deleteJob(jobId) {
  const entry = jobs.get(jobId);
  const name = entry ? entry.job.filename : jobId;
  if (!window.confirm(t("confirmDelete", { name }))) return;
  try {
    await api("DELETE", `/api/v1/jobs/${jobId}`);
  } catch (error) {
    if (error.code !== "JOB_DELETED" && error.code !== "JOB_NOT_FOUND") { notify(explain(error), true); return; }
  }
  if (entry) {
    if (entry.stream) entry.stream.close();
    entry.element.remove();
    jobs.delete(jobId);
  }
  uploadedHere.delete(jobId);
  if (shown && shown.jobId === jobId) closeTranscript();
  $("no-jobs").hidden = jobs.size > 0;
  notify(t("deleted", { name }));
}

// ---- transcript ----

async function openTranscript(jobId) {
  let transcript;
  try {
    transcript = await api("GET", `/api/v1/jobs/${jobId}/transcript`);
  } catch (error) {
    notify(explain(error), true);
    return;
  }
  const player = $("player");
  shown = { jobId, transcript, turns: [], current: -1, word: null, matches: [], match: -1 };
  player.src = `/api/v1/jobs/${jobId}/audio`;
  player.playbackRate = player.defaultPlaybackRate = Number($("speed").value) || 1;
  const seconds = (jobs.get(jobId) && jobs.get(jobId).job.audio.duration_seconds) || transcript.duration_seconds;
  $("transcript-duration").textContent = seconds ? t("durationLabel", { time: clock(seconds) }) : "";
  for (const format of FORMATS) $(`dl-${format}`).href = `/api/v1/jobs/${jobId}/export/${format}`;
  $("transcript-view").hidden = false;
  renderTranscript();
  for (const entry of jobs.values()) renderJob(entry);
  $("transcript-view").scrollIntoView({ behavior: "smooth", block: "start" });
}

function closeTranscript() {
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  shown = null;
  $("transcript-view").hidden = true;
  for (const entry of jobs.values()) renderJob(entry);
}

function speakerColour(speakerId) {
  const index = shown.transcript.speakers.findIndex((speaker) => speaker.id === speakerId);
  return `spk-${(index < 0 ? 0 : index) % SPEAKER_COLOURS}`;
}

function speakerName(speakerId) {
  const speaker = shown.transcript.speakers.find((s) => s.id === speakerId);
  return (speaker && speaker.label) || speakerId || "—";
}

function renderTranscript() {
  const { transcript, jobId } = shown;
  const entry = jobs.get(jobId);
  $("transcript-title").textContent = entry ? entry.job.filename : "";
  // What to know about the transcript (no speech found: instead of an empty transcript) heads it.
  const notices = entry ? (entry.job.notices || []).map((notice) => element("p", "notice", noticeText(notice, entry.job))) : [];
  $("transcript-notices").replaceChildren(...notices);
  $("transcript-notices").hidden = notices.length === 0;
  $("speakers").replaceChildren(...transcript.speakers.map(buildSpeaker));
  shown.turns = transcript.segments.map(buildTurn);
  $("segments").replaceChildren(...shown.turns);
  shown.current = -1;
  shown.word = null;
  const seconds = (entry && entry.job.audio.duration_seconds) || transcript.duration_seconds;
  $("transcript-duration").textContent = seconds ? t("durationLabel", { time: clock(seconds) }) : "";
  // Which engine and model wrote this transcript (a reused result: the earlier job's).
  const engine = entry && entry.job.engine;
  $("transcript-engine").textContent = engine ? t("transcribedBy", { engine: engineText(engine, entry.job.engine_model) }) : "";
  $("transcript-engine").hidden = !engine;
  search(false);
  highlightPlaying();
}

function buildSpeaker(speaker) {
  const item = element("li", `speaker ${speakerColour(speaker.id)}`);
  item.dataset.speaker = speaker.id;
  const swatch = element("span", "swatch");
  const label = element("label", "speaker-id", speaker.id);
  const input = element("input", "speaker-name");
  input.id = `speaker-${speaker.id}`;
  label.htmlFor = input.id;
  input.value = speaker.label || speaker.id;
  input.maxLength = 100;
  input.setAttribute("aria-label", t("speakerName", { id: speaker.id }));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); renameSpeaker(speaker, input); }
    if (e.key === "Escape") { input.value = speaker.label || speaker.id; input.blur(); }
  });
  const seconds = element("span", "speaker-time muted", clock(speaker.speaking_seconds));
  item.append(swatch, label, input, seconds);
  const others = shown.transcript.speakers.filter((other) => other.id !== speaker.id);
  if (others.length) {
    const merge = element("select", "merge");
    merge.setAttribute("aria-label", t("mergeInto"));
    merge.append(element("option", "", t("mergeInto")));
    merge.firstChild.value = "";
    for (const other of others) {
      const option = element("option", "", other.label || other.id);
      option.value = other.id;
      merge.append(option);
    }
    merge.addEventListener("change", () => mergeSpeaker(speaker, merge));
    item.append(merge);
  }
  return item;
}

async function mergeSpeaker(speaker, select) {
  const into = select.value;
  select.value = "";
  if (!into || !window.confirm(t("confirmMerge", { from: speakerName(speaker.id), into: speakerName(into) }))) return;
  const jobId = shown.jobId;
  // What the merge changes, so that it can be undone: the speaker's turns and its name.
  const undo = {
    jobId, speaker: speaker.id, name: speaker.label && speaker.label !== speaker.id ? speaker.label : null,
    segments: shown.transcript.segments.filter((s) => s.speaker === speaker.id).map((s) => s.index),
  };
  try {
    const transcript = await api("POST", `/api/v1/jobs/${jobId}/speakers/${encodeURIComponent(speaker.id)}/merge`, { into });
    if (shown && shown.jobId === jobId) { shown.transcript = transcript; renderTranscript(); }
    notify(t("merged"), false, { label: t("undo"), run: () => undoMerge(undo) });
  } catch (error) {
    notify(explain(error), true);
  }
}

async function undoMerge({ jobId, speaker, name, segments }) {
  // The API gives each turn back to the speaker (who comes back with the first), then its name.
  try {
    for (const index of segments) await api("PATCH", `/api/v1/jobs/${jobId}/segments/${index}`, { speaker });
    let transcript = await api("GET", `/api/v1/jobs/${jobId}/transcript`);
    if (name) transcript = await api("PUT", `/api/v1/jobs/${jobId}/speakers`, { speakers: { [speaker]: name } });
    if (shown && shown.jobId === jobId) { shown.transcript = transcript; renderTranscript(); }
    notify(t("unmerged"));
  } catch (error) {
    notify(explain(error), true);
  }
}

async function renameSpeaker(speaker, input) {
  const name = input.value.trim();
  if (name === (speaker.label || speaker.id)) return;
  const jobId = shown.jobId;
  try {
    const transcript = await api("PUT", `/api/v1/jobs/${jobId}/speakers`, { speakers: { [speaker.id]: name } });
    if (shown && shown.jobId === jobId) { shown.transcript = transcript; renderTranscript(); }
    notify(t("renamed"));
  } catch (error) {
    notify(explain(error), true);
    input.focus();
  }
}

function buildTurn(segment, index) {
  const item = element("li", `turn ${speakerColour(segment.speaker)}`);
  item.dataset.index = segment.index;
  item.dataset.start = String(segment.start);
  const head = element("div", "turn-head");
  const time = element("button", "time", clock(segment.start));
  time.type = "button";
  time.setAttribute("aria-label", t("play", { time: clock(segment.start) }));
  const who = element("span", "who", speakerName(segment.speaker));
  const lang = element("button", `lang lang-${segment.language}`, String(segment.language || "?").toUpperCase());
  lang.type = "button";
  lang.title = t("changeLanguage");
  lang.setAttribute("aria-label", `${t("changeLanguage")}: ${lang.textContent}`);
  const languages = element("select", "lang-select");
  languages.hidden = true;
  languages.setAttribute("aria-label", t("changeLanguage"));
  for (const code of SEGMENT_LANGUAGES) {
    const option = element("option", "", code.toUpperCase());
    option.value = code;
    languages.append(option);
  }
  lang.addEventListener("click", (e) => {
    e.stopPropagation();
    languages.value = segment.language;
    lang.hidden = true;
    languages.hidden = false;
    languages.focus();
  });
  languages.addEventListener("click", (e) => e.stopPropagation());
  languages.addEventListener("change", () => changeLanguage(segment, item, languages.value));
  languages.addEventListener("blur", () => { languages.hidden = true; lang.hidden = false; });
  const edit = element("button", "edit link-button", "✎");
  edit.type = "button";
  edit.title = t("editTurn");
  edit.setAttribute("aria-label", t("editTurn"));
  edit.addEventListener("click", (e) => { e.stopPropagation(); startEditing(segment, text); });
  const edited = element("span", "edited-mark", t("edited"));
  const revert = element("button", "revert link-button", t("revert"));
  revert.type = "button";
  revert.addEventListener("click", (e) => { e.stopPropagation(); revertSegment(segment, item); });
  head.append(time, who, lang, languages, edit, edited, revert);
  const text = element("p", "text");
  text.lang = segment.language || "";
  showWords(text, segment);
  let pendingPlay = 0;
  text.addEventListener("dblclick", (e) => { e.preventDefault(); clearTimeout(pendingPlay); startEditing(segment, text); });
  text.addEventListener("keydown", (e) => {
    if (!text.isContentEditable) return;
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); saveSegment(segment, text); }
    if (e.key === "Escape") { e.preventDefault(); stopEditing(segment, text); }
  });
  text.addEventListener("blur", () => {
    if (!text.isContentEditable) return;
    if (text.textContent !== segment.text) saveSegment(segment, text);
    else stopEditing(segment, text);
  });
  text.addEventListener("paste", (e) => {
    // Plain text only: a pasted web page must not bring its markup into the transcript.
    e.preventDefault();
    document.execCommand("insertText", false, e.clipboardData.getData("text/plain"));
  });
  item.addEventListener("click", (e) => {
    if (text.isContentEditable && text.contains(e.target)) return;
    const word = e.target.closest && e.target.closest(".word");
    const play = () => {
      if (!shown || !item.isConnected) return;
      if (word && word.dataset.start) playAt(Number(word.dataset.start));
      else playFrom(index);
    };
    if (!text.contains(e.target)) { play(); return; }
    // On the text, a click may be the first of a double-click (which edits): play only if no second follows.
    clearTimeout(pendingPlay);
    if (e.detail < 2) pendingPlay = setTimeout(play, DOUBLE_CLICK_MS);
  });
  item.append(head, text);
  showEdited(item, segment);
  return item;
}

function segmentWords(segment) {
  // The recognised words with their times; after an edit they no longer match the text, which is then
  // split into untimed words (a click on one plays the turn from its start).
  if (!segment.edited && segment.words.length) return segment.words.map((w) => ({ text: w.text.trim(), start: w.start, end: w.end }));
  return segment.text.split(/\s+/).filter(Boolean).map((word) => ({ text: word }));
}

function showWords(text, segment) {
  const pieces = [];
  for (const word of segmentWords(segment)) {
    if (!word.text) continue;
    if (pieces.length) pieces.push(document.createTextNode(" "));
    const span = element("span", "word", word.text);
    if (word.start !== undefined) { span.dataset.start = String(word.start); span.dataset.end = String(word.end); }
    pieces.push(span);
  }
  text.replaceChildren(...pieces);
}

function startEditing(segment, text) {
  if (text.isContentEditable) return;
  text.textContent = segment.text;
  text.contentEditable = "true";
  text.spellcheck = true;
  text.focus();
  const range = document.createRange();
  range.selectNodeContents(text);
  range.collapse(false);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function stopEditing(segment, text) {
  text.contentEditable = "false";
  showWords(text, segment);
  if (shown) search(false);
}

async function changeLanguage(segment, item, language) {
  const select = item.querySelector(".lang-select");
  select.blur();
  if (language === segment.language) return;
  const jobId = shown.jobId;
  try {
    const saved = await api("PATCH", `/api/v1/jobs/${jobId}/segments/${segment.index}`, { language });
    Object.assign(segment, saved);
    const badge = item.querySelector(".lang");
    badge.textContent = segment.language.toUpperCase();
    badge.className = `lang lang-${segment.language}`;
    badge.setAttribute("aria-label", `${t("changeLanguage")}: ${badge.textContent}`);
    item.querySelector(".text").lang = segment.language;
    notify(t("languageChanged"));
  } catch (error) {
    notify(explain(error), true);
  }
}

function showEdited(item, segment) {
  item.querySelector(".edited-mark").hidden = !segment.edited;
  const revert = item.querySelector(".revert");
  revert.hidden = !segment.edited;
  revert.title = segment.edited ? t("revertTitle", { text: segment.original_text || "" }) : "";
}

async function revertSegment(segment, item) {
  const jobId = shown.jobId;
  try {
    const saved = await api("PATCH", `/api/v1/jobs/${jobId}/segments/${segment.index}`, { revert: true });
    Object.assign(segment, saved);
    if (shown && shown.jobId === jobId) {
      stopEditing(segment, item.querySelector(".text"));
      showEdited(item, segment);
    }
    notify(t("reverted"));
  } catch (error) {
    notify(explain(error), true);
  }
}

async function saveSegment(segment, text) {
  const value = text.textContent.replace(/\s+/g, " ").trim();
  if (text.dataset.saving) return;
  if (value === segment.text) { stopEditing(segment, text); return; }
  text.dataset.saving = "1";
  const jobId = shown.jobId;
  try {
    const saved = await api("PATCH", `/api/v1/jobs/${jobId}/segments/${segment.index}`, { text: value });
    Object.assign(segment, saved);
    if (shown && shown.jobId === jobId) {
      stopEditing(segment, text);
      showEdited(text.closest(".turn"), segment);
    }
    notify(t("saved"));
  } catch (error) {
    notify(explain(error), true);
  } finally {
    delete text.dataset.saving;
  }
}

function playFrom(index) {
  const segment = shown.transcript.segments[index];
  if (segment) playAt(segment.start);
}

function playAt(seconds) {
  const player = $("player");
  player.currentTime = Math.max(0, seconds);
  const playing = player.play();
  if (playing) playing.catch((error) => { if (error.name !== "AbortError") notify(t("err_AUDIO_UNAVAILABLE"), true); });
  highlightPlaying();
}

function togglePlay() {
  const player = $("player");
  if (player.paused) {
    const playing = player.play();
    if (playing) playing.catch((error) => { if (error.name !== "AbortError") notify(t("err_AUDIO_UNAVAILABLE"), true); });
  } else {
    player.pause();
  }
}

function stepTurn(delta) {
  // From the turn under the playhead (read from the player, not from the last highlight, which trails
  // its events); in a pause between turns, the next turn is the one after it and the previous the one before.
  const segments = shown.transcript.segments;
  if (!segments.length) return;
  const now = $("player").currentTime;
  let index = segments.findIndex((s) => s.start <= now && now < s.end);
  if (index < 0) {
    const after = segments.findIndex((s) => s.start > now);
    const following = after < 0 ? segments.length : after;
    index = delta > 0 ? following - 1 : following;
  }
  playFrom(Math.min(Math.max(index + delta, 0), segments.length - 1));
}

function highlightPlaying() {
  if (!shown) return;
  // The turn under the playhead, once playback has started (a paused player keeps its place).
  const now = $("player").currentTime;
  const started = !$("player").paused || now > 0;
  const index = started ? shown.transcript.segments.findIndex((s) => s.start <= now && now < s.end) : -1;
  highlightWord(index, now, started);
  if (index === shown.current) return;
  if (shown.current >= 0 && shown.turns[shown.current]) shown.turns[shown.current].classList.remove("playing");
  shown.current = index;
  if (index >= 0) {
    shown.turns[index].classList.add("playing");
    if (!document.activeElement || !document.activeElement.isContentEditable) shown.turns[index].scrollIntoView({ block: "nearest" });
  }
}

function highlightWord(index, now, started) {
  // The word under the playhead, in the turn being played.
  let word = null;
  if (started && index >= 0) {
    for (const span of shown.turns[index].querySelectorAll(".word[data-start]")) {
      if (Number(span.dataset.start) <= now && now < Number(span.dataset.end)) { word = span; break; }
    }
  }
  if (word === shown.word) return;
  if (shown.word) shown.word.classList.remove("speaking");
  shown.word = word;
  if (word) word.classList.add("speaking");
}

// ---- search ----

function search(jump = true) {
  // Every occurrence of the query in the turns' words: highlighted, counted, stepped through.
  if (!shown) return;
  for (const marked of document.querySelectorAll("#segments .word.match")) marked.classList.remove("match", "current-match");
  const query = $("search").value.trim().toLocaleLowerCase();
  shown.matches = [];
  if (query) {
    shown.turns.forEach((turn) => {
      const spans = [...turn.querySelectorAll(".text .word")];
      let joined = "";
      const starts = spans.map((span) => { const at = joined.length; joined += `${span.textContent.toLocaleLowerCase()} `; return at; });
      for (let at = joined.indexOf(query); at >= 0; at = joined.indexOf(query, at + 1)) {
        const end = at + query.length;
        const hit = spans.filter((span, i) => starts[i] < end && starts[i] + span.textContent.length > at);
        hit.forEach((span) => span.classList.add("match"));
        if (hit.length) shown.matches.push(hit);
      }
    });
  }
  shown.match = shown.matches.length ? Math.min(Math.max(shown.match, 0), shown.matches.length - 1) : -1;
  showMatch(jump);
}

function stepMatch(delta) {
  if (!shown || !shown.matches.length) return;
  shown.match = (shown.match + delta + shown.matches.length) % shown.matches.length;
  showMatch(true);
}

function showMatch(jump) {
  for (const marked of document.querySelectorAll("#segments .current-match")) marked.classList.remove("current-match");
  const count = shown.matches.length;
  const query = $("search").value.trim();
  $("search-count").textContent = !query ? "" : count ? t("matchOf", { n: shown.match + 1, count }) : t("noMatches");
  if (!count) return;
  const current = shown.matches[shown.match];
  current.forEach((span) => span.classList.add("current-match"));
  if (jump) current[0].scrollIntoView({ block: "center" });
}

// ---- whole transcript ----

function transcriptText() {
  // As the TXT download reads: a paragraph per turn, its time and speaker first.
  return shown.transcript.segments
    .filter((segment) => segment.text.trim())
    .map((segment) => `[${clock(segment.start)}] ${speakerName(segment.speaker)}: ${segment.text.trim()}`)
    .join("\n\n");
}

async function copyTranscript() {
  if (!shown) return;
  const text = transcriptText();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an insecure origin): a selected textarea and the old copy command.
    const area = element("textarea", "visually-hidden");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  notify(t("copied"));
}

function onShortcut(e) {
  // Space/K play-pause, ←/→ 5 s, ↑/↓ previous/next turn, / search; never while typing in a field.
  if (!shown || e.ctrlKey || e.metaKey || e.altKey) return;
  const target = e.target;
  if (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
  const player = $("player");
  const actions = {
    " ": togglePlay, k: togglePlay,
    ArrowLeft: () => { player.currentTime = Math.max(0, player.currentTime - SEEK_STEP_SECONDS); },
    ArrowRight: () => { player.currentTime = player.currentTime + SEEK_STEP_SECONDS; },
    ArrowUp: () => stepTurn(-1), ArrowDown: () => stepTurn(1),
    "/": () => $("search").focus(),
  };
  const action = actions[e.key];
  if (!action) return;
  e.preventDefault();
  action();
}

// ---- signing in (where the service wants an API key) ----

async function readCredential() {
  // How the service knows this browser: "api_key", "browser_session", "shared", or "none" (sign in first).
  try {
    return (await api("GET", "/api/v1/session")).credential;
  } catch (error) {
    return error.status === 401 ? "none" : ""; // "": unknown (offline, an outage): the job list will say
  }
}

function showSignIn() {
  signedOut = true;
  for (const id of ["drop", "jobs-section", "transcript-view", "sign-out"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const message = $("sign-in-message");
  try {
    await api("POST", "/api/v1/session", { api_key: $("api-key").value.trim() });
  } catch (error) {
    message.textContent = error.code === "INVALID_API_KEY" ? t("signInRefused") : explain(error);
    message.className = "error";
    return;
  }
  location.reload(); // the key is in an HttpOnly cookie now: start again as its owner
}

async function signOut() {
  try {
    await api("DELETE", "/api/v1/session");
  } catch (error) {
    notify(explain(error), true);
    return;
  }
  location.reload();
}

async function startPage() {
  const credential = await readCredential();
  if (credential === "none") {
    showSignIn();
    return;
  }
  $("sign-out").hidden = credential !== "api_key";
  readConfiguredEngine();
  refreshJobs();
  setInterval(() => { if (!signedOut) refreshJobs(); }, REFRESH_MS);
}

// ---- start ----

document.addEventListener("DOMContentLoaded", () => {
  const notice = element("div", "notice");
  notice.id = "notice";
  notice.setAttribute("role", "alert");
  notice.hidden = true;
  notice.addEventListener("click", () => { notice.hidden = true; });
  document.body.append(notice);

  $("ui-language").addEventListener("change", (e) => {
    language = TEXT[e.target.value] ? e.target.value : "en";
    localStorage.setItem(LANGUAGE_KEY, language);
    applyLanguage();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) enqueueUploads([...e.dataTransfer.files]);
  });
  drop.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && e.target === drop) { e.preventDefault(); $("picker").click(); }
  });
  $("picker").addEventListener("change", (e) => {
    if (e.target.files.length) enqueueUploads([...e.target.files]);
    e.target.value = "";
  });
  $("close-transcript").addEventListener("click", closeTranscript);
  $("more-jobs").addEventListener("click", showMoreJobs);
  $("search").addEventListener("input", () => { if (shown) shown.match = 0; search(true); });
  $("search").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); stepMatch(e.shiftKey ? -1 : 1); }
    if (e.key === "Escape") { e.target.value = ""; search(false); e.target.blur(); }
  });
  $("search-prev").addEventListener("click", () => stepMatch(-1));
  $("search-next").addEventListener("click", () => stepMatch(1));
  $("speed").addEventListener("change", (e) => {
    const player = $("player");
    player.playbackRate = player.defaultPlaybackRate = Number(e.target.value) || 1;
  });
  $("copy-text").addEventListener("click", copyTranscript);
  document.addEventListener("keydown", onShortcut);
  const player = $("player");
  for (const name of ["timeupdate", "play", "pause", "seeked", "ended"]) player.addEventListener(name, highlightPlaying);
  player.addEventListener("error", () => {
    if (!shown || !player.getAttribute("src")) return;
    // AMR, WMA, AVI, MPEG-TS and the like are transcribed but most browsers cannot play them.
    const unplayable = player.error && player.error.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED;
    notify(t(unplayable ? "err_AUDIO_FORMAT_NOT_PLAYABLE" : "err_AUDIO_UNAVAILABLE"), true);
  });

  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);

  applyLanguage();
  startPage();
  setInterval(() => { for (const entry of jobs.values()) renderTimes(entry); }, 1000);
});
