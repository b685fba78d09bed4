// Fine-tuning jobs page: the jobs list (GET /v1/fine_tuning/jobs), a training file uploaded as soon as it
// is chosen (POST /v1/files, purpose fine-tune) and checked by the server (POST /v1/fine_tuning/validate
// with the form's model and settings), and the form that creates a job (POST /v1/fine_tuning/jobs) with
// OpenAI's hyper-parameters and the lora / training extensions, each empty field meaning the default it
// shows.
//
// The check is the server's own, the one a job runs before it queues (the model's tokenizer, the file's
// encoding, `max_length`), so the page shows what the job will find: examples, tokens, examples that will
// be cut, or the error and its line. A file that fails it, or whose check cannot run, is deleted again
// (DELETE /v1/files/{id}) and the start button stays disabled until another file is chosen; a file that
// passes is selected as the job's training file, so starting the job uploads nothing more.
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const ACTIVE = ["validating_files", "queued", "running"];
  const SHOWN_LINES = 10; // line numbers a note lists before "…"
  const MAX_ERRORS = 50; // invalid records the server lists at most (MAX_REPORTED_ERRORS)

  // ---- the training file: uploaded, then checked by the server ----------------------------------

  let choice = 0; // the latest file choice: an earlier choice's late answer is dropped
  let checking = false;
  let blocked = false; // the chosen file is being checked or failed its check: no job starts

  function block(value) {
    blocked = value;
    document.getElementById("start").disabled = value;
    // say why the button is off: a file is being checked, or the chosen one failed its check
    document.getElementById("start-status").textContent = value ? t(checking ? "ft.start_checking" : "ft.start_blocked") : "";
  }

  /** "line 3" or "lines 3, 5, …" (the first SHOWN_LINES). */
  function atLines(lines) {
    if (lines.length === 1) return t("ft.check.at_line", { line: lines[0] });
    return t("ft.check.at_lines", { lines: lines.slice(0, SHOWN_LINES).join(", ") + (lines.length > SHOWN_LINES ? " …" : "") });
  }

  function errorItem(error) {
    const where = error.line == null ? t("ft.check.whole_file") : t("ft.report.line", { line: error.line });
    const file = error.param === "validation_file" ? `${t("ft.validation")} · ` : "";
    return el(
      "li",
      { dataset: { line: error.line == null ? "" : String(error.line), param: error.param } },
      el("strong", { text: file + where }),
      " ",
      el("code", { text: error.code }),
      " ",
      RT.explain("ft.code", error.code),
      el("span", { text: error.message }),
    );
  }

  /** The server's findings (`fine_tuning.validation`): counts, what the job will do to the data, errors. */
  function renderCheck(file, result) {
    const stat = (label, value) => el("div", { class: "ft-stat" }, el("div", { class: "small muted", text: label }), el("div", { class: "ft-stat-value", text: value }));
    const parts = [el("h4", { text: t("ft.report_title", { name: file.name }) })];
    if (result.examples) {
      const plan = result.hyperparameters;
      parts.push(
        el(
          "div",
          { class: "ft-stats", id: "check-stats" },
          stat(t("ft.check.examples"), fmt.int(result.examples)),
          stat(t("ft.check.tokens"), fmt.int(result.tokens)),
          stat(t("ft.check.trained_tokens"), fmt.int(result.trained_tokens)),
          stat(t("ft.check.longest"), t("ft.check.n_tokens", { n: fmt.int(result.longest) })),
          stat(t("ft.check.truncated", { max: fmt.int(result.max_length) }), fmt.int(result.truncated)),
          plan ? stat(t("ft.check.plan"), t("ft.settings_summary", { epochs: plan.n_epochs, batch: plan.batch_size, lr: plan.learning_rate_multiplier })) : null,
        ),
      );
    }
    const notes = [];
    if (result.encoding && !result.encoding.startsWith("utf-8")) notes.push(["check-encoding", t("ft.check.encoding", { encoding: result.encoding })]);
    if (result.truncated) {
      notes.push(["check-truncated", t("ft.check.truncated_note", { n: fmt.int(result.truncated), max: fmt.int(result.max_length), where: atLines(result.truncated_lines) })]);
    }
    if (result.valid && result.empty_lines.length) {
      notes.push(["check-empty", t("ft.check.empty_note", { n: fmt.int(result.empty_lines.length), max: fmt.int(result.max_length), where: atLines(result.empty_lines) })]);
    }
    for (const [id, text] of notes) parts.push(el("p", { class: "notice small ft-warning", id, text }));
    if (result.valid) parts.push(el("p", { class: "ft-ok", text: t("ft.check.ok") }));
    else {
      parts.push(
        el("p", { class: "alert", role: "alert", text: t("ft.check.bad") }),
        el("h5", { text: t("ft.report.errors") }),
        el("ul", { class: "ft-errors", id: "report-errors" }, result.errors.map(errorItem)),
      );
      if (result.errors.length >= MAX_ERRORS) parts.push(el("p", { class: "small muted", text: t("ft.check.more", { n: result.errors.length }) }));
    }
    document.getElementById("report").replaceChildren(el("div", { class: "ft-report" }, parts));
  }

  /** Delete an upload that will not be used; a failure leaves it listed, nothing worse. */
  async function discard(fileId) {
    try {
      await api("DELETE", `/v1/files/${encodeURIComponent(fileId)}`);
    } catch {
      // it stays in the list of files, where it can be deleted later
    }
  }

  /** What the check needs of the form: the model and every setting that changes what a job finds. */
  function checkBody(fileId) {
    const { model, validation_file, method, training } = requestBody();
    return { model, training_file: fileId, validation_file, method, training };
  }

  async function onChoose() {
    const file = document.getElementById("train-file").files[0];
    const box = document.getElementById("report");
    const status = document.getElementById("upload-status");
    const mine = ++choice;
    const current = () => mine === choice;
    box.replaceChildren();
    status.replaceChildren();
    clearInvalid();
    checking = Boolean(file);
    block(checking);
    if (!file) return;
    let uploaded = null;
    try {
      status.replaceChildren(el("span", { class: "muted", text: t("ft.uploading") }));
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", file, file.name);
      uploaded = await api("POST", "/v1/files", form);
      if (current()) status.replaceChildren(el("span", { class: "muted", text: t("ft.checking") }));
      const result = current() ? await api("POST", "/v1/fine_tuning/validate", checkBody(uploaded.id)) : null;
      if (!current()) {
        await discard(uploaded.id); // another file was chosen meanwhile
        return;
      }
      renderCheck(file, result);
      if (!result.valid) {
        await discard(uploaded.id);
        status.replaceChildren(el("span", { class: "muted", text: t("ft.check.deleted") }));
        return;
      }
      status.replaceChildren(el("span", { class: "ft-ok", text: t("ft.uploaded", { id: uploaded.id }) }));
      await loadFiles(uploaded.id);
      block(false);
    } catch (err) {
      // the upload was refused (type, size) or the check could not run (a setting of the form)
      if (uploaded) await discard(uploaded.id);
      if (!current()) return;
      status.replaceChildren();
      RT.showError(box, err);
      if (uploaded) box.append(el("p", { class: "small muted", text: t("ft.check.not_run") }));
      markInvalid(err.param, false);
    } finally {
      if (current()) {
        checking = false;
        if (blocked) block(true); // now says the check failed
      }
    }
  }

  // ---- the job form ------------------------------------------------------------------------------

  let files = [];

  function fileOption(file) {
    // the upload time tells two uploads of one name apart
    return el("option", { value: file.id, text: `${file.filename} (${fmt.bytes(file.bytes)} · ${fmt.date(file.created_at)})` });
  }

  /** Under a file choice: the chosen file's id and upload time (names may repeat). */
  function describeChoice(select, help, fallback) {
    const file = files.find((f) => f.id === select.value);
    help.textContent = file ? t("ft.file_created", { id: file.id, date: fmt.date(file.created_at) }) : fallback;
  }

  function describeFiles() {
    describeChoice(document.getElementById("f-training-file"), document.getElementById("f-training-file-help"), files.length ? "" : t("ft.no_files"));
    describeChoice(document.getElementById("f-validation-file"), document.getElementById("f-validation-file-choice"), "");
  }

  async function loadFiles(select) {
    const list = await api("GET", "/v1/files?purpose=fine-tune&limit=1000");
    files = list.data; // newest first
    const training = document.getElementById("f-training-file");
    const validation = document.getElementById("f-validation-file");
    const keepTraining = select || training.value;
    const keepValidation = validation.value;
    training.replaceChildren(...files.map(fileOption));
    validation.replaceChildren(el("option", { value: "", text: t("ft.validation_none") }), ...files.map(fileOption));
    if (keepTraining && files.some((f) => f.id === keepTraining)) training.value = keepTraining;
    if (keepValidation && files.some((f) => f.id === keepValidation)) validation.value = keepValidation;
    describeFiles();
  }

  async function loadModels() {
    const models = await api("GET", "/v1/models");
    const base = models.data.filter((m) => (m.kind || "chat") === "chat" && !m.parent);
    document.getElementById("f-model").replaceChildren(...base.map((m) => el("option", { value: m.id, text: m.id })));
  }

  /** The request body: only what the user set; an empty field is the default its help names. */
  function requestBody() {
    const value = (id) => document.getElementById(id).value.trim();
    const body = { model: value("f-model"), training_file: value("f-training-file") };
    if (value("f-validation-file")) body.validation_file = value("f-validation-file");
    if (value("f-suffix")) body.suffix = value("f-suffix");
    if (value("f-seed")) body.seed = Number(value("f-seed"));
    const objects = { hyperparameters: {}, lora: {}, training: {} };
    for (const input of document.querySelectorAll("#job-form [data-obj]")) {
      const { obj, key, kind } = input.dataset;
      if (kind === "bool") {
        if (input.checked !== (input.dataset.default === "true")) objects[obj][key] = input.checked;
      } else if (kind === "select") {
        if (input.value !== input.dataset.default) objects[obj][key] = input.value;
      } else if (input.value.trim() !== "") {
        objects[obj][key] = kind === "int" ? parseInt(input.value, 10) : Number(input.value);
      }
    }
    const boxes = [...document.querySelectorAll("#target-modules input[type=checkbox]")];
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    if (chosen.length !== boxes.length) objects.lora.target_modules = chosen;
    if (Object.keys(objects.hyperparameters).length) body.method = { type: "supervised", supervised: { hyperparameters: objects.hyperparameters } };
    if (Object.keys(objects.lora).length) body.lora = objects.lora;
    if (Object.keys(objects.training).length) body.training = objects.training;
    return body;
  }

  /** The form control an API error's `param` names (e.g. method.supervised.hyperparameters.n_epochs). */
  function controlFor(param) {
    if (!param) return null;
    const controls = [...document.querySelectorAll("#job-form [data-param]")];
    const match = controls.find((c) => param === c.dataset.param || param.endsWith(`.${c.dataset.param}`) || param.startsWith(`${c.dataset.param}[`));
    return match || null;
  }

  function clearInvalid() {
    document.querySelectorAll("#job-form [aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
  }

  /** Mark the control `param` names, its section opened; `focus` moves the focus there. */
  function markInvalid(param, focus) {
    const control = controlFor(param);
    if (!control) return;
    control.setAttribute("aria-invalid", "true");
    const details = control.closest("details");
    if (details) details.open = true;
    if (focus) (control.matches("fieldset") ? control.querySelector("input") : control).focus();
  }

  async function onStart(event) {
    event.preventDefault();
    if (blocked) return;
    const error = document.getElementById("job-error");
    const status = document.getElementById("start-status");
    const button = document.getElementById("start");
    error.replaceChildren();
    clearInvalid();
    button.disabled = true;
    status.textContent = t("ft.starting");
    try {
      const job = await api("POST", "/v1/fine_tuning/jobs", requestBody());
      location.href = `/fine-tuning/${encodeURIComponent(job.id)}`;
    } catch (err) {
      status.textContent = "";
      button.disabled = blocked;
      RT.showError(error, err);
      markInvalid(err.param, true);
    }
  }

  /** Choosing a listed training file by hand sets aside a failed check of a chosen one. */
  function onTrainingFile() {
    describeFiles();
    if (!checking) block(false);
  }

  // ---- the jobs list -----------------------------------------------------------------------------

  let jobs = [];
  let hasMore = false;

  /** A cell, its content in one block: on a phone the cell shows its column's name (`data-label`) before it. */
  const cell = (label, ...children) => el("td", { dataset: { label } }, el("div", {}, ...children));

  function jobRow(job) {
    const link = el("a", { href: `/fine-tuning/${encodeURIComponent(job.id)}`, class: "mono", text: job.id });
    const tuned = job.fine_tuned_model
      ? el("span", {}, el("span", { class: "mono", text: job.fine_tuned_model }), " ", el("a", { href: `/?model=${encodeURIComponent(job.fine_tuned_model)}`, text: t("ft.try") }))
      : el("span", { class: "muted", text: "—" });
    return el(
      "tr",
      { dataset: { id: job.id } },
      cell(t("ft.col.id"), link, job.suffix ? el("div", { class: "small muted", text: job.suffix }) : null),
      cell(t("ft.col.model"), job.model),
      cell(t("common.status"), RT.badge(job.status)),
      cell(t("common.created"), fmt.date(job.created_at)),
      cell(t("ft.col.fine_tuned_model"), tuned),
    );
  }

  let shown = null; // what the table shows: redrawn only when it changes (a focused link stays focused)

  function renderJobs() {
    const signature = JSON.stringify([hasMore, jobs.map((j) => [j.id, j.status, j.fine_tuned_model])]);
    if (signature === shown) return;
    shown = signature;
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren(...(jobs.length ? jobs.map(jobRow) : [el("tr", {}, el("td", { colspan: "5", class: "muted", text: t("ft.no_jobs") }))]));
    document.getElementById("more").hidden = !hasMore;
  }

  async function loadJobs(more) {
    const after = more && jobs.length ? `&after=${encodeURIComponent(jobs[jobs.length - 1].id)}` : "";
    const page = await api("GET", `/v1/fine_tuning/jobs?limit=50${after}`);
    if (more || jobs.length <= page.data.length) {
      jobs = more ? jobs.concat(page.data) : page.data;
      hasMore = page.has_more;
    } else {
      // a refresh replaces the first page and keeps the pages loaded after it
      const ids = new Set(page.data.map((j) => j.id));
      jobs = page.data.concat(jobs.filter((j) => !ids.has(j.id))); // the others are older than this page
    }
    renderJobs();
  }

  async function refreshActive() {
    if (!jobs.some((job) => ACTIVE.includes(job.status))) return;
    try {
      await loadJobs(false);
    } catch {
      // the next refresh tries again; the list stays as it was
    }
  }

  async function start() {
    const error = document.getElementById("page-error");
    document.getElementById("train-file").addEventListener("change", onChoose);
    document.getElementById("job-form").addEventListener("submit", onStart);
    document.getElementById("f-training-file").addEventListener("change", onTrainingFile);
    document.getElementById("f-validation-file").addEventListener("change", describeFiles);
    document.getElementById("more").addEventListener("click", () => loadJobs(true).catch((err) => RT.showError(error, err)));
    try {
      await Promise.all([loadJobs(false), loadFiles(), loadModels()]);
    } catch (err) {
      RT.showError(error, err);
    }
    setInterval(refreshActive, 5000);
  }

  start();
})();
