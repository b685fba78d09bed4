// One comparison: its setups, progress while it runs (polled), then the report: a bar chart per metric
// with each setup's 95% confidence interval drawn as an error bar (the table below gives the same numbers
// as text), the paired differences, the pairwise judge (when asked for) and every question's answers side
// by side. Answers, questions and sources are model output or user data: written as text only.
"use strict";
(() => {
  const { t, api, el, fmt, cell } = RT;
  const $ = (id) => document.getElementById(id);
  const comparisonId = $("cmp").dataset.id;
  const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
  const CHARTED = ["f1", "exact_match", "rouge_l", "hit_at_k", "mrr", "faithfulness", "abstained", "judge"];
  let timer = null;
  let charts = [];
  let storeNames = {};

  /** A metric's name in the page's language (an eval's own grader keeps its name). */
  function metricLabel(name) {
    const key = `compare.metric.${name}`;
    const text = t(key);
    return text === key ? name : text;
  }

  /** The metrics any arm has, in the report's chart order, then the rest (graders) as they come. */
  function metricNames(report) {
    const seen = [...new Set(Object.values(report.arms).flatMap((arm) => Object.keys(arm.metrics)))];
    return [...CHARTED.filter((m) => seen.includes(m)), ...seen.filter((m) => !CHARTED.includes(m))];
  }


  const ci = (low, high, digits = 3) => `[${fmt.num(low, digits)}, ${fmt.num(high, digits)}]`;
  const swatch = (i) => el("span", { class: "cmp-swatch", style: `background:${COLORS[i % COLORS.length]}`, "aria-hidden": "true" });

  // ---- setups and progress ----------------------------------------------------------------------

  function sampling(arm) {
    const parts = [(arm.temperature || 0) > 0 ? t("compare.sampled", { t: arm.temperature, n: arm.n || 1 }) : t("compare.greedy")];
    if (arm.top_p != null) parts.push(`top-p ${arm.top_p}`);
    if (arm.api === "responses") parts.push(t("compare.via_responses"));
    return parts.join(" · ");
  }

  function fillSetups(arms) {
    $("setups").tBodies[0].replaceChildren(
      ...arms.map((arm, i) => {
        const search = arm.file_search;
        const stores = search ? search.vector_store_ids.map((id) => storeNames[id] || id).join(", ") : null;
        const table = $("setups");
        return el(
          "tr",
          {},
          cell(table, 0, { class: "cmp-arm" }, swatch(i), arm.name),
          cell(table, 1, { class: "mono small" }, arm.model),
          cell(table, 2, { text: search ? (search.max_num_results ? t("compare.passages", { ids: stores, n: search.max_num_results }) : stores) : t("compare.no_retrieval") }),
          cell(table, 3, { text: sampling(arm) }),
        );
      }),
    );
  }

  function showProgress(comparison) {
    const { done, total } = comparison.progress;
    const active = comparison.status === "queued" || comparison.status === "running";
    $("run").hidden = !active;
    $("run-progress").max = Math.max(total, 1);
    $("run-progress").value = done;
    $("run-text").textContent = t("compare.progress_text", { done, total });
    $("cmp-status").replaceChildren(RT.badge(comparison.status));
    $("cmp-meta").textContent = `${t("common.created")}: ${fmt.date(comparison.created_at)}`;
    if (comparison.status === "failed") {
      $("cmp-error").replaceChildren(
        el("p", { class: "alert", role: "alert", text: t("compare.failed", { message: comparison.error ? comparison.error.message : "" }) }),
      );
    }
  }

  // ---- charts -----------------------------------------------------------------------------------

  /** Draws each bar's interval (the dataset's `intervals[i]` = [low, high]) as an error bar. */
  const errorBars = {
    id: "ciErrorBars",
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      const y = chart.scales.y;
      chart.data.datasets.forEach((dataset, d) => {
        const meta = chart.getDatasetMeta(d);
        meta.data.forEach((bar, i) => {
          const interval = dataset.intervals && dataset.intervals[i];
          if (!interval || interval.some((v) => v == null || Number.isNaN(v))) return;
          const top = y.getPixelForValue(interval[1]);
          const bottom = y.getPixelForValue(interval[0]);
          const half = Math.max(4, Math.min(12, bar.width / 4));
          ctx.save();
          ctx.strokeStyle = "#1f2328";
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(bar.x, top);
          ctx.lineTo(bar.x, bottom);
          ctx.moveTo(bar.x - half, top);
          ctx.lineTo(bar.x + half, top);
          ctx.moveTo(bar.x - half, bottom);
          ctx.lineTo(bar.x + half, bottom);
          ctx.stroke();
          ctx.restore();
        });
      });
    },
  };

  function drawCharts(report, names) {
    charts.forEach((chart) => chart.destroy());
    charts = [];
    const arms = Object.keys(report.arms);
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = "#1f2328";
    const figures = names.map((name) => {
      const present = arms.filter((arm) => report.arms[arm].metrics[name]);
      const values = present.map((arm) => report.arms[arm].metrics[name]);
      const described = present.map((arm, i) => `${arm} ${fmt.num(values[i].mean)} ${ci(values[i].ci_low, values[i].ci_high)}`).join("; ");
      const canvas = el("canvas", { role: "img", "aria-label": t("compare.chart_label", { metric: metricLabel(name), values: described }) });
      const figure = el("figure", { class: "card cmp-chart", dataset: { metric: name } }, el("figcaption", { text: metricLabel(name) }), el("div", { class: "cmp-canvas" }, canvas));
      return { figure, canvas, name, present, values };
    });
    $("charts").replaceChildren(...figures.map((f) => f.figure));
    for (const { canvas, name, present, values } of figures) {
      const top = Math.max(1, ...values.map((v) => v.ci_high).filter((v) => Number.isFinite(v)));
      charts.push(
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: present,
            datasets: [
              {
                label: metricLabel(name),
                data: values.map((v) => v.mean),
                intervals: values.map((v) => [v.ci_low, v.ci_high]),
                backgroundColor: present.map((arm) => COLORS[arms.indexOf(arm) % COLORS.length]),
                maxBarThickness: 56,
              },
            ],
          },
          options: {
            animation: false,
            responsive: true,
            maintainAspectRatio: false,
            plugins: {
              legend: { display: false },
              tooltip: { callbacks: { label: (item) => `${fmt.num(values[item.dataIndex].mean)} ${ci(values[item.dataIndex].ci_low, values[item.dataIndex].ci_high)}` } },
            },
            scales: {
              x: {
                title: { display: true, text: t("compare.axis_setup") },
                ticks: {
                  callback(value) {
                    const label = this.getLabelForValue(value);
                    return label.length > 18 ? `${label.slice(0, 17)}…` : label;
                  },
                },
              },
              y: { min: 0, max: top, title: { display: true, text: t("compare.axis_mean") } },
            },
          },
          plugins: [errorBars],
        }),
      );
    }
  }

  // ---- tables -----------------------------------------------------------------------------------

  function fillScores(report, names) {
    const arms = Object.keys(report.arms);
    const head = el("thead", {}, el("tr", {}, el("th", { scope: "col", text: t("compare.col_metric") }), ...arms.map((arm, i) => el("th", { scope: "col", class: "num" }, swatch(i), arm))));
    const metricRows = names.map((name) =>
      el(
        "tr",
        { dataset: { metric: name } },
        el("th", { scope: "row", text: metricLabel(name) }),
        ...arms.map((arm) => {
          const v = report.arms[arm].metrics[name];
          return el("td", { class: "num" }, v ? [el("span", { text: fmt.num(v.mean) }), el("br"), el("span", { class: "cmp-ci", text: ci(v.ci_low, v.ci_high) })] : "—");
        }),
      ),
    );
    const ms = (x) => (x == null ? "—" : t("compare.ms", { n: fmt.num(x, 0) }));
    const extra = [
      [t("compare.latency_p50"), (a) => ms(a.latency_p50_ms)],
      [t("compare.latency_p95"), (a) => ms(a.latency_p95_ms)],
      [t("compare.tokens"), (a) => fmt.num(a.tokens_per_answer, 1)],
    ].map(([label, value]) => el("tr", {}, el("th", { scope: "row", text: label }), ...arms.map((arm) => el("td", { class: "num", text: value(report.arms[arm]) }))));
    $("scores").replaceChildren(head, el("tbody", {}, ...metricRows, ...extra));
  }

  function fillPairs(report, names) {
    const select = $("pair-metric");
    const shown = select.value || names[0] || "";
    select.replaceChildren(el("option", { value: "*", text: t("compare.all_metrics") }), ...names.map((name) => el("option", { value: name, text: metricLabel(name) })));
    select.value = shown;
    const table = $("pairs");
    const render = () => {
      const metric = select.value;
      const rows = report.pairwise.filter((p) => metric === "*" || p.metric === metric);
      table.tBodies[0].replaceChildren(
        ...(rows.length
          ? rows.map((p) => {
              const real = p.ci_low > 0 || p.ci_high < 0;
              return el(
                "tr",
                { dataset: { metric: p.metric } },
                cell(table, 0, { text: `${p.a} − ${p.b}` }),
                cell(table, 1, { text: metricLabel(p.metric) }),
                cell(table, 2, { class: "num" }, el("span", { text: fmt.num(p.mean_diff) }), " ", el("span", { class: "cmp-ci", text: ci(p.ci_low, p.ci_high) })),
                cell(table, 3, { class: "num", text: `${p.wins} / ${p.ties} / ${p.losses}` }),
                cell(table, 4, { class: "num", text: p.p_value == null ? "—" : Number(p.p_value).toPrecision(3) }),
                cell(table, 5, {}, el("span", { class: real ? "cmp-real" : "cmp-noise", text: real ? t("compare.real") : t("compare.noise") })),
              );
            })
          : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: t("common.none") }))]),
      );
    };
    select.onchange = render;
    render();
  }

  function fillJudge(report) {
    const rows = report.judge_pairwise || [];
    const table = $("judge");
    $("judge-part").hidden = !rows.length;
    table.tBodies[0].replaceChildren(
      ...rows.map((j) =>
        el(
          "tr",
          {},
          cell(table, 0, { text: `${j.a} vs ${j.b}` }),
          cell(table, 1, { class: "num", text: `${j.wins_a} / ${j.ties} / ${j.wins_b}` }),
          cell(table, 2, { class: "num", text: `${j.inconsistent} / ${j.n}` }),
          cell(table, 3, { class: "num", text: j.first_position_rate == null ? "—" : fmt.num(j.first_position_rate, 2) }),
          cell(table, 4, { class: "num", text: `${fmt.num(j.a_score.mean)} ${ci(j.a_score.ci_low, j.a_score.ci_high, 2)}` }),
        ),
      ),
    );
  }

  // ---- answers side by side ---------------------------------------------------------------------

  function metricList(metrics, latency) {
    const items = Object.entries(metrics || {}).map(([name, value]) => el("li", { text: `${metricLabel(name)}: ${fmt.num(value, 2)}` }));
    if (latency != null) items.push(el("li", { text: t("compare.ms", { n: fmt.num(latency, 0) }) }));
    return el("ul", { class: "cmp-metrics" }, ...items);
  }

  function sourcesList(sources) {
    if (!sources || !sources.length) return null;
    return el(
      "details",
      {},
      el("summary", { text: t("compare.sources", { n: sources.length }) }),
      el(
        "ol",
        {},
        ...sources.map((s) => {
          const quote = String(s.quote || s.text || "");
          return el("li", {}, el("b", { text: s.filename || s.file_id || "" }), s.page ? ` (p. ${s.page})` : "", el("span", { class: "cmp-source-quote", text: quote.length > 400 ? `${quote.slice(0, 400)}…` : quote }));
        }),
      ),
    );
  }

  const answerText = (text) => el("p", { class: text ? "cmp-text" : "cmp-text empty", text: text || t("compare.empty_answer") });

  function answerCard(arm, i, answer) {
    const samples = answer.samples && answer.samples.length > 1 ? answer.samples.slice(1) : [];
    return el(
      "div",
      { class: "cmp-answer", dataset: { arm } },
      el("h4", {}, swatch(i), arm),
      answerText(answer.text),
      metricList(answer.metrics, answer.latency_ms),
      samples.length
        ? el(
            "details",
            {},
            el("summary", { text: t("compare.samples", { n: samples.length }) }),
            ...samples.map((s, k) => el("div", {}, el("b", { class: "small", text: t("compare.sample", { n: k + 2 }) }), answerText(s.text), metricList(s.metrics))),
          )
        : null,
      sourcesList(answer.sources),
    );
  }

  function fillRows(report) {
    const arms = Object.keys(report.arms);
    $("rows").replaceChildren(
      ...report.rows.map((row, n) => {
        const reference = Array.isArray(row.reference) ? row.reference.join(" | ") : row.reference;
        return el(
          "article",
          { class: "card cmp-question", "aria-labelledby": `q-${n}` },
          el("h3", { id: `q-${n}`, text: t("compare.question_n", { n: n + 1 }) }),
          el("p", { class: "cmp-q", text: row.question }),
          el("p", { class: "cmp-ref" }, el("b", { text: `${t("compare.reference")}: ` }), reference == null ? "—" : String(reference)),
          el("div", { class: "cmp-answers" }, ...arms.map((arm, i) => (row.answers[arm] ? answerCard(arm, i, row.answers[arm]) : null))),
        );
      }),
    );
  }

  function showReport(comparison) {
    const report = comparison.report;
    const names = metricNames(report);
    const engine = report.engine ? ` · ${t("compare.engine", { name: report.engine.name })}` : "";
    $("cmp-meta").textContent = `${t("common.created")}: ${fmt.date(comparison.created_at)} · ${t("compare.summary", { n: report.rows.length, arms: Object.keys(report.arms).length })}${engine}`;
    $("standalone").hidden = false;
    $("report").hidden = false;
    drawCharts(report, names);
    fillScores(report, names);
    fillPairs(report, names);
    fillJudge(report);
    fillRows(report);
  }

  async function load() {
    try {
      const comparison = await api("GET", `/v1/comparisons/${encodeURIComponent(comparisonId)}`);
      fillSetups(comparison.arms);
      showProgress(comparison);
      if (comparison.status === "completed" && comparison.report) showReport(comparison);
      else if (comparison.status !== "failed") {
        timer = setTimeout(load, 1500);
        return;
      }
    } catch (err) {
      RT.showError($("cmp-error"), err);
      if (err instanceof RT.APIError && err.status === 404) $("setups").tBodies[0].replaceChildren();
      else timer = setTimeout(load, 5000);
    }
  }

  async function start() {
    try {
      const stores = await api("GET", "/v1/vector_stores?limit=100");
      storeNames = Object.fromEntries(stores.data.filter((s) => s.name).map((s) => [s.id, s.name]));
    } catch {
      storeNames = {}; // ids are shown instead of names
    }
    load();
  }

  window.addEventListener("pagehide", () => clearTimeout(timer));
  start();
})();
