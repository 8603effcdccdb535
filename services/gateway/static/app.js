"use strict";
const $ = (id) => document.getElementById(id);

function clock(seconds) {
  const s = Math.floor(seconds);
  return [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, "0")).join(":");
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function upload(file) {
  const form = new FormData();
  form.append("file", file);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/v1/upload");
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
  request.onload = () => {
    bar.hidden = true;
    const body = JSON.parse(request.responseText || "{}");
    if (request.status === 202) { say(`Uploaded ${file.name}`); refreshJobs(); }
    else say(body.error ? body.error.message : `Upload failed (${request.status})`, true);
  };
  request.onerror = () => { bar.hidden = true; say("Upload failed: the connection was lost", true); };
  say(`Uploading ${file.name}…`);
  request.send(form);
}

async function refreshJobs() {
  const response = await fetch("/api/v1/jobs?page_size=50");
  if (!response.ok) return;
  const { jobs } = await response.json();
  const list = $("jobs");
  list.replaceChildren(...jobs.map((job) => {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = job.filename;
    const state = document.createElement("span");
    state.className = `state ${job.state}`;
    state.textContent = job.state === "RUNNING" ? `RUNNING ${job.progress}%` : job.state;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = job.progress;
    item.append(name, state, bar);
    item.onclick = () => showTranscript(job);
    return item;
  }));
}

async function showTranscript(job) {
  $("transcript-view").hidden = false;
  $("transcript-title").textContent = job.filename;
  for (const format of ["txt", "srt", "vtt", "json", "docx"]) {
    $(`dl-${format}`).href = `/api/v1/jobs/${job.job_id}/export/${format}`;
  }
  const segments = $("segments");
  segments.replaceChildren();
  const response = await fetch(`/api/v1/jobs/${job.job_id}/transcript`);
  const body = await response.json();
  if (!response.ok) { segments.textContent = body.error.message; return; }
  segments.replaceChildren(...body.segments.map((segment) => {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = clock(segment.start);
    const lang = document.createElement("span");
    lang.className = "lang";
    lang.textContent = segment.language;
    item.append(time, lang, document.createTextNode(segment.text));
    return item;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
  $("picker").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
  refreshJobs();
  setInterval(refreshJobs, 2000);
});
