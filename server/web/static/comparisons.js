// Comparisons page: start a comparison (an eval file uploaded here or chosen, and the four standard arms or
// chosen models and profiles), the list of comparisons with their progress (polled while one runs), and
// the arena's leaderboard (leaderboard.js). Everything comes from the public API; every name is written as text.
"use strict";
(() => {
  const { t, api, el, fmt, cell } = RT;
  const $ = (id) => document.getElementById(id);
  const ARM_NAME_MAX = 64; // CreateComparison's arm name limit
  let polling = null;


  const isActive = (status) => status === "queued" || status === "running";

  // ---- the start form ---------------------------------------------------------------------------

  function showParts() {
    const upload = $("src-upload").checked;
    $("upload-part").hidden = !upload;
    $("existing-part").hidden = upload;
    const chosen = $("arms-chosen").checked;
    $("chosen-part").hidden = !chosen;
    $("default-part").hidden = chosen;
  }

  function fillFiles(files) {
    const select = $("eval-existing");
    const current = select.value;
    select.replaceChildren(
      ...(files.length
        ? files.map((f) => el("option", { value: f.id, text: `${f.filename} · ${fmt.date(f.created_at)}` }))
        : [el("option", { value: "", text: t("compare.no_files") })]),
    );
    if (files.some((f) => f.id === current)) select.value = current;
  }

  function kindOf(model) {
    if (model.kind === "profile") return t("compare.kind_profile");
    return model.parent ? t("compare.kind_adapter") : t("compare.kind_base");
  }

  function fillArms(models, stores) {
    const chat = models.filter((m) => m.kind === "chat" || m.kind === "profile");
    const checked = new Set([...document.querySelectorAll("#arm-boxes input:checked")].map((box) => box.value));
    const fresh = !document.querySelector("#arm-boxes input");
    $("arm-boxes").replaceChildren(
      ...chat.map((model, i) =>
        el(
          "div",
          { class: "cmp-box" },
          el("input", {
            type: "checkbox",
            id: `arm-${i}`,
            value: model.id,
            checked: fresh ? model.kind === "chat" && !model.parent : checked.has(model.id),
          }),
          el("label", { for: `arm-${i}` }, el("span", { class: "cmp-arm-name", text: model.id }), " ", el("span", { class: "muted small", text: kindOf(model) })),
        ),
      ),
    );
    const adapters = chat.filter((m) => m.kind === "chat" && m.parent);
    const keep = (select, options) => {
      const current = select.value;
      select.replaceChildren(...options);
      if ([...select.options].some((o) => o.value === current)) select.value = current;
    };
    keep($("default-kb"), stores.map((s) => el("option", { value: s.id, text: s.name ? `${s.name} (${s.id})` : s.id })));
    keep($("default-ft"), adapters.map((m) => el("option", { value: m.id, text: m.id })));
    const possible = stores.length > 0 && adapters.length > 0;
    $("arms-default").disabled = !possible;
    $("defaults-unavailable").hidden = possible;
    $("default-kb").disabled = $("default-ft").disabled = $("max-results").disabled = !possible;
    if (!possible && $("arms-default").checked) $("arms-chosen").checked = true;
    showParts();
  }

  /** An arm for a model id: the id itself, or {name, model} when the id is longer than a name may be. */
  const armFor = (id) => (id.length <= ARM_NAME_MAX ? id : { name: `…${id.slice(-(ARM_NAME_MAX - 1))}`, model: id });

  async function start(event) {
    event.preventDefault();
    const error = $("start-error");
    const status = $("start-status");
    const button = $("start-button");
    error.replaceChildren();
    const fail = (message) => error.replaceChildren(el("p", { class: "alert", role: "alert", text: message }));

    const upload = $("src-upload").checked;
    const file = $("eval-upload").files[0];
    if ((upload && !file) || (!upload && !$("eval-existing").value)) return fail(t("compare.need_file"));
    const body = { max_tokens: Number($("max-tokens").value) || 128 };
    if ($("arms-chosen").checked) {
      const ids = [...document.querySelectorAll("#arm-boxes input:checked")].map((box) => box.value);
      if (!ids.length) return fail(t("compare.need_arm"));
      body.arms = ids.map(armFor);
    } else {
      body.vector_store_id = $("default-kb").value;
      body.fine_tuned_model = $("default-ft").value;
      body.max_num_results = Number($("max-results").value) || 4;
    }

    button.disabled = true;
    try {
      if (upload) {
        status.textContent = t("compare.uploading", { name: file.name });
        const form = new FormData();
        form.append("purpose", "evals");
        form.append("file", file);
        body.eval_file_id = (await api("POST", "/v1/files", form)).id;
      } else {
        body.eval_file_id = $("eval-existing").value;
      }
      status.textContent = t("compare.starting");
      const comparison = await api("POST", "/v1/comparisons", body);
      $("eval-upload").value = "";
      $("eval-upload").dispatchEvent(new Event("change")); // the picker says "no file" again
      $("cmp-notice").replaceChildren(
        el("p", { class: "notice" }, el("a", { href: `/comparisons/${encodeURIComponent(comparison.id)}`, text: t("compare.started", { id: comparison.id }) })),
      );
      await refresh();
    } catch (err) {
      RT.showError(error, err);
      if (upload && body.eval_file_id) refreshFiles(); // the upload worked: it can be picked next time
    } finally {
      status.textContent = "";
      button.disabled = false;
    }
  }

  async function refreshFiles() {
    try {
      fillFiles((await api("GET", "/v1/files?purpose=evals")).data);
    } catch {
      /* the list is refreshed with the page */
    }
  }

  // ---- the list and the leaderboard ------------------------------------------------------------

  function progressCell(comparison) {
    const { done, total } = comparison.progress;
    const text = t("compare.progress_text", { done, total });
    return cell(
      $("comparisons"),
      4,
      { class: "cmp-progress" },
      el("progress", { max: String(Math.max(total, 1)), value: String(comparison.status === "completed" ? Math.max(total, 1) : done), "aria-label": text }),
      el("span", { class: "small muted", text }),
    );
  }

  function comparisonRow(c) {
    const table = $("comparisons");
    const link = `/comparisons/${encodeURIComponent(c.id)}`;
    let report = el("span", { class: "muted", text: "—" });
    if (c.status === "completed") report = el("a", { href: link, text: t("compare.report") });
    else if (c.status === "failed" && c.error) report = el("span", { class: "small", text: c.error.message });
    return el(
      "tr",
      { dataset: { id: c.id } },
      cell(table, 0, {}, el("a", { class: "mono", href: link, text: c.id })),
      cell(table, 1, { text: fmt.date(c.created_at) }),
      cell(table, 2, { text: c.arms.map((a) => a.name).join(", ") }),
      cell(table, 3, {}, RT.badge(c.status)),
      progressCell(c),
      cell(table, 5, {}, report),
    );
  }

  function fillComparisons(list) {
    $("comparisons").tBodies[0].replaceChildren(
      ...(list.length ? list.map(comparisonRow) : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: t("compare.none") }))]),
    );
  }

  async function refreshList() {
    try {
      const list = await api("GET", "/v1/comparisons");
      $("list-error").replaceChildren();
      fillComparisons(list.data);
      schedule(list.data.some((c) => isActive(c.status)));
    } catch (err) {
      RT.showError($("list-error"), err);
    }
  }

  function schedule(active) {
    if (active && !polling) polling = setInterval(refreshList, 1500);
    if (!active && polling) {
      clearInterval(polling);
      polling = null;
    }
  }

  async function refresh() {
    const [models, files, stores] = await Promise.allSettled([
      api("GET", "/v1/models"),
      api("GET", "/v1/files?purpose=evals"),
      RT.listAll("/v1/vector_stores"),
      Leaderboard.refresh(),
    ]);
    if (files.status === "fulfilled") fillFiles(files.value.data);
    if (models.status === "fulfilled") fillArms(models.value.data, stores.status === "fulfilled" ? stores.value : []);
    else RT.showError($("start-error"), models.reason);
    await refreshList();
  }

  for (const id of ["src-upload", "src-existing", "arms-chosen", "arms-default"]) $(id).addEventListener("change", showParts);
  $("start-form").addEventListener("submit", start);
  showParts();
  refresh();
})();
