// Chat playground: pick a model (base, fine-tuned adapter or profile) and knowledge bases, stream answers
// from the public Chat Completions API, show citations as numbered footnotes, rate answers (POST
// /v1/feedback). Conversations and settings live in this browser's localStorage only.
// Everything shown from the server or the user (answers, file names, quotes) is written as text (RT.el).
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const $ = (id) => document.getElementById(id);
  const STORE = "ragtune.chat.conversations";
  const CURRENT = "ragtune.chat.current";
  const SETTINGS = "ragtune.chat.settings";
  const SAMPLING = ["temperature", "top_p", "max_tokens"];

  // ---- storage --------------------------------------------------------------------------------------

  function load(key, fallback) {
    try {
      const value = JSON.parse(localStorage.getItem(key));
      return value == null ? fallback : value;
    } catch {
      return fallback;
    }
  }

  function save(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
      $("storage-error").hidden = true;
    } catch {
      $("storage-error").hidden = false; // quota exceeded: say so, keep going in memory
    }
  }

  let conversations = load(STORE, []);
  if (!Array.isArray(conversations)) conversations = [];
  for (const conversation of conversations) {
    for (const message of conversation.messages || []) {
      if (message.pending) { // the page was left while this answer streamed
        delete message.pending;
        message.stopped = true;
      }
    }
  }
  let currentId = load(CURRENT, null);
  // The page's own sampling defaults, shown in the fields and sent: an API request without them gets
  // OpenAI's temperature 1 and the server's length (512 tokens for the embedded 135M model), which on a
  // CPU is minutes of wandering text; low temperature and a short answer stay on the sources.
  const PAGE_DEFAULTS = { temperature: "0.3", top_p: "", max_tokens: "256" };
  const settings = Object.assign({ system: "", ...PAGE_DEFAULTS, model: "", kbs: [] }, load(SETTINGS, {}));
  let stores = []; // the knowledge bases, as GET /v1/vector_stores lists them
  let streaming = null; // {controller, conversation} while an answer streams

  const saveConversations = () => save(STORE, conversations);
  const saveSettings = () => save(SETTINGS, settings);
  const current = () => conversations.find((c) => c.id === currentId) || null;
  const newId = () => `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

  function setCurrent(id) {
    currentId = id;
    save(CURRENT, id);
  }

  // ---- conversations list ---------------------------------------------------------------------------

  function renderConversations() {
    const list = $("conversations");
    const sorted = [...conversations].sort((a, b) => (b.updated || 0) - (a.updated || 0));
    if (!sorted.length) {
      list.replaceChildren(el("li", { class: "muted small", text: t("chat.no_conversations") }));
      return;
    }
    list.replaceChildren(
      ...sorted.map((c) => {
        const title = c.title || t("chat.untitled");
        return el(
          "li",
          { class: c.id === currentId ? "active" : null },
          el("button", { type: "button", class: "conv-open", "aria-current": c.id === currentId ? "true" : null, title, onclick: () => switchTo(c.id) }, title),
          el("button", { type: "button", class: "conv-delete", "aria-label": t("chat.delete_conversation", { title }), title: t("chat.delete_conversation", { title }), onclick: () => remove(c.id) }, "✕"),
        );
      }),
    );
  }

  function newConversation() {
    const conversation = { id: newId(), title: "", created: Date.now(), updated: Date.now(), messages: [] };
    conversations.push(conversation);
    setCurrent(conversation.id);
    saveConversations();
    return conversation;
  }

  function switchTo(id) {
    setCurrent(id);
    const conversation = current();
    if (conversation && conversation.model && hasModel(conversation.model)) {
      $("model").value = conversation.model;
      modelChanged();
    }
    if (conversation && Array.isArray(conversation.kbs) && stores.length) {
      settings.kbs = conversation.kbs.filter((id) => stores.some((s) => s.id === id));
      saveSettings();
      renderStores();
    }
    render();
    $("prompt").focus();
  }

  function remove(id) {
    if (!confirm(t("chat.confirm_delete"))) return;
    if (streaming && streaming.conversation.id === id) streaming.controller.abort();
    conversations = conversations.filter((c) => c.id !== id);
    saveConversations();
    if (currentId === id) setCurrent(null);
    render();
    $("new-chat").focus();
  }

  // ---- models and knowledge bases -------------------------------------------------------------------

  const hasModel = (id) => [...$("model").options].some((o) => o.value === id);

  async function loadModels() {
    const select = $("model");
    const note = $("model-note");
    try {
      const models = (await api("GET", "/v1/models")).data.filter((m) => m.kind === "chat" || m.kind === "profile");
      const groups = [
        ["chat.group.base", models.filter((m) => m.kind === "chat" && !m.parent)],
        ["chat.group.fine_tuned", models.filter((m) => m.kind === "chat" && m.parent)],
        ["chat.group.profiles", models.filter((m) => m.kind === "profile")],
      ].filter(([, list]) => list.length);
      select.replaceChildren(
        ...groups.map(([label, list]) =>
          el("optgroup", { label: t(label) }, ...list.map((m) => el("option", { value: m.id, dataset: { kind: m.kind } }, m.parent && m.kind === "profile" ? `${m.id} (${m.parent})` : m.id))),
        ),
      );
      if (!models.length) {
        select.replaceChildren(el("option", { value: "" }, "—"));
        note.textContent = t("chat.no_models");
        note.hidden = false;
        return;
      }
      const wanted = new URLSearchParams(location.search).get("model");
      const conversation = current();
      const choice = [wanted, conversation && conversation.model, settings.model].find((id) => id && hasModel(id));
      select.value = choice || models[0].id;
      if (wanted && !hasModel(wanted)) {
        note.textContent = t("chat.model_missing", { model: wanted });
        note.hidden = false;
        note.classList.add("alert");
      }
      modelChanged(Boolean(wanted && hasModel(wanted)));
    } catch (err) {
      RT.showError($("load-error"), err);
    }
  }

  /** A new model was picked: remember it, and say what a profile does. */
  function modelChanged(remember = true) {
    const option = $("model").selectedOptions[0];
    if (remember && option) {
      settings.model = option.value;
      saveSettings();
    }
    const note = $("model-note");
    if (note.classList.contains("alert")) return; // the missing-model warning stays until a pick
    const profile = option && option.dataset.kind === "profile";
    note.textContent = profile ? t("chat.profile_hint") : "";
    note.hidden = !profile;
  }

  async function loadStores() {
    try {
      stores = await RT.listAll("/v1/vector_stores?order=asc");
      settings.kbs = (settings.kbs || []).filter((id) => stores.some((s) => s.id === id));
      renderStores();
    } catch (err) {
      RT.showError($("kb-list"), err);
    }
  }

  function renderStores() {
    const list = $("kb-list");
    if (!stores.length) {
      list.replaceChildren(el("span", { class: "muted small" }, t("chat.kbs_none"), " ", el("a", { href: "/knowledge-bases", text: t("chat.kbs_create") })));
      return;
    }
    list.replaceChildren(
      ...stores.map((store) => {
        const id = `kb-${store.id}`;
        const counts = store.file_counts || {};
        const box = el("input", {
          type: "checkbox",
          id,
          value: store.id,
          checked: settings.kbs.includes(store.id),
          onchange: () => {
            settings.kbs = [...$("kb-list").querySelectorAll("input:checked")].map((b) => b.value);
            saveSettings();
          },
        });
        return el(
          "span",
          { class: "kb-choice" },
          box,
          el("label", { for: id }, store.name || store.id, " ", el("span", { class: "muted small" }, `· ${t("chat.kbs_files", { n: counts.completed ?? 0 })}`, counts.in_progress ? ` · ${t("chat.kbs_indexing")}` : "")),
        );
      }),
    );
  }

  const storeName = (id) => {
    const store = stores.find((s) => s.id === id);
    return (store && store.name) || id || "—";
  };

  // ---- settings -------------------------------------------------------------------------------------

  function setupSettings() {
    $("system").value = settings.system || "";
    for (const name of SAMPLING) $(name).value = settings[name] ?? "";
    $("system").addEventListener("input", () => {
      settings.system = $("system").value;
      saveSettings();
    });
    for (const name of SAMPLING) {
      $(name).addEventListener("input", () => {
        settings[name] = $(name).value;
        saveSettings();
      });
    }
    $("settings-reset").addEventListener("click", () => {
      settings.system = "";
      for (const name of SAMPLING) settings[name] = PAGE_DEFAULTS[name];
      saveSettings();
      $("system").value = "";
      for (const name of SAMPLING) $(name).value = PAGE_DEFAULTS[name];
    });
    if (settings.system || SAMPLING.some((name) => settings[name] !== PAGE_DEFAULTS[name])) $("settings").open = true;
  }

  // ---- messages -------------------------------------------------------------------------------------

  /** The chat history the API gets for the messages before an answer: the system prompt, then the user
   * and assistant turns (errors and empty answers left out). */
  function history(messages, system) {
    const turns = messages.filter((m) => (m.role === "user" || m.role === "assistant") && m.content).map((m) => ({ role: m.role, content: m.content }));
    return system ? [{ role: "system", content: system }, ...turns] : turns;
  }

  // ---- a finished answer's Markdown ---------------------------------------------------------------
  // marked (vendored) parses it with raw HTML turned into text, so a model's `<script>` is shown, never
  // run; DOMPurify (vendored) then keeps only text-formatting tags (no image: nothing is fetched from an
  // address a model wrote) and returns DOM nodes, never a string given to innerHTML here.
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const escapeHTML = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  marked.use({ gfm: true, breaks: true, renderer: { html: (token) => escapeHTML(token.text ?? token.raw ?? "") } });
  const MARKDOWN_TAGS = ["p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td", "a"];

  /** The answer's Markdown as DOM nodes (a fragment), links opening in a new tab. */
  function markdown(content) {
    const fragment = DOMPurify.sanitize(marked.parse(content), { ALLOWED_TAGS: MARKDOWN_TAGS, ALLOWED_ATTR: ["href", "title", "start"], RETURN_DOM_FRAGMENT: true });
    for (const link of fragment.querySelectorAll("a")) {
      link.target = "_blank";
      link.rel = "noopener noreferrer";
    }
    return fragment;
  }

  /** Each "[n]" in `root`'s text (outside code) made into a button opening source n of `notes`. */
  function citeButtons(root, notes) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const texts = [];
    while (walker.nextNode()) if (!walker.currentNode.parentElement || !walker.currentNode.parentElement.closest("code, pre")) texts.push(walker.currentNode);
    for (const node of texts) {
      const parts = [];
      let last = 0;
      for (const match of node.data.matchAll(/\[(\d{1,2})\]/g)) {
        const n = Number(match[1]);
        if (n < 1 || n > notes.length) continue;
        parts.push(node.data.slice(last, match.index));
        parts.push(el("button", { type: "button", class: "cite cite-inline", "aria-label": t("chat.open_source", { n, file: notes[n - 1].filename }), onclick: (e) => openCitation(notes[n - 1], n, e.currentTarget) }, `[${n}]`));
        last = match.index + match[0].length;
      }
      if (!parts.length) continue;
      parts.push(node.data.slice(last));
      node.replaceWith(...parts);
    }
  }

  /** The answer: plain text while it streams; once finished, its Markdown with "[n]" markers made into
   * buttons opening source n. */
  function answerText(message) {
    if (message.pending) return [message.content];
    const fragment = markdown(message.content);
    const box = el("div", {}, fragment);
    citeButtons(box, message.annotations || []);
    return [...box.childNodes];
  }

  function sourcesList(message) {
    const notes = message.annotations || [];
    if (!notes.length) {
      return message.file_search && message.file_search.results === 0 ? el("p", { class: "muted small", text: t("chat.no_sources") }) : null;
    }
    return el(
      "div",
      { class: "sources" },
      el("h3", { class: "small muted", text: t("chat.sources") }),
      el(
        "ol",
        {},
        ...notes.map((note, i) =>
          el(
            "li",
            {},
            el(
              "button",
              { type: "button", class: "cite", "aria-label": t("chat.open_source", { n: i + 1, file: note.filename }), onclick: (e) => openCitation(note, i + 1, e.currentTarget) },
              el("span", { class: "cite-n", text: `[${i + 1}]` }),
              " ",
              el("span", { class: "cite-file", text: note.filename }),
              note.page ? el("span", { class: "muted small", text: ` · ${t("chat.page", { n: note.page })}` }) : null,
            ),
          ),
        ),
      ),
    );
  }

  function metaLine(message) {
    const bits = [];
    if (message.model) bits.push(message.model);
    if (message.usage) bits.push(t("chat.usage", { prompt: fmt.int(message.usage.prompt_tokens), completion: fmt.int(message.usage.completion_tokens) }));
    if (message.ttft != null) bits.push(t("chat.first_token", { s: fmt.num(message.ttft, 2) }));
    if (message.latency != null) bits.push(t("chat.latency", { s: fmt.num(message.latency, 2) }));
    return el("p", { class: "meta muted small", text: bits.join(" · ") });
  }

  function feedbackBar(conversation, index) {
    const message = conversation.messages[index];
    const saved = message.feedback;
    const status = el("span", { class: "feedback-status small", role: "status" });
    const thumb = (rating, icon, label) =>
      el("button", { type: "button", class: `thumb thumb-${rating}`, "aria-pressed": String(Boolean(saved && saved.rating === rating)), disabled: Boolean(saved) }, el("span", { "aria-hidden": "true", text: icon }), ` ${t(label)}`);
    const up = thumb("up", "👍", "chat.good");
    const down = thumb("down", "👎", "chat.bad");
    const correctionId = `correction-${conversation.id}-${index}`;
    const correction = el("textarea", { id: correctionId, rows: 3 });
    const form = el(
      "form",
      { class: "correction", hidden: true },
      el("label", { for: correctionId, text: t("chat.correction") }),
      correction,
      el("p", { class: "muted small", text: t("chat.correction_hint") }),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: t("chat.send_feedback") }), el("button", { type: "button", text: t("common.cancel"), onclick: () => { form.hidden = true; down.setAttribute("aria-pressed", "false"); down.focus(); } })),
    );
    if (saved) status.textContent = t(saved.correction ? "chat.saved_correction" : saved.rating === "up" ? "chat.saved_up" : "chat.saved_down");

    async function send(rating, text) {
      up.disabled = down.disabled = true;
      status.className = "feedback-status small";
      status.textContent = t("chat.saving");
      const body = {
        messages: history(conversation.messages.slice(0, index), message.system),
        response: message.content,
        rating,
        model: message.model || undefined,
        completion_id: message.id || undefined,
      };
      if (text) body.correction = text;
      try {
        const stored = await api("POST", "/v1/feedback", body);
        message.feedback = { id: stored.id, rating, correction: text || null };
        conversation.updated = Date.now();
        saveConversations();
        form.hidden = true;
        up.setAttribute("aria-pressed", String(rating === "up"));
        down.setAttribute("aria-pressed", String(rating === "down"));
        status.textContent = t(text ? "chat.saved_correction" : rating === "up" ? "chat.saved_up" : "chat.saved_down");
      } catch (err) {
        up.disabled = down.disabled = false;
        status.className = "feedback-status small alert";
        status.textContent = `${t("common.error")}: ${RT.errorMessage(err)}`;
      }
    }

    up.addEventListener("click", () => send("up"));
    down.addEventListener("click", () => {
      form.hidden = false;
      down.setAttribute("aria-pressed", "true");
      correction.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send("down", correction.value.trim());
    });
    return el("div", { class: "feedback" }, el("div", { class: "row", role: "group", "aria-label": t("chat.rate") }, up, down, status), form);
  }

  function errorText(message) {
    const param = message.param && !message.content.includes(message.param) ? ` (${message.param})` : "";
    return `${t("common.error")}${message.status ? ` ${message.status}` : ""}: ${message.content}${param}`;
  }

  function messageView(conversation, index) {
    const message = conversation.messages[index];
    if (message.role === "user") {
      return el("article", { class: "msg user" }, el("h2", { class: "who", text: t("chat.you") }), el("div", { class: "text", text: message.content }));
    }
    if (message.role === "error") {
      // the last turn failed (server down, a refused setting): Retry asks the same question again
      const asked = index === conversation.messages.length - 1 && index > 0 && conversation.messages[index - 1].role === "user";
      const retry = asked
        ? el("button", {
            type: "button",
            class: "retry",
            text: t("common.retry"),
            onclick: () => {
              if (streaming || !settingsValid()) return;
              const [question] = conversation.messages.splice(index - 1, 2);
              send(question.content);
            },
          })
        : null;
      return el("article", { class: "msg error" }, el("p", { class: "alert", role: "alert", text: errorText(message) }), retry);
    }
    const body = el("div", { class: message.pending ? "text" : "text md" }, ...(message.pending && !message.content ? [] : answerText(message)));
    const view = el(
      "article",
      { class: "msg assistant", "aria-busy": message.pending ? "true" : null },
      el("h2", { class: "who", text: t("chat.assistant") }),
      body,
      message.pending && !message.content ? el("p", { class: "muted small waiting", text: t("chat.waiting") }) : null,
      message.stopped ? el("p", { class: "muted small", text: t("chat.stopped") }) : null,
      message.finish_reason === "length" ? el("p", { class: "muted small", text: t("chat.truncated") }) : null,
      message.pending ? null : sourcesList(message),
      message.pending ? null : metaLine(message),
      message.pending || !message.content ? null : feedbackBar(conversation, index),
    );
    return view;
  }

  function render() {
    renderConversations();
    const conversation = current();
    const box = $("messages");
    if (!conversation || !conversation.messages.length) {
      box.replaceChildren(el("p", { class: "notice empty", text: t("chat.empty") }));
      return;
    }
    box.replaceChildren(...conversation.messages.map((_, i) => messageView(conversation, i)));
  }

  // ---- citations ------------------------------------------------------------------------------------

  let citeOpener = null;
  let citeNote = null;

  function openCitation(note, n, opener) {
    citeOpener = opener;
    citeNote = note;
    $("cite-title").textContent = t("chat.cite_title", { n });
    $("cite-file").textContent = note.filename || note.file_id;
    $("cite-kb").textContent = storeName(note.vector_store_id);
    $("cite-page").textContent = note.page || "—";
    $("cite-score").textContent = note.score == null ? "—" : fmt.num(note.score, 3);
    $("cite-quote").textContent = note.quote || "";
    const link = $("cite-kb-link");
    link.hidden = !note.vector_store_id;
    if (note.vector_store_id) link.href = `/knowledge-bases/${encodeURIComponent(note.vector_store_id)}`;
    $("cite-full").hidden = !note.vector_store_id;
    $("cite-full").setAttribute("aria-expanded", "false");
    $("cite-full").textContent = t("chat.full_text");
    $("cite-full-text").hidden = true;
    $("cite-full-text").replaceChildren();
    $("cite-full-error").replaceChildren();
    $("cite-dialog").showModal();
    $("cite-close").focus();
  }

  async function toggleFullText() {
    const button = $("cite-full");
    const pre = $("cite-full-text");
    if (!pre.hidden) {
      pre.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.textContent = t("chat.full_text");
      return;
    }
    const note = citeNote;
    try {
      const page = await api("GET", `/v1/vector_stores/${encodeURIComponent(note.vector_store_id)}/files/${encodeURIComponent(note.file_id)}/content`);
      if (note !== citeNote) return;
      const text = page.data.map((part) => part.text || "").join("\n\n");
      // Mark the quoted passage in the whole text when it is found there as is.
      const probe = (note.quote || "").trim().slice(0, 60);
      const at = probe ? text.indexOf(probe) : -1;
      if (at >= 0) {
        const end = Math.min(text.length, at + (note.quote || "").trim().length);
        pre.replaceChildren(text.slice(0, at), el("mark", { text: text.slice(at, end) }), text.slice(end));
      } else pre.replaceChildren(text);
      pre.hidden = false;
      button.setAttribute("aria-expanded", "true");
      button.textContent = t("chat.hide_full_text");
      const mark = pre.querySelector("mark");
      if (mark) pre.scrollTop = Math.max(0, mark.offsetTop - pre.offsetTop - 24);
    } catch (err) {
      RT.showError($("cite-full-error"), err);
    }
  }

  // ---- sending --------------------------------------------------------------------------------------

  function setBusy(busy) {
    $("send").hidden = busy;
    $("stop").hidden = !busy;
    $("new-chat").disabled = busy;
  }

  function number(name) {
    const raw = String(settings[name] ?? "").trim();
    if (raw === "") return undefined;
    return name === "max_tokens" ? Number.parseInt(raw, 10) : Number(raw);
  }

  /** Whether every setting is within its field's range; if not, the field is shown and says why (the
   * browser's own message), and nothing is sent for a 400. */
  function settingsValid() {
    const bad = SAMPLING.map((name) => $(name)).find((input) => !input.validity.valid);
    if (!bad) return true;
    $("settings").open = true;
    bad.focus();
    bad.reportValidity();
    return false;
  }

  async function send(text) {
    const model = $("model").value;
    const conversation = current() || newConversation();
    if (!model) {
      conversation.messages.push({ role: "error", content: t("chat.no_model") });
      render();
      return;
    }
    const system = (settings.system || "").trim();
    const kbs = [...$("kb-list").querySelectorAll("input:checked")].map((b) => b.value);
    const body = { model, messages: [], stream: true, stream_options: { include_usage: true } };
    for (const name of SAMPLING) {
      const value = number(name);
      if (value !== undefined) body[name] = value;
    }
    if (kbs.length) body.file_search = { vector_store_ids: kbs };
    conversation.messages.push({ role: "user", content: text });
    body.messages = history(conversation.messages, system);
    if (!conversation.title) conversation.title = text.replace(/\s+/g, " ").slice(0, 60);
    conversation.model = model;
    conversation.kbs = kbs;
    const answer = { role: "assistant", content: "", model, system: system || null, pending: true };
    conversation.messages.push(answer);
    conversation.updated = Date.now();
    saveConversations();
    render();

    const controller = new AbortController();
    streaming = { controller, conversation };
    setBusy(true);
    const started = performance.now();
    const index = conversation.messages.length - 1;
    let failure = null;
    const follow = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    try {
      for await (const chunk of RT.sse("/v1/chat/completions", body, controller.signal)) {
        if (chunk.error) throw new RT.APIError(500, chunk);
        if (chunk.id) answer.id = chunk.id;
        if (chunk.model) answer.model = chunk.model;
        if (chunk.usage) answer.usage = chunk.usage;
        if (chunk.file_search) answer.file_search = chunk.file_search;
        for (const choice of chunk.choices || []) {
          if (choice.index !== 0) continue;
          const delta = choice.delta || {};
          if (delta.annotations) answer.annotations = delta.annotations;
          if (choice.finish_reason) answer.finish_reason = choice.finish_reason;
          if (!delta.content) continue;
          if (answer.ttft == null) answer.ttft = (performance.now() - started) / 1000;
          answer.content += delta.content;
          const view = currentId === conversation.id ? $("messages").querySelector('.msg.assistant[aria-busy="true"]') : null;
          if (view) {
            const stick = follow();
            const textBox = view.querySelector(".text");
            if (textBox.firstChild) textBox.firstChild.appendData(delta.content);
            else textBox.append(delta.content);
            const waiting = view.querySelector(".waiting");
            if (waiting) waiting.remove();
            if (stick) window.scrollTo(0, document.documentElement.scrollHeight);
          }
        }
      }
    } catch (err) {
      if (controller.signal.aborted) answer.stopped = true;
      else failure = err;
    }
    answer.latency = (performance.now() - started) / 1000;
    delete answer.pending;
    streaming = null;
    if (failure) {
      const error = { role: "error", content: RT.errorMessage(failure), status: failure.status || null, param: failure.param || null };
      if (!answer.content) conversation.messages.splice(index, 1, error);
      else conversation.messages.push(error);
    }
    conversation.updated = Date.now();
    saveConversations();
    setBusy(false);
    if (currentId === conversation.id) {
      const stick = follow();
      render();
      if (stick) window.scrollTo(0, document.documentElement.scrollHeight);
    } else renderConversations();
  }

  // ---- wiring ---------------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (streaming) return;
    const text = $("prompt").value.trim();
    if (!text || !settingsValid()) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => {
    if (streaming) streaming.controller.abort();
    $("prompt").focus();
  });
  $("new-chat").addEventListener("click", () => {
    const empty = current();
    if (!empty || empty.messages.length) newConversation();
    render();
    $("prompt").focus();
  });
  $("model").addEventListener("change", () => {
    const note = $("model-note");
    note.classList.remove("alert");
    modelChanged();
  });
  $("cite-close").addEventListener("click", () => $("cite-dialog").close());
  $("cite-full").addEventListener("click", toggleFullText);
  $("cite-dialog").addEventListener("click", (event) => {
    if (event.target === $("cite-dialog")) $("cite-dialog").close(); // a click on the backdrop
  });
  $("cite-dialog").addEventListener("close", () => {
    if (citeOpener && citeOpener.isConnected) citeOpener.focus();
    citeOpener = null;
  });
  // On a phone the conversation list starts folded, so the chat comes first.
  if (window.matchMedia("(max-width: 760px)").matches) $("conversations-panel").open = false;

  setupSettings();
  render();
  loadModels();
  loadStores();
})();
