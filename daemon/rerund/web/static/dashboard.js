// rerund's dashboard: a little script for the parts that change while you look.
"use strict";
const rerund = {
  text(id, value) { const el = document.getElementById(id); if (el) el.textContent = value; },

  graph() {
    const data = JSON.parse(document.getElementById("node-data").textContent);
    const panel = document.getElementById("details");
    const show = (node) => {
      const info = data[node.dataset.commit];
      if (!info) return;
      document.querySelectorAll(".node.selected").forEach((n) => n.classList.remove("selected"));
      node.classList.add("selected");
      rerund.text("d-summary", info.summary);
      rerund.text("d-commit", node.dataset.commit);
      rerund.text("d-cmd", "$ " + info.cmd);
      const state = document.getElementById("d-state");
      state.textContent = node.dataset.state;
      state.className = "state " + node.dataset.state;
      for (const [id, items] of [["d-outputs", info.outputs], ["d-reasons", info.reasons]]) {
        const list = document.getElementById(id);
        list.replaceChildren(...items.map((item) => {
          const li = document.createElement("li"); li.textContent = item; return li;
        }));
      }
      document.getElementById("d-reasons-box").hidden = info.reasons.length === 0;
      panel.hidden = false;
    };
    document.querySelectorAll(".record-graph .node").forEach((node) => {
      node.addEventListener("click", () => show(node));
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") show(node); });
    });
    panel.querySelector(".close").addEventListener("click", () => { panel.hidden = true; });
  },

  stream(url, handlers) {
    const source = new EventSource(url);
    const live = document.getElementById("live");
    source.onopen = () => live && live.classList.add("on");
    source.onerror = () => live && live.classList.remove("on");
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => handle(JSON.parse(event.data), source));
    }
    return source;
  },

  row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
    tr.innerHTML = cells.join("");
    return tr;
  },

  esc(value) {
    const div = document.createElement("div");
    div.textContent = value == null ? "" : String(value);
    return div.innerHTML;
  },

  jobs() {
    const body = document.querySelector("#jobs tbody");
    rerund.stream("/events/jobs", {
      jobs(data) {
        body.replaceChildren(...data.jobs.map((job) => rerund.row([
          `<td><a href="/jobs/${job.id}">#${job.id}</a></td>`,
          `<td>${rerund.esc(job.repo)}</td>`,
          `<td><span class="state ${rerund.esc(job.state)}">${rerund.esc(job.state)}</span></td>`,
          `<td><code>${rerund.esc(job.target.slice(0, 10))}</code></td>`,
          `<td>${rerund.esc(job.when)}</td>`,
          `<td>${rerund.esc(job.duration)}</td>`,
          `<td class="muted">${rerund.esc(job.error || "")}</td>`,
        ], { "data-job": job.id, "data-state": job.state })));
        document.getElementById("queue-plot").innerHTML = data.queue_plot;
      },
    });
  },

  job(id) {
    const log = document.getElementById("log");
    const body = document.querySelector("#steps tbody");
    log.textContent = "";
    rerund.stream(`/events/jobs/${id}`, {
      job(data) {
        const state = document.getElementById("job-state");
        state.textContent = data.job.state;
        state.className = "state " + data.job.state;
        document.getElementById("timeline").innerHTML = data.timeline;
        body.replaceChildren(...data.steps.map((step) => rerund.row([
          `<td>${step.position + 1}</td>`,
          `<td><code>${rerund.esc(step.record.slice(0, 10))}</code> ${rerund.esc(step.summary)}</td>`,
          `<td><span class="state ${rerund.esc(step.state)}">${rerund.esc(step.state)}</span></td>`,
          `<td>${rerund.esc(step.duration)}</td>`,
        ], { "data-position": step.position, "data-state": step.state })));
      },
      log(data) {
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.append(document.createTextNode(data.text));
        if (data.step) rerund.text("log-step", data.step);
        if (atBottom) log.scrollTop = log.scrollHeight;
      },
      end(_data, source) { source.close(); document.body.dataset.logComplete = "true"; },
    });
  },
};
