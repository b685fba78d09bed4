// The arena's leaderboard (GET /v1/comparisons/leaderboard), shown on the comparisons and arena pages:
// the table #leaderboard, the vote count #votes and errors in #leaderboard-error (templates/leaderboard.html).
"use strict";
const Leaderboard = (() => {
  const { t, el, fmt, cell } = RT;
  const $ = (id) => document.getElementById(id);

  /** Fill the table from a leaderboard object ({votes, data: [{arm, rating, ci_low, ci_high, ...}]}). */
  function fill(board) {
    const table = $("leaderboard");
    $("votes").textContent = t("compare.votes_total", { n: board.votes });
    table.tBodies[0].replaceChildren(
      ...(board.data.length
        ? board.data.map((row, i) =>
            el(
              "tr",
              {},
              cell(table, 0, { text: String(i + 1) }),
              cell(table, 1, { text: row.arm }),
              cell(table, 2, { class: "num", text: fmt.num(row.rating, 1) }),
              // a bootstrap over one battle (or only identical ones) has no spread: no interval to show
              cell(table, 3, { class: "num", text: row.ci_low === row.ci_high ? t("compare.ci_too_few") : `[${fmt.num(row.ci_low, 1)}, ${fmt.num(row.ci_high, 1)}]` }),
              cell(table, 4, { class: "num", text: fmt.int(row.battles) }),
              cell(table, 5, { class: "num", text: `${row.wins} / ${row.ties} / ${row.losses}` }),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: t("compare.no_votes") }))]),
    );
  }

  /** Load and show the leaderboard; an error is shown above the table. */
  async function refresh() {
    try {
      fill(await RT.api("GET", "/v1/comparisons/leaderboard"));
      $("leaderboard-error").replaceChildren();
    } catch (err) {
      RT.showError($("leaderboard-error"), err);
    }
  }

  return { fill, refresh };
})();
