// One knowledge base: its info, a drop zone that uploads many files (POST /v1/files with upload progress,
// then attaches each one), the files with their indexing status, `last_error` and `parse` report, the
// parsed text of a file, a retrieval test that runs each ranker side by side, detach and delete.
// File names and chunk text are untrusted: everything is built with RT.el (text, never HTML).
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const $ = (id) => document.getElementById(id);
  const storeId = $("kb-root").dataset.storeId;
  const base = `/v1/vector_stores/${encodeURIComponent(storeId)}`;
  const POLL_MS = 1500;
  const UPLOADS_AT_ONCE = 3;
  const RANKERS = ["hybrid", "dense", "bm25"];
  const SNIPPET = 280;

  let store = null;
  let vsFiles = [];
  const fileInfo = new Map(); // file id -> {filename, bytes} from /v1/files
  const uploads = []; // {file, id, state, error, pct, row}
  const openDetails = new Set(); // file ids whose parse details are open (kept across re-renders)
  let shownSignature = "";
  let pollTimer = null;
  let gone = false;

  const statusBadge = (status) => RT.badge(status, "kb.st");
  /** A table cell; `label` names it where the table stacks into cards (phones). */
  const cell = (label, attrs, ...children) => el("td", Object.assign({ "data-label": label }, attrs), el("div", {}, ...children));
  /** `key`'s text for a count: its `_one` form when `n` is 1 (English "1 page", not "1 pages"). */
  const count = (key, n, vars) => t(n === 1 ? `${key}_one` : key, Object.assign({ n }, vars));
  const nameOf = (id) => (fileInfo.get(id) || {}).filename || id;

  // ---- the store's header -------------------------------------------------------------------------

  const card = (title, ...value) => el("div", { class: "card" }, el("h3", {}, title), el("div", { class: "kb-value" }, ...value));

  function renderStore() {
    const name = store.name || t("kb.unnamed");
    $("kb-title").textContent = name;
    document.title = `${name} · ${t("kb.title")} · ragtune`;
    const c = store.file_counts;
    $("kb-cards").replaceChildren(
      card(t("common.status"), statusBadge(store.status)),
      card(
        t("kb.files"),
        el("div", {}, t("kb.files_counts", { completed: fmt.int(c.completed), total: fmt.int(c.total) })),
        c.in_progress ? el("div", { class: "small kb-warn" }, t("kb.files_in_progress", { n: fmt.int(c.in_progress) })) : null,
        c.failed ? el("div", { class: "small kb-bad" }, t("kb.files_failed", { n: fmt.int(c.failed) })) : null,
      ),
      card(t("kb.size"), fmt.bytes(store.usage_bytes)),
      card(
        t("kb.embedder"),
        el("div", { class: "mono" }, store.embedding_model || "—"),
        store.embedding_dimension ? el("div", { class: "small muted" }, t("kb.dimension", { n: store.embedding_dimension })) : null,
      ),
      card(t("common.created"), fmt.date(store.created_at)),
    );
    const reindex = store.reindex;
    const box = $("kb-reindex");
    if (!reindex) box.replaceChildren();
    else if (reindex.status === "failed")
      box.replaceChildren(el("p", { class: "alert" }, t("kb.reindex_failed", { model: reindex.embedding_model, error: reindex.last_error || "" })));
    else
      box.replaceChildren(
        el(
          "div",
          { class: "notice kb-reindex" },
          el("div", {}, t("kb.reindex", { model: reindex.embedding_model })),
          el("progress", { max: reindex.chunks_total || 1, value: reindex.chunks_done, "aria-label": t("kb.reindex", { model: reindex.embedding_model }) }),
          el("span", { class: "small muted" }, t("kb.reindex_progress", { done: fmt.int(reindex.chunks_done), total: fmt.int(reindex.chunks_total) })),
        ),
      );
  }

  // ---- the files table ----------------------------------------------------------------------------

  /** The `parse` report as one short line, and its details on demand. */
  function parseCell(vsFile) {
    const p = vsFile.parse;
    if (!p) return cell(t("kb.parsed"), { class: "muted small" }, vsFile.status === "in_progress" ? t("kb.p.none") : "—");
    const bits = [p.parser];
    if (p.encoding) bits.push(p.encoding);
    if (p.pages != null) bits.push(count("kb.p.pages", p.pages));
    if (p.tables) bits.push(count("kb.p.tables", p.tables));
    const ocr = p.ocr_pages || [];
    if (ocr.length) bits.push(p.ocr_mean_score != null ? count("kb.p.ocr_score", ocr.length, { score: fmt.num(p.ocr_mean_score, 2) }) : count("kb.p.ocr", ocr.length));
    if (p.images_without_text) bits.push(count("kb.p.images", p.images_without_text));
    const dropped = p.dropped || [];
    const droppedCount = dropped.reduce((sum, d) => sum + (d.count || 1), 0);
    const warnings = p.warnings || [];
    const lossy = [];
    if (droppedCount) lossy.push(count("kb.p.dropped", droppedCount));
    if (warnings.length) lossy.push(count("kb.p.warnings", warnings.length));

    const rows = [
      [t("kb.p.parser"), p.parser],
      [t("kb.p.encoding"), p.encoding || "—"],
    ];
    if (ocr.length) rows.push([t("kb.p.ocr_pages"), ocr.join(", ")]);
    const details = el(
      "details",
      { class: "kb-parse-details", ontoggle: (e) => (e.target.open ? openDetails.add(vsFile.id) : openDetails.delete(vsFile.id)) },
      el("summary", {}, t("kb.p.details")),
      el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      dropped.length
        ? el(
            "div",
            {},
            el("h4", {}, t("kb.p.dropped_title")),
            el("ul", {}, ...dropped.map((d) => el("li", {}, `${d.part}${d.count > 1 ? ` ×${d.count}` : ""}: ${d.reason}`))),
          )
        : null,
      warnings.length ? el("div", {}, el("h4", {}, t("kb.p.warnings_title")), el("ul", {}, ...warnings.map((w) => el("li", {}, w)))) : null,
    );
    details.open = openDetails.has(vsFile.id);
    return cell(
      t("kb.parsed"),
      { class: "small kb-parse" },
      el("div", {}, bits.join(" · ")),
      lossy.length ? el("div", { class: "kb-warn" }, lossy.join(" · ")) : null,
      details,
    );
  }

  function fileRow(vsFile) {
    const name = nameOf(vsFile.id);
    const info = fileInfo.get(vsFile.id);
    const view = el("button", { type: "button", class: "kb-view", "aria-label": `${t("kb.view_text")}: ${name}` }, t("kb.view_text"));
    view.addEventListener("click", () => showText(vsFile.id, view));
    view.disabled = vsFile.status !== "completed";
    const detach = el("button", { type: "button", class: "danger kb-detach", "aria-label": `${t("kb.detach")}: ${name}` }, t("kb.detach"));
    detach.addEventListener("click", () => detachFile(vsFile.id, detach));
    const error = vsFile.last_error;
    return el(
      "tr",
      { dataset: { fileId: vsFile.id, status: vsFile.status } },
      el("td", {}, el("div", { class: "kb-filename" }, name), el("div", { class: "muted small mono" }, vsFile.id)),
      cell(
        t("common.status"),
        {},
        statusBadge(vsFile.status),
        error ? el("p", { class: "alert small kb-last-error", role: "note" }, RT.explain("kb.code", error.code), error.message, el("span", { class: "muted mono" }, ` (${error.code})`)) : null,
      ),
      cell(t("kb.size"), { class: "nowrap" }, fmt.bytes(info ? info.bytes : null)),
      parseCell(vsFile),
      el("td", {}, el("div", { class: "kb-actions" }, view, detach)),
    );
  }

  function renderFiles() {
    const signature = JSON.stringify([vsFiles, vsFiles.map((f) => nameOf(f.id))]);
    if (signature === shownSignature) return; // unchanged: keep focus and open details where they are
    shownSignature = signature;
    const body = document.querySelector("#files tbody");
    const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused && focused.closest("tr") ? [focused.closest("tr").dataset.fileId, focused.className] : null;
    body.replaceChildren(...(vsFiles.length ? vsFiles.map(fileRow) : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, t("kb.no_files")))]));
    if (focusKey) {
      const row = body.querySelector(`tr[data-file-id="${CSS.escape(focusKey[0])}"]`);
      const again = row && [...row.querySelectorAll("button, summary")].find((b) => b.className === focusKey[1]);
      if (again) again.focus();
    }
  }

  /** File names for ids not seen yet: one list call at first, then per file. */
  async function learnNames(ids) {
    const unknown = ids.filter((id) => !fileInfo.has(id));
    if (!unknown.length) return;
    if (unknown.length > 5) {
      for (const f of await api("GET", "/v1/files?purpose=assistants&limit=10000").then((p) => p.data)) fileInfo.set(f.id, f);
    }
    await Promise.all(
      unknown
        .filter((id) => !fileInfo.has(id))
        .map((id) =>
          api("GET", `/v1/files/${encodeURIComponent(id)}`)
            .then((f) => fileInfo.set(id, f))
            .catch(() => fileInfo.set(id, { filename: id, bytes: null })),
        ),
    );
  }

  async function refresh() {
    clearTimeout(pollTimer);
    if (gone) return;
    try {
      const [s, files] = await Promise.all([api("GET", base), RT.listAll(`${base}/files`)]);
      store = s;
      vsFiles = files;
      await learnNames(files.map((f) => f.id));
      $("kb-error").replaceChildren();
      renderStore();
      renderFiles();
      updateUploadsFromFiles();
    } catch (err) {
      if (err.status === 404) {
        gone = true;
        $("kb-title").textContent = t("kb.title");
        $("kb-error").replaceChildren(el("p", { class: "alert", role: "alert" }, t("kb.not_found")));
        $("kb-body").hidden = true; // nothing to upload to, list or search
        $("delete-store").hidden = true;
        return;
      }
      RT.showError($("kb-error"), err);
    }
    const busy = (store && store.status === "in_progress") || uploads.some((u) => ["waiting", "uploading", "attaching", "indexing"].includes(u.state));
    clearTimeout(pollTimer);
    if (busy) pollTimer = setTimeout(refreshSoon, POLL_MS);
  }

  let refreshing = null;
  let again = false;
  /** Refresh now, or once more after the refresh under way (it may have read the lists before a change);
   * resolves when what the page shows is at least as new as this call. */
  function refreshSoon() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        await refresh();
      } while (again);
    })().finally(() => (refreshing = null));
    return refreshing;
  }

  async function detachFile(fileId, button) {
    const name = nameOf(fileId);
    if (!window.confirm(t("kb.confirm_detach", { name }))) return;
    button.disabled = true;
    try {
      await api("DELETE", `${base}/files/${encodeURIComponent(fileId)}`);
      const note = el("p", { class: "notice", role: "status", tabindex: "-1" }, t("kb.detached_ok", { name }));
      $("files-notice").replaceChildren(note);
      if ($("text-panel").dataset.fileId === fileId) closeText();
      await refreshSoon();
      note.focus(); // the button is gone with its row
    } catch (err) {
      button.disabled = false;
      RT.showError($("files-error"), err);
    }
  }

  // ---- the parsed text ----------------------------------------------------------------------------

  let textOpener = null;
  async function showText(fileId, opener) {
    textOpener = opener;
    const panel = $("text-panel");
    panel.hidden = false;
    panel.dataset.fileId = fileId;
    $("text-title").textContent = t("kb.text_title", { name: nameOf(fileId) });
    $("text-body").textContent = t("common.loading");
    $("text-error").replaceChildren();
    $("text-title").focus();
    panel.scrollIntoView({ block: "start" });
    try {
      const page = await api("GET", `${base}/files/${encodeURIComponent(fileId)}/content`);
      const text = page.data.map((part) => part.text).join("\n\n");
      $("text-body").textContent = text || t("kb.text_empty");
    } catch (err) {
      $("text-body").textContent = "";
      RT.showError($("text-error"), err);
    }
  }

  function closeText() {
    const panel = $("text-panel");
    panel.hidden = true;
    delete panel.dataset.fileId;
    $("text-body").textContent = "";
    if (textOpener && document.body.contains(textOpener)) textOpener.focus();
    textOpener = null;
  }

  $("close-text").addEventListener("click", closeText);
  $("text-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeText();
  });

  // ---- uploads ------------------------------------------------------------------------------------

  function uploadText(u) {
    switch (u.state) {
      case "uploading":
        return t("kb.up.uploading", { pct: u.pct });
      case "failed":
      case "upload_failed":
        return `${t(`kb.up.${u.state}`)}: ${u.error || ""}`;
      default:
        return t(`kb.up.${u.state}`);
    }
  }

  function renderUpload(u) {
    const value = u.state === "uploading" ? u.pct : ["waiting"].includes(u.state) ? 0 : 100;
    const indeterminate = u.state === "attaching" || u.state === "indexing";
    const bad = u.state === "failed" || u.state === "upload_failed";
    const bar = bad
      ? el("div", { class: "kb-up-bad", "aria-hidden": "true" })
      : indeterminate
        ? el("progress", { "aria-label": u.file.name })
        : el("progress", { max: 100, value, "aria-label": u.file.name });
    u.row.replaceChildren(
      el("div", { class: "kb-up-name" }, u.file.name),
      el("div", { class: "muted small nowrap" }, fmt.bytes(u.file.size)),
      bar,
      el("div", { class: `small kb-up-state${bad ? " kb-bad" : u.state === "completed" ? " kb-ok" : ""}` }, uploadText(u)),
    );
    u.row.dataset.state = u.state;
    const done = uploads.filter((x) => ["completed", "failed", "upload_failed"].includes(x.state)).length;
    $("uploads-summary").textContent = t("kb.up.summary", { done, total: uploads.length });
  }

  function setUpload(u, state, extra) {
    Object.assign(u, { state }, extra || {});
    renderUpload(u);
  }

  function updateUploadsFromFiles() {
    const byId = new Map(vsFiles.map((f) => [f.id, f]));
    for (const u of uploads) {
      if (u.state !== "indexing" || !u.id) continue;
      const f = byId.get(u.id);
      if (!f) continue;
      if (f.status === "completed") setUpload(u, "completed");
      else if (f.status === "failed" || f.status === "cancelled")
        setUpload(u, "failed", { error: f.last_error ? f.last_error.message : t(`kb.st.${f.status}`) });
    }
  }

  /** POST the file to /v1/files with XMLHttpRequest (fetch reports no upload progress); its file object. */
  function postFile(u) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("purpose", "assistants");
      form.append("file", u.file, u.file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/files");
      if (RT.key()) xhr.setRequestHeader("Authorization", `Bearer ${RT.key()}`);
      xhr.responseType = "text";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) setUpload(u, "uploading", { pct: Math.min(100, Math.round((e.loaded / e.total) * 100)) });
      });
      xhr.addEventListener("load", () => {
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch {
          data = null;
        }
        if (xhr.status >= 200 && xhr.status < 300 && data) resolve(data);
        else reject(new RT.APIError(xhr.status, data));
      });
      xhr.addEventListener("error", () => reject(new Error(t("kb.up.upload_failed"))));
      xhr.addEventListener("abort", () => reject(new Error(t("kb.up.upload_failed"))));
      xhr.send(form);
    });
  }

  async function uploadOne(u) {
    setUpload(u, "uploading", { pct: 0 });
    let file;
    try {
      file = await postFile(u);
    } catch (err) {
      setUpload(u, "upload_failed", { error: RT.errorMessage(err) });
      return;
    }
    u.id = file.id;
    fileInfo.set(file.id, file);
    setUpload(u, "attaching");
    try {
      await api("POST", `${base}/files`, { file_id: file.id });
    } catch (err) {
      setUpload(u, "failed", { error: RT.errorMessage(err) });
      return;
    }
    setUpload(u, "indexing");
    refreshSoon();
  }

  let queue = [];
  let active = 0;
  function pump() {
    while (active < UPLOADS_AT_ONCE && queue.length) {
      const u = queue.shift();
      active += 1;
      uploadOne(u).finally(() => {
        active -= 1;
        pump();
      });
    }
  }

  function addFiles(fileList) {
    const files = [...fileList];
    if (!files.length || gone) return;
    $("uploads").hidden = false;
    for (const file of files) {
      const u = { file, id: null, state: "waiting", pct: 0, error: null, row: el("li", { class: "kb-upload" }) };
      uploads.push(u);
      $("upload-list").append(u.row);
      renderUpload(u);
      queue.push(u);
    }
    pump();
  }

  $("choose-files").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = ""; // the same file can be chosen again
  });
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"])
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("kb-drop-over");
    });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("kb-drop-over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("kb-drop-over");
    if (event.dataTransfer) addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  $("clear-uploads").addEventListener("click", () => {
    for (let i = uploads.length - 1; i >= 0; i--) {
      if (["completed", "failed", "upload_failed"].includes(uploads[i].state)) {
        uploads[i].row.remove();
        uploads.splice(i, 1);
      }
    }
    if (!uploads.length) $("uploads").hidden = true;
    else renderUpload(uploads[0]);
  });

  // ---- retrieval test -----------------------------------------------------------------------------

  function snippet(text) {
    const full = el("div", { class: "kb-chunk" }, text);
    if (text.length <= SNIPPET) return [full];
    full.textContent = `${text.slice(0, SNIPPET)}…`;
    const toggle = el("button", { type: "button", class: "kb-more", "aria-expanded": "false" }, t("kb.more"));
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      full.textContent = open ? text : `${text.slice(0, SNIPPET)}…`;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = t(open ? "kb.less" : "kb.more");
    });
    return [full, toggle];
  }

  function hitItem(hit, rank) {
    const text = (hit.content || []).map((c) => c.text).join("\n");
    return el(
      "li",
      { class: "kb-hit" },
      el(
        "div",
        { class: "kb-hit-head" },
        el("span", { class: "kb-rank" }, `#${rank}`),
        el("span", { class: "kb-score", dataset: { score: hit.score } }, t("kb.score", { score: fmt.num(hit.score, 3) })),
        hit.page != null ? el("span", { class: "muted small" }, t("kb.page", { n: hit.page })) : null,
      ),
      el("div", { class: "kb-hit-file" }, hit.filename || hit.file_id),
      ...snippet(text),
    );
  }

  function column(ranker) {
    return el(
      "section",
      { class: "kb-col card", dataset: { ranker } },
      el("h3", {}, t(`kb.r.${ranker}`)),
      el("p", { class: "muted small" }, t(`kb.r.${ranker}_help`)),
      el("div", { class: "kb-col-body" }, el("p", { class: "muted small" }, t("kb.searching"))),
    );
  }

  $("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    const button = $("search-button");
    button.disabled = true;
    $("search-error").replaceChildren();
    const columns = RANKERS.map(column);
    $("results").replaceChildren(...columns);
    await Promise.all(
      RANKERS.map(async (ranker, i) => {
        const body = columns[i].querySelector(".kb-col-body");
        try {
          const page = await api("POST", `${base}/search`, { query, max_num_results: 5, ranking_options: { ranker } });
          body.replaceChildren(
            page.data.length ? el("ol", { class: "kb-hits" }, ...page.data.map((hit, n) => hitItem(hit, n + 1))) : el("p", { class: "muted" }, t("kb.no_hits")),
          );
        } catch (err) {
          RT.showError(body, err);
        }
      }),
    );
    button.disabled = false;
  });

  // ---- delete the store ---------------------------------------------------------------------------

  $("delete-store").addEventListener("click", async () => {
    const name = (store && store.name) || t("kb.unnamed");
    if (!window.confirm(t("kb.confirm_delete_store", { name }))) return;
    try {
      await api("DELETE", base);
      gone = true;
      location.href = "/knowledge-bases";
    } catch (err) {
      RT.showError($("kb-error"), err);
    }
  });

  refreshSoon();
})();
