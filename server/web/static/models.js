// Models and profiles page: the base model, fine-tuned adapters (with their job's training settings and
// results), embedding models and profiles from the public API; a form creates a profile or edits one.
// The profiles API has no update: editing deletes the profile and creates it again (put back if the new
// one is refused). Names, prompts and descriptions are user data: written as text only.
"use strict";
(() => {
  const { t, api, el, fmt, cell } = RT;
  const $ = (id) => document.getElementById(id);
  const CHECKPOINT = /^(.*):ckpt-step-(\d+)$/;
  const PROFILE_FIELDS = ["name", "model", "file_search", "system", "temperature", "top_p", "max_tokens", "description"];
  const SETTINGS = ["n_epochs", "batch_size", "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "max_length", "min_retention", "seed"];
  const RESULTS = ["train_loss", "valid_loss", "retention", "task_f1", "base_task_f1", "chosen_epoch"];
  let state = { models: [], jobs: [], stores: [], profiles: [] };
  let editing = null; // the profile being edited, or null for a new one

  const notice = (text) => $("models-notice").replaceChildren(el("p", { class: "notice", role: "status", text }));
  const storeName = (id) => {
    const store = state.stores.find((s) => s.id === id);
    return store && store.name ? store.name : id;
  };

  /** The fine-tuning job that made `modelId` (an adapter, or a checkpoint of one), if this server has it. */
  function jobOf(modelId) {
    const match = modelId.match(CHECKPOINT);
    const adapter = match ? match[1] : modelId;
    return state.jobs.find((job) => job.fine_tuned_model === adapter) || null;
  }


  const jobLink = (job) => el("a", { href: `/fine-tuning/${encodeURIComponent(job.id)}`, text: t("models.job_link", { id: job.id }) });

  function value(x) {
    if (x == null) return "—";
    if (typeof x === "number") return Number.isInteger(x) ? fmt.int(x) : String(Number(x.toPrecision(4)));
    if (typeof x === "object") return JSON.stringify(x);
    return String(x);
  }

  // ---- models -----------------------------------------------------------------------------------

  function fillChatModels() {
    const chat = state.models.filter((m) => m.kind === "chat");
    $("chat-models").tBodies[0].replaceChildren(
      ...chat.map((model) => {
        const checkpoint = model.id.match(CHECKPOINT);
        const type = !model.parent ? t("models.type_base") : checkpoint ? t("models.type_checkpoint", { n: checkpoint[2] }) : t("models.type_adapter");
        const job = model.parent ? jobOf(model.id) : null;
        const table = $("chat-models");
        return el(
          "tr",
          { dataset: { model: model.id } },
          cell(table, 0, { class: "mono", text: model.id }),
          cell(table, 1, { text: type }),
          cell(table, 2, { class: "mono", text: model.parent || "—" }),
          cell(table, 3, {}, job ? jobLink(job) : model.parent ? el("span", { class: "muted small", text: t("models.no_job") }) : "—"),
          cell(table, 4, { text: fmt.date(model.created) }),
        );
      }),
    );
  }

  function definitionList(entries) {
    return el("dl", { class: "mdl-dl" }, ...entries.flatMap(([term, text]) => [el("dt", { text: term }), el("dd", { text })]));
  }

  function results(job) {
    const metrics = job.metrics || {};
    const entries = RESULTS.filter((key) => metrics[key] != null).map((key) => {
      let text = value(metrics[key]);
      if (key === "retention" && Array.isArray(metrics.retention_interval)) text += ` [${metrics.retention_interval.map(value).join(", ")}]`;
      return [t(`models.metric.${key}`), text];
    });
    if (job.trained_tokens != null) entries.push([t("models.metric.trained_tokens"), fmt.int(job.trained_tokens)]);
    return entries.length ? definitionList(entries) : el("p", { class: "muted small", text: t("models.no_results") });
  }

  function adapterCard(model) {
    const job = jobOf(model.id);
    const checkpoints = state.models.filter((m) => (m.id.match(CHECKPOINT) || [])[1] === model.id).map((m) => m.id);
    const config = job ? job.training_config || {} : {};
    return el(
      "article",
      { class: "card mdl-adapter", dataset: { model: model.id } },
      el("h3", { class: "mono", text: model.id }),
      el("p", { class: "small" }, `${t("models.based_on")}: `, el("span", { class: "mono", text: model.parent }), " · ", job ? jobLink(job) : el("span", { class: "muted", text: t("models.no_job") })),
      job
        ? el(
            "div",
            { class: "mdl-columns" },
            el("section", {}, el("h4", { text: t("models.results") }), results(job)),
            el("section", {}, el("h4", { text: t("models.settings") }), definitionList(SETTINGS.filter((key) => config[key] != null).map((key) => [t(`models.config.${key}`), value(config[key])]))),
          )
        : null,
      job
        ? el(
            "details",
            {},
            el("summary", { text: t("models.all_settings") }),
            el("div", { class: "table-wrap" }, el("table", { class: "small" }, el("tbody", {}, ...Object.entries(config).map(([key, v]) => el("tr", {}, el("th", { scope: "row", class: "mono", text: key }), el("td", { class: "mono", text: value(v) })))))),
          )
        : null,
      checkpoints.length ? el("p", { class: "muted small mono", text: t("models.checkpoints", { names: checkpoints.join(", ") }) }) : null,
    );
  }

  function fillAdapters() {
    const adapters = state.models.filter((m) => m.kind === "chat" && m.parent && !CHECKPOINT.test(m.id));
    $("adapters").replaceChildren(
      ...(adapters.length
        ? adapters.map(adapterCard)
        : [el("p", { class: "muted" }, `${t("models.no_adapters")} `, el("a", { href: "/fine-tuning", text: t("models.go_train") }))]),
    );
  }

  function fillEmbedders() {
    const embedders = state.models.filter((m) => m.kind === "embedding");
    $("embedders").replaceChildren(
      ...(embedders.length ? embedders.map((m) => el("li", { class: "mono", text: m.id })) : [el("li", { class: "muted", text: t("common.none") })]),
    );
  }

  // ---- profiles ---------------------------------------------------------------------------------

  function samplingText(p) {
    const parts = [];
    if (p.temperature != null) parts.push(t("models.temperature_value", { t: p.temperature }));
    if (p.top_p != null) parts.push(t("models.top_p_value", { p: p.top_p }));
    if (p.max_tokens != null) parts.push(t("models.max_tokens_value", { n: p.max_tokens }));
    return parts.length ? parts.join(" · ") : t("models.defaults");
  }

  function promptCell(table, system) {
    if (!system) return cell(table, 2, { class: "muted", text: t("models.none") });
    if (system.length <= 160) return cell(table, 2, {}, el("div", { class: "mdl-prompt", text: system }));
    const short = `${system.slice(0, 120)}…`;
    const text = el("div", { class: "mdl-prompt", text: short });
    const toggle = el("button", { type: "button", class: "mdl-more", "aria-expanded": "false", text: t("models.show_all") });
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      text.textContent = open ? system : short;
      toggle.textContent = open ? t("models.show_less") : t("models.show_all");
      toggle.setAttribute("aria-expanded", String(open));
    });
    return cell(table, 2, {}, text, toggle);
  }

  function fillProfiles() {
    const table = $("profiles");
    table.tBodies[0].replaceChildren(
      ...(state.profiles.length
        ? state.profiles.map((p) =>
            el(
              "tr",
              { dataset: { profile: p.name } },
              cell(table, 0, { class: "mono", text: p.name }),
              cell(table, 1, { class: "mono", text: p.model }),
              promptCell(table, p.system),
              cell(table, 3, { text: p.file_search ? p.file_search.vector_store_ids.map(storeName).join(", ") : t("models.none") }),
              cell(table, 4, { text: samplingText(p) }),
              cell(table, 5, { text: p.description || "—" }),
              cell(
                table,
                6,
                { class: "mdl-actions" },
                el("button", { type: "button", class: "edit", "aria-label": t("models.edit_named", { name: p.name }), onclick: () => startEdit(p) }, t("models.edit")),
                el("button", { type: "button", class: "danger delete", "aria-label": t("models.delete_named", { name: p.name }), onclick: () => remove(p) }, t("common.delete")),
              ),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "7", class: "muted", text: t("models.no_profiles") }))]),
    );
  }

  function fillFormChoices() {
    const select = $("p-model");
    const current = select.value;
    const ids = state.models.filter((m) => m.kind === "chat").map((m) => m.id);
    if (editing && !ids.includes(editing.model)) ids.push(editing.model);
    select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
    if (ids.includes(current)) select.value = current;
    const checked = new Set([...document.querySelectorAll("#p-kbs input:checked")].map((box) => box.value));
    $("p-kbs").replaceChildren(
      ...(state.stores.length
        ? state.stores.map((s, i) =>
            el(
              "div",
              { class: "mdl-box" },
              el("input", { type: "checkbox", id: `p-kb-${i}`, value: s.id, checked: checked.has(s.id) }),
              el("label", { for: `p-kb-${i}` }, s.name || s.id, s.name ? el("span", { class: "muted small mono", text: ` ${s.id}` }) : null),
            ),
          )
        : [el("p", { class: "muted small", text: t("models.no_kbs") })]),
    );
  }

  function resetForm() {
    editing = null;
    $("profile-form").reset();
    document.querySelectorAll("#p-kbs input").forEach((box) => (box.checked = false));
    $("form-title").textContent = t("models.new_profile");
    $("save-button").textContent = t("common.create");
    $("edit-note").hidden = true;
    $("cancel-edit").hidden = true;
    $("form-error").replaceChildren();
    fillFormChoices();
  }

  function startEdit(profile) {
    resetForm();
    editing = profile;
    fillFormChoices();
    $("form-title").textContent = t("models.edit_profile", { name: profile.name });
    $("save-button").textContent = t("common.save");
    $("edit-note").hidden = false;
    $("cancel-edit").hidden = false;
    $("p-name").value = profile.name;
    $("p-model").value = profile.model;
    $("p-description").value = profile.description || "";
    $("p-system").value = profile.system || "";
    const search = profile.file_search || {};
    const ids = new Set(search.vector_store_ids || []);
    document.querySelectorAll("#p-kbs input").forEach((box) => (box.checked = ids.has(box.value)));
    $("p-results").value = search.max_num_results ?? "";
    $("p-temperature").value = profile.temperature ?? "";
    $("p-top-p").value = profile.top_p ?? "";
    $("p-max-tokens").value = profile.max_tokens ?? "";
    $("profile-form").scrollIntoView({ block: "start" });
    $("p-name").focus();
  }

  /** The CreateProfile body the form describes (a profile being edited keeps its other search options). */
  function formBody() {
    const body = { name: $("p-name").value.trim(), model: $("p-model").value };
    const description = $("p-description").value.trim();
    if (description) body.description = description;
    if ($("p-system").value.trim()) body.system = $("p-system").value;
    const ids = [...document.querySelectorAll("#p-kbs input:checked")].map((box) => box.value);
    if (ids.length) {
      body.file_search = Object.assign({}, editing && editing.file_search, { vector_store_ids: ids });
      delete body.file_search.max_num_results;
      if ($("p-results").value !== "") body.file_search.max_num_results = Number($("p-results").value);
    }
    for (const [id, field] of [["p-temperature", "temperature"], ["p-top-p", "top_p"], ["p-max-tokens", "max_tokens"]]) {
      if ($(id).value !== "") body[field] = Number($(id).value);
    }
    return body;
  }

  /** A stored profile as the body that creates it again. */
  const bodyOf = (profile) => Object.fromEntries(PROFILE_FIELDS.filter((key) => profile[key] != null).map((key) => [key, profile[key]]));

  async function save(event) {
    event.preventDefault();
    const error = $("form-error");
    error.replaceChildren();
    const body = formBody();
    const button = $("save-button");
    button.disabled = true;
    const old = editing;
    try {
      if (!old) {
        await api("POST", "/v1/profiles", body);
        notice(t("models.created_msg", { name: body.name }));
      } else if (body.name !== old.name) {
        await api("POST", "/v1/profiles", body); // a new name: the old one goes only once the new one exists
        await api("DELETE", `/v1/profiles/${encodeURIComponent(old.name)}`);
        notice(t("models.saved_msg", { name: body.name }));
      } else {
        await api("DELETE", `/v1/profiles/${encodeURIComponent(old.name)}`);
        try {
          await api("POST", "/v1/profiles", body);
        } catch (err) {
          await api("POST", "/v1/profiles", bodyOf(old));
          err.restored = true;
          throw err;
        }
        notice(t("models.saved_msg", { name: body.name }));
      }
      resetForm();
      await load();
    } catch (err) {
      RT.showError(error, err);
      if (err.restored) error.append(el("p", { class: "muted small", text: t("models.restored") }));
    } finally {
      button.disabled = false;
    }
  }

  async function remove(profile) {
    if (!window.confirm(t("models.confirm_delete", { name: profile.name }))) return;
    try {
      await api("DELETE", `/v1/profiles/${encodeURIComponent(profile.name)}`);
      if (editing && editing.name === profile.name) resetForm();
      notice(t("models.deleted_msg", { name: profile.name }));
      await load();
    } catch (err) {
      RT.showError($("models-error"), err);
    }
  }

  async function load() {
    try {
      const [models, profiles, jobs, stores] = await Promise.all([
        api("GET", "/v1/models"),
        api("GET", "/v1/profiles"),
        RT.listAll("/v1/fine_tuning/jobs").catch(() => []), // training details are extra: the page works without
        RT.listAll("/v1/vector_stores").catch(() => []),
      ]);
      state = { models: models.data, profiles: profiles.data, jobs, stores };
      $("models-error").replaceChildren();
      fillChatModels();
      fillAdapters();
      fillEmbedders();
      fillProfiles();
      fillFormChoices();
    } catch (err) {
      RT.showError($("models-error"), err);
    }
  }

  $("profile-form").addEventListener("submit", save);
  $("cancel-edit").addEventListener("click", () => {
    const name = editing && editing.name;
    resetForm();
    const row = name && document.querySelector(`#profiles tr[data-profile="${CSS.escape(name)}"] .edit`);
    if (row) row.focus();
  });
  load();
})();
