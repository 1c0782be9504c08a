// Backroom tablet: a little progressive enhancement, all of it optional (every page works without it).
// - [data-live="URL"]: an EventSource; each "fragments" event is {element id: server-rendered HTML}.
// - [data-job="ID"]: a progress bar fed by /ui/jobs/ID/events (or the URL in data-events: the HQ console's jobs).
// - form[data-confirm]: ask before submitting.
"use strict";

function liveRegions() {
  document.querySelectorAll("[data-live]").forEach((root) => {
    const source = new EventSource(root.dataset.live);
    const dot = root.querySelector(".live-dot");
    source.addEventListener("open", () => dot && dot.classList.add("on"));
    source.addEventListener("error", () => dot && dot.classList.remove("on"));
    source.addEventListener("fragments", (event) => {
      const fragments = JSON.parse(event.data);
      for (const [id, html] of Object.entries(fragments)) {
        const target = document.getElementById(id);
        if (target) target.outerHTML = html;
      }
    });
  });
}

function jobs() {
  document.querySelectorAll("[data-job]").forEach((box) => {
    const bar = box.querySelector("progress");
    const state = box.querySelector(".job-state");
    const source = new EventSource(box.dataset.events || "/ui/jobs/" + encodeURIComponent(box.dataset.job) + "/events");
    source.addEventListener("progress", (event) => {
      const job = JSON.parse(event.data);
      if (bar) bar.value = job.percent;
      if (state) {
        state.textContent = job.state === "running" ? job.percent + "%"
          : (job.state === "done" ? box.dataset.doneText || "✓" : box.dataset.failedText || "✗") + " " + job.message;
      }
      if (job.state !== "running") {
        source.close();
        if (job.state === "done" && box.dataset.reload !== undefined) window.location.reload();
      }
    });
    source.addEventListener("error", () => source.close());
  });
}

function confirms() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveRegions();
  jobs();
  confirms();
});
