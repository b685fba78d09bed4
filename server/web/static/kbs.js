// Knowledge bases list: every store from /v1/vector_stores, a form that creates one (name, embedding model
// from /v1/models, optional chunking), and delete. Names are user text: shown with RT.el only.
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const $ = (id) => document.getElementById(id);

  const statusBadge = (status) => RT.badge(status, "kb.st");

  function notice(text) {
    $("kbs-notice").replaceChildren(el("p", { class: "notice", role: "status" }, text));
  }

  /** A table cell; `label` names it where the table stacks into cards (phones). */
  const cell = (label, attrs, ...children) => el("td", Object.assign({ "data-label": label }, attrs), el("div", {}, ...children));

  function filesCell(counts) {
    const c = counts || { completed: 0, total: 0, failed: 0, in_progress: 0 };
    return cell(
      t("kb.files"),
      {},
      el("div", {}, t("kb.files_counts", { completed: fmt.int(c.completed), total: fmt.int(c.total) })),
      c.in_progress ? el("div", { class: "small kb-warn" }, t("kb.files_in_progress", { n: fmt.int(c.in_progress) })) : null,
      c.failed ? el("div", { class: "small kb-bad" }, t("kb.files_failed", { n: fmt.int(c.failed) })) : null,
    );
  }

  function row(store) {
    const name = store.name || t("kb.unnamed");
    const href = `/knowledge-bases/${encodeURIComponent(store.id)}`;
    const remove = el("button", { type: "button", class: "danger", "aria-label": `${t("common.delete")}: ${name}` }, t("common.delete"));
    remove.addEventListener("click", async () => {
      if (!window.confirm(t("kb.confirm_delete_store", { name }))) return;
      remove.disabled = true;
      try {
        await api("DELETE", `/v1/vector_stores/${encodeURIComponent(store.id)}`);
        notice(t("kb.deleted_ok"));
        await refresh();
      } catch (err) {
        remove.disabled = false;
        RT.showError($("kbs-error"), err);
      }
    });
    return el(
      "tr",
      { dataset: { id: store.id } },
      el("td", {}, el("a", { href, class: "kb-name" }, name), el("div", { class: "muted small mono" }, store.id)),
      filesCell(store.file_counts),
      cell(t("kb.size"), { class: "nowrap" }, fmt.bytes(store.usage_bytes)),
      cell(t("kb.embedder"), { class: "mono small" }, store.embedding_model || "—"),
      cell(t("common.status"), {}, statusBadge(store.status), store.reindex && store.reindex.status === "in_progress" ? el("div", { class: "small muted" }, t("kb.reindex", { model: store.reindex.embedding_model })) : null),
      cell(t("common.created"), { class: "small" }, fmt.date(store.created_at)),
      el("td", {}, remove),
    );
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    const body = document.querySelector("#kbs tbody");
    try {
      const stores = await RT.listAll("/v1/vector_stores");
      $("kbs-error").replaceChildren();
      body.replaceChildren(...(stores.length ? stores.map(row) : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, t("kb.empty")))]));
      // Keep counts moving while something is being indexed.
      clearTimeout(timer);
      if (stores.some((s) => s.status === "in_progress")) timer = setTimeout(refresh, 3000);
    } catch (err) {
      RT.showError($("kbs-error"), err);
    }
  }

  async function loadEmbedders() {
    try {
      const models = await api("GET", "/v1/models");
      const select = $("kb-embedder");
      for (const model of models.data.filter((m) => m.kind === "embedding")) select.append(el("option", { value: model.id }, model.id));
    } catch (err) {
      RT.showError($("create-error"), err);
    }
  }

  function chunking() {
    if (!$("chunk-static").checked) return null;
    return {
      type: "static",
      static: { max_chunk_size_tokens: Number($("chunk-size").value), chunk_overlap_tokens: Number($("chunk-overlap").value) },
    };
  }

  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("create-button");
    const body = {};
    const name = $("kb-name").value.trim();
    if (name) body.name = name;
    if ($("kb-embedder").value) body.embedding_model = $("kb-embedder").value;
    const strategy = chunking();
    if (strategy) body.chunking_strategy = strategy;
    button.disabled = true;
    try {
      const store = await api("POST", "/v1/vector_stores", body);
      $("create-error").replaceChildren();
      // Next step is adding files: go to the new knowledge base.
      location.href = `/knowledge-bases/${encodeURIComponent(store.id)}`;
    } catch (err) {
      RT.showError($("create-error"), err);
      button.disabled = false;
    }
  });

  loadEmbedders();
  refresh();
})();
