// One fine-tuning job, live: its status, the training and validation loss curves (from the job's `metrics`
// events: each step's `train_loss`, each epoch end's `valid_loss`, `retention`, `task_f1`), tokens/s and
// the ETA (`estimated_finish`), retention per epoch (those events, then `metrics.epoch_scores`), the
// checkpoints, the events newest first, and Cancel. Polled every 2 s until the job has ended; the events
// are fetched incrementally (`order=asc&after=<last id>`), so the chart gains points as the job trains.
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const ACTIVE = ["validating_files", "queued", "running"];
  const POLL_MS = 2000;
  const SHOWN_EVENTS = 300;
  const jobId = document.getElementById("job").dataset.jobId;
  const base = `/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}`;

  let job = null;
  const events = []; // oldest first
  let lastEventId = null;
  const steps = new Map(); // step -> {step, epoch, train_loss, tokens_per_second, total_steps}
  const epochEnds = new Map(); // epoch -> {epoch, step, valid_loss, retention, retention_interval, task_f1}
  let lastStep = null;
  let checkpoints = [];
  const fileNames = new Map(); // file id -> name (or the id when it is gone)
  let chart = null;
  let timer = null;
  let finalTick = false;

  const playground = (model) => `/?model=${encodeURIComponent(model)}`;
  const num = (x, digits = 4) => (typeof x === "number" ? fmt.num(x, digits) : "—");
  const share = (x) => (typeof x === "number" ? fmt.num(x, 2) : "—");
  const interval = (pair) => (Array.isArray(pair) ? `${fmt.num(pair[0], 2)}–${fmt.num(pair[1], 2)}` : "—");
  const nowSeconds = () => Date.now() / 1000;
  const timeOf = (seconds) => new Date(seconds * 1000).toLocaleTimeString(RT.lang === "zh" ? "zh-CN" : "en");

  /** Read one metrics event into the step and epoch tables. */
  function absorb(event) {
    const d = event.data || {};
    if (event.type !== "metrics") return;
    if (typeof d.train_loss === "number" && "total_steps" in d) {
      const point = { step: d.step, epoch: d.epoch, train_loss: d.train_loss, tokens_per_second: d.tokens_per_second, total_steps: d.total_steps };
      steps.set(d.step, point);
      lastStep = point; // events come oldest first: the latest step (a resumed job counts again from its checkpoint)
    } else if ("epoch" in d && "step" in d && !("train_loss" in d)) {
      epochEnds.set(d.epoch, { ...(epochEnds.get(d.epoch) || {}), ...d });
    }
  }

  async function fetchEvents() {
    for (;;) {
      const query = new URLSearchParams({ order: "asc", limit: "100" });
      if (lastEventId) query.set("after", lastEventId);
      const page = await api("GET", `${base}/events?${query}`);
      for (const event of page.data) {
        events.push(event);
        absorb(event);
      }
      if (page.data.length) lastEventId = page.last_id;
      if (!page.has_more || !page.data.length) return;
    }
  }

  async function fileName(id) {
    if (!id) return null;
    if (!fileNames.has(id)) {
      try {
        fileNames.set(id, (await api("GET", `/v1/files/${encodeURIComponent(id)}`)).filename);
      } catch {
        fileNames.set(id, id);
      }
    }
    return fileNames.get(id);
  }

  // ---- rendering ---------------------------------------------------------------------------------

  const card = (title, value, extra, id) =>
    el("div", { class: "card", id }, el("h3", { text: title }), el("div", { class: "value", text: value }), extra || null);

  /** The progress card: steps and epoch, or (before the first step) the phase, a sentence in smaller type. */
  function progressCard(text) {
    const node = card(t("ft.progress"), text, null, "card-progress");
    if (!lastStep) node.querySelector(".value").classList.add("ft-phase");
    return node;
  }

  /** What a job without a training step yet is doing, from its status and its latest setup event:
   * checking files, waiting, loading the model, or generating the base model's answers to the built-in
   * prompts (`data.stage` `<set>_answers`, finetune/recipe.py; minutes on a CPU, with no step to show). */
  function phase() {
    if (job.status === "validating_files") return t("ft.phase_validating");
    if (job.status === "queued") return t("ft.phase_queued");
    if (job.status !== "running") return "—";
    for (let i = events.length - 1; i >= 0; i -= 1) {
      const d = events[i].data || {};
      const since = fmt.duration(Math.max(0, nowSeconds() - events[i].created_at));
      if (typeof d.stage === "string" && d.stage.endsWith("_answers")) {
        const set = d.stage === "rehearsal_answers" ? "rehearsal" : "retention";
        return t(`ft.phase_${set}_answers`, { n: fmt.int(d.prompts), since });
      }
      if ("device" in d) return t("ft.phase_preparing", { since });
    }
    return t("ft.phase_loading");
  }

  function renderSummary(trainingName, validationName) {
    const active = ACTIVE.includes(job.status);
    const tuned = job.fine_tuned_model;
    const tunedCard = el(
      "div",
      { class: "card", id: "card-model" },
      el("h3", { text: t("ft.fine_tuned_model") }),
      el("div", { class: `value ft-model${tuned ? " mono" : " muted"}`, text: tuned || t("ft.not_yet") }),
      tuned ? el("div", { class: "ft-actions" }, el("a", { class: "button primary", id: "try", href: playground(tuned), text: t("ft.try_playground") })) : null,
    );
    const progress = lastStep
      ? `${t("ft.step_of", { step: fmt.int(lastStep.step), total: fmt.int(lastStep.total_steps) })} · ${t("ft.epoch_of", { epoch: lastStep.epoch, total: job.hyperparameters.n_epochs })}`
      : phase();
    let eta = "—";
    if (active && job.estimated_finish) {
      const left = Math.max(0, job.estimated_finish - nowSeconds());
      eta = t("ft.eta_value", { duration: fmt.duration(left), time: timeOf(job.estimated_finish) });
    } else if (job.finished_at) {
      eta = t("ft.took", { duration: fmt.duration(job.finished_at - job.created_at) });
    }
    const hp = job.hyperparameters;
    const settings = t("ft.settings_summary", {
      epochs: hp.n_epochs === "auto" ? t("ft.auto") : hp.n_epochs,
      batch: hp.batch_size === "auto" ? t("ft.auto") : hp.batch_size,
      lr: hp.learning_rate_multiplier === "auto" ? t("ft.auto") : hp.learning_rate_multiplier,
    });
    const filesValue = el(
      "div",
      { class: "small" },
      el("div", {}, `${t("ft.training_file")}: `, el("span", { class: "mono", text: trainingName || job.training_file })),
      job.validation_file ? el("div", {}, `${t("ft.validation")}: `, el("span", { class: "mono", text: validationName || job.validation_file })) : null,
    );
    document.getElementById("summary").replaceChildren(
      el("div", { class: "card", id: "card-base" }, el("h3", { text: t("ft.base_model") }), el("div", { class: "value ft-model mono", text: job.model })),
      tunedCard,
      progressCard(progress),
      card(t("ft.speed"), lastStep && typeof lastStep.tokens_per_second === "number" ? t("ft.tokens_per_s", { n: fmt.num(lastStep.tokens_per_second, 1) }) : "—", null, "card-speed"),
      card(job.finished_at ? t("ft.duration") : t("ft.eta"), eta, null, "card-eta"),
      card(t("ft.trained_tokens"), job.trained_tokens == null ? "—" : fmt.int(job.trained_tokens), null, "card-tokens"),
      card(t("common.created"), fmt.date(job.created_at), null, "card-created"),
      card(t("ft.hyperparameters"), settings, null, "card-settings"),
      el("div", { class: "card", id: "card-files" }, el("h3", { text: t("ft.files") }), filesValue),
    );
  }

  function renderHeader() {
    document.getElementById("job-status").replaceChildren(RT.badge(job.status));
    document.getElementById("cancel").hidden = !ACTIVE.includes(job.status);
    const failure = document.getElementById("job-failure");
    if (job.error) {
      const where = job.error.param && /^\d+$/.test(job.error.param) ? ` · ${t("ft.failed_line", { line: job.error.param })}` : "";
      failure.replaceChildren(
        el("div", { class: "alert", role: "alert", id: "failure" }, el("strong", { text: `${t("ft.failed")}: ` }), RT.explain("ft.code", job.error.code), el("span", { text: job.error.message }), " ", el("code", { text: `(${job.error.code})` }), where),
      );
    } else failure.replaceChildren();
    document.getElementById("updated").textContent = t("ft.updated", { time: timeOf(nowSeconds()) });
  }

  function chartPoints() {
    const train = [...steps.values()].sort((a, b) => a.step - b.step).map((p) => ({ x: p.step, y: p.train_loss }));
    const valid = [...epochEnds.values()]
      .filter((e) => typeof e.valid_loss === "number")
      .sort((a, b) => a.step - b.step)
      .map((e) => ({ x: e.step, y: e.valid_loss }));
    return { train, valid };
  }

  function renderChart() {
    const { train, valid } = chartPoints();
    document.getElementById("chart-empty").hidden = train.length > 0 || valid.length > 0;
    if (!chart) {
      Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
      chart = new Chart(document.getElementById("loss-chart"), {
        type: "line",
        data: {
          datasets: [
            { label: t("ft.train_loss"), data: [], borderColor: "#0b5cad", backgroundColor: "#0b5cad", borderWidth: 2, pointRadius: 2 },
            { label: t("ft.valid_loss"), data: [], borderColor: "#bc4c00", backgroundColor: "#bc4c00", borderWidth: 2, pointRadius: 4, pointStyle: "rectRot" },
          ],
        },
        options: {
          animation: false,
          parsing: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "nearest", intersect: false },
          scales: {
            x: { type: "linear", title: { display: true, text: t("ft.axis_step") }, ticks: { precision: 0 } },
            y: { title: { display: true, text: t("ft.axis_loss") } },
          },
          // a curve without points (no validation file) is left out of the legend
          plugins: { legend: { position: "bottom", labels: { filter: (item, data) => data.datasets[item.datasetIndex].data.length > 0 } } },
        },
      });
    }
    chart.data.datasets[0].data = train;
    chart.data.datasets[0].pointRadius = train.length > 150 ? 0 : 2;
    chart.data.datasets[1].data = valid;
    chart.update("none");
    if (document.getElementById("loss-numbers").open) renderLossTable();
  }

  /** The chart's text alternative: every step's training loss and each epoch end's validation loss. */
  function renderLossTable() {
    const rows = new Map();
    for (const p of steps.values()) rows.set(p.step, { step: p.step, epoch: p.epoch, train: p.train_loss });
    for (const e of epochEnds.values()) if (typeof e.valid_loss === "number") rows.set(e.step, { ...(rows.get(e.step) || { step: e.step, epoch: e.epoch }), valid: e.valid_loss });
    const sorted = [...rows.values()].sort((a, b) => a.step - b.step);
    document.querySelector("#loss-table tbody").replaceChildren(
      ...sorted.map((r) => el("tr", {}, el("td", { class: "num", text: fmt.int(r.step) }), el("td", { class: "num", text: r.epoch ?? "—" }), el("td", { class: "num", text: num(r.train) }), el("td", { class: "num", text: num(r.valid) }))),
    );
  }

  function renderEpochs() {
    const metrics = job.metrics || {};
    const rows = new Map();
    for (const e of epochEnds.values()) rows.set(e.epoch, { ...e });
    for (const s of metrics.epoch_scores || []) rows.set(s.epoch, { ...(rows.get(s.epoch) || {}), ...s });
    const chosen = metrics.chosen_epoch;
    const sorted = [...rows.values()].sort((a, b) => a.epoch - b.epoch);
    const body = document.querySelector("#epochs tbody");
    const unscored = job.training_config && job.training_config.eval_strategy === "no";
    if (!sorted.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "muted", text: t(unscored ? "ft.not_scored" : "ft.no_scores") })));
    } else {
      body.replaceChildren(
        ...sorted.map((r) =>
          el(
            "tr",
            { class: r.epoch === chosen ? "ft-published" : null, dataset: { epoch: String(r.epoch) } },
            el("td", {}, String(r.epoch), r.epoch === chosen ? [" ", el("span", { class: "badge badge-ok", text: t("ft.published") })] : null),
            el("td", { class: "num", text: share(r.retention) }),
            el("td", { class: "num", text: interval(r.retention_interval) }),
            el("td", { class: "num", text: typeof r.task_f1 === "number" ? fmt.num(r.task_f1, 3) : "—" }),
            el("td", { class: "num", text: num(r.valid_loss) }),
          ),
        ),
      );
    }
    const notes = [];
    if (unscored && sorted.length) notes.push(el("p", { class: "small muted", text: t("ft.not_scored") }));
    if (chosen != null && metrics.chosen_reason) notes.push(el("p", { class: "notice small", text: t("ft.chosen", { epoch: chosen, reason: metrics.chosen_reason }) }));
    if (metrics.beats_base === false) notes.push(el("p", { class: "notice small level-warning", text: t("ft.no_gain") }));
    document.getElementById("chosen").replaceChildren(...notes);
  }

  function renderCheckpoints() {
    const body = document.querySelector("#checkpoints tbody");
    if (!checkpoints.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "muted", text: t("ft.no_checkpoints") })));
      return;
    }
    const servable = job.status === "succeeded";
    body.replaceChildren(
      ...[...checkpoints]
        .sort((a, b) => a.step_number - b.step_number)
        .map((c) => {
          const m = c.metrics || {};
          const name = c.fine_tuned_model_checkpoint;
          return el(
            "tr",
            {},
            el("td", { class: "num", text: fmt.int(c.step_number) }),
            el("td", { class: "num", text: m.epoch ?? "—" }),
            el("td", { class: "num", text: num(m.train_loss) }),
            el("td", { class: "num", text: num(m.valid_loss) }),
            el("td", { class: "num", text: share(m.retention) }),
            el("td", {}, el("span", { class: "mono", text: name }), servable ? [" ", el("a", { href: playground(name), text: t("ft.try") })] : null),
          );
        }),
    );
  }

  function renderEvents() {
    const newest = events.slice(-SHOWN_EVENTS).reverse();
    document.querySelector("#events tbody").replaceChildren(
      ...(newest.length
        ? newest.map((e) =>
            el("tr", { class: `level-${e.level}` }, el("td", { class: "small num", text: fmt.date(e.created_at) }), el("td", { class: "small num", text: t(`common.level.${e.level}`) }), el("td", { class: "ft-message", text: e.message })),
          )
        : [el("tr", {}, el("td", { colspan: "3", class: "muted", text: t("ft.no_events") }))]),
    );
    document.getElementById("events-note").textContent = events.length ? t("ft.events_newest", { n: fmt.int(newest.length), total: fmt.int(events.length) }) : "";
  }

  function renderConfig() {
    const config = job.training_config || {};
    document.querySelector("#config tbody").replaceChildren(
      ...Object.entries(config).map(([key, value]) =>
        el("tr", {}, el("td", { class: "mono", text: key }), el("td", { class: "mono", text: typeof value === "string" ? value : JSON.stringify(value) })),
      ),
    );
  }

  // ---- polling -----------------------------------------------------------------------------------

  async function tick() {
    timer = null;
    const error = document.getElementById("job-error");
    try {
      const [current, , page] = await Promise.all([api("GET", base), fetchEvents(), api("GET", `${base}/checkpoints?limit=100`)]);
      job = current;
      checkpoints = page.data;
      const [trainingName, validationName] = await Promise.all([fileName(job.training_file), fileName(job.validation_file)]);
      error.replaceChildren();
      renderHeader();
      renderSummary(trainingName, validationName);
      renderChart();
      renderEpochs();
      renderCheckpoints();
      renderEvents();
      renderConfig();
    } catch (err) {
      if (err.status === 404) {
        error.replaceChildren(el("p", { class: "alert", role: "alert", text: t("ft.not_found") }));
        document.getElementById("job-body").hidden = true; // no curves, tables or events to show
        return; // nothing more to poll
      }
      RT.showError(error, err);
    }
    // A job that has just ended still gets its last events (the scheduler writes them after the status):
    // one more poll, then none.
    if (job && !ACTIVE.includes(job.status)) {
      if (finalTick) return;
      finalTick = true;
    }
    timer = setTimeout(tick, POLL_MS);
  }

  async function cancel() {
    if (!window.confirm(t("ft.confirm_cancel"))) return;
    const button = document.getElementById("cancel");
    const error = document.getElementById("job-error");
    button.disabled = true;
    button.textContent = t("ft.cancelling");
    try {
      await api("POST", `${base}/cancel`);
    } catch (err) {
      RT.showError(error, err);
    }
    button.disabled = false;
    button.textContent = t("ft.cancel_job");
    if (timer) {
      // else a poll is under way, and it schedules the next
      clearTimeout(timer);
      await tick();
    }
    document.getElementById("job-status").setAttribute("tabindex", "-1");
    document.getElementById("job-status").focus();
  }

  document.getElementById("cancel").addEventListener("click", cancel);
  document.getElementById("loss-numbers").addEventListener("toggle", (event) => {
    if (event.target.open) renderLossTable();
  });
  tick();
})();
