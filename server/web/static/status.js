// Status page: /health, /v1/models, /metrics, running fine-tuning jobs and ingestion, refreshed every 5 s.
"use strict";
(() => {
  const { t, api, el, fmt } = RT;

  /** Sums of each Prometheus sample name over its labels (`name` -> value), from /metrics' text. */
  function samples(text) {
    const sums = {};
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
      if (match) sums[match[1]] = (sums[match[1]] || 0) + Number(match[3]);
    }
    return sums;
  }

  const card = (title, value, note) =>
    el("div", { class: "card" }, el("h3", { text: title }), el("div", { class: "value", text: value }), note ? el("div", { class: "muted small", text: note }) : null);

  async function metricsText() {
    const response = await fetch("/metrics", { headers: RT.key() ? { Authorization: `Bearer ${RT.key()}` } : {} });
    return response.ok ? response.text() : "";
  }

  async function refresh() {
    const error = document.getElementById("status-error");
    try {
      const [health, models, jobs, stores, text] = await Promise.all([
        api("GET", "/health"),
        api("GET", "/v1/models"),
        api("GET", "/v1/fine_tuning/jobs?limit=100"),
        api("GET", "/v1/vector_stores?limit=100"),
        metricsText(),
      ]);
      error.replaceChildren();
      document.getElementById("cards").replaceChildren(
        card(t("status.engine"), health.engine),
        card(t("status.model"), health.model),
        card(t("status.device"), `${health.device || "—"} · ${health.dtype || ""}`),
        card(t("status.context"), t("status.tokens", { n: fmt.int(health.max_model_len) })),
        card(t("status.queue"), t("status.running_waiting", { running: health.running, waiting: health.waiting })),
        card(t("status.models"), String(models.data.length)),
      );
      const m = samples(text);
      const mean = (name) => (m[`${name}_count`] ? m[`${name}_sum`] / m[`${name}_count`] : null);
      document.getElementById("traffic").replaceChildren(
        card(t("status.requests"), fmt.int(m.ragtune_chat_requests_total || 0)),
        card(t("status.prompt_tokens"), fmt.int(m.ragtune_prompt_tokens_total || 0)),
        card(t("status.completion_tokens"), fmt.int(m.ragtune_completion_tokens_total || 0)),
        card(t("status.ttft"), mean("ragtune_time_to_first_token_seconds") == null ? "—" : `${fmt.num(mean("ragtune_time_to_first_token_seconds") * 1000, 0)} ms`),
        card(t("status.latency"), mean("ragtune_chat_latency_seconds") == null ? "—" : `${fmt.num(mean("ragtune_chat_latency_seconds"), 2)} s`),
      );
      const running = jobs.data.filter((job) => ["validating_files", "queued", "running"].includes(job.status));
      document.querySelector("#jobs tbody").replaceChildren(
        ...(running.length
          ? running.map((job) => el("tr", {}, el("td", {}, el("a", { href: `/fine-tuning/${encodeURIComponent(job.id)}`, text: job.id })), el("td", { text: job.model }), el("td", {}, RT.badge(job.status))))
          : [el("tr", {}, el("td", { class: "muted", text: t("common.none") }))]),
      );
      const busy = stores.data.filter((store) => store.file_counts && store.file_counts.in_progress > 0);
      document.querySelector("#ingestion tbody").replaceChildren(
        ...(busy.length
          ? busy.map((store) => el("tr", {}, el("td", {}, el("a", { href: `/knowledge-bases/${encodeURIComponent(store.id)}`, text: store.name || store.id })), el("td", { text: `${store.file_counts.in_progress} ${t("status.files_in_progress")}` })))
          : [el("tr", {}, el("td", { class: "muted", text: t("common.none") }))]),
      );
      document.getElementById("updated").textContent = t("status.updated", { time: new Date().toLocaleTimeString(RT.lang === "zh" ? "zh-CN" : "en") });
    } catch (err) {
      RT.showError(error, err);
    }
  }

  document.getElementById("refresh").addEventListener("click", refresh);
  refresh();
  setInterval(refresh, 5000);
})();
