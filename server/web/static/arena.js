// Arena page: ask one question (POST /v1/arena/battles), two anonymous setups answer; a vote
// (POST /v1/arena/battles/{id}/vote) reveals who they were and updates the leaderboard (leaderboard.js).
// Answers are untrusted model output, written as text.
"use strict";
(() => {
  const { t, api, el } = RT;
  const $ = (id) => document.getElementById(id);
  let battle = null;

  function answer(id, text) {
    const node = $(id);
    node.textContent = text || t("arena.empty");
    node.classList.toggle("empty", !text);
  }

  /** A checkbox per chat model, adapter and profile (GET /v1/models); all checked at first. */
  async function fillArms() {
    try {
      const models = (await api("GET", "/v1/models")).data.filter((m) => m.kind === "chat" || m.kind === "profile");
      $("ask-button").disabled = models.length < 2;
      if (models.length < 2) {
        // one model only: say how to get a second setup rather than fail on the first question
        $("arm-boxes").replaceChildren(el("p", { class: "notice", id: "too-few" }, t("arena.too_few"), " ", el("a", { href: "/models", text: t("arena.too_few_link") })));
        return;
      }
      $("arm-boxes").replaceChildren(
        ...models.map((model, i) =>
          el(
            "div",
            { class: "cmp-box" },
            // an epoch's checkpoint (`…:ckpt-step-N`) is left out at first: it would meet its own adapter
            el("input", { type: "checkbox", id: `arm-${i}`, value: model.id, checked: !/:ckpt-step-\d+$/.test(model.id) }),
            el("label", { for: `arm-${i}`, class: "cmp-arm-name", text: model.id }),
          ),
        ),
      );
    } catch (err) {
      RT.showError($("arm-boxes"), err);
    }
  }

  async function ask(event) {
    event.preventDefault();
    const question = $("question").value.trim();
    $("ask-error").replaceChildren();
    if (!question) {
      RT.showError($("ask-error"), t("arena.need_question"));
      $("question").focus();
      return;
    }
    const arms = [...document.querySelectorAll("#arm-boxes input:checked")].map((box) => box.value);
    if (arms.length < 2) {
      RT.showError($("ask-error"), t("arena.need_two"));
      return;
    }
    const maxTokens = Number($("max-tokens").value) || 128;
    $("ask-button").disabled = true;
    $("ask-status").textContent = t("arena.answering");
    try {
      battle = await api("POST", "/v1/arena/battles", { question, arms, max_tokens: maxTokens });
      answer("answer-a", battle.answer_a);
      answer("answer-b", battle.answer_b);
      $("reveal").textContent = "";
      for (const button of document.querySelectorAll("#votes-buttons button")) {
        button.disabled = false;
        button.removeAttribute("aria-pressed");
      }
      $("battle").hidden = false;
      $("ask-status").textContent = "";
      $("battle-title").scrollIntoView({ block: "nearest" });
    } catch (err) {
      $("ask-status").textContent = "";
      RT.showError($("ask-error"), err);
    } finally {
      $("ask-button").disabled = false;
    }
  }

  async function vote(event) {
    const winner = event.target.dataset && event.target.dataset.winner;
    if (!winner || !battle) return;
    const buttons = document.querySelectorAll("#votes-buttons button");
    for (const button of buttons) button.disabled = true;
    try {
      const result = await api("POST", `/v1/arena/battles/${encodeURIComponent(battle.id)}/vote`, { winner });
      event.target.setAttribute("aria-pressed", "true"); // the vote given stays marked
      $("reveal").textContent = t("arena.reveal", { a: result.arm_a, b: result.arm_b });
      battle = null;
      await Leaderboard.refresh();
    } catch (err) {
      for (const button of buttons) button.disabled = false;
      $("reveal").textContent = `${t("common.error")}: ${RT.errorMessage(err)}`;
    }
  }

  $("ask").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (event) => {
    // Enter asks (as in the chat), Shift+Enter is a new line
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("votes-buttons").addEventListener("click", vote);
  fillArms();
  Leaderboard.refresh();
})();
