"""ingest/read_html.py: every piece of a page's main content kept, page furniture dropped and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import parse
from ingest.detect import HTML
from ingest.read_html import read_html
from ingest.types import ParseReport

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft"
FURNITURE = "page furniture"


def read(html: str) -> tuple[str, ParseReport]:
    report = ParseReport()
    markdown, _ = read_html(html, report)
    return markdown, report


def test_every_article_is_kept_in_order():
    html = """<html><body><header><h1>Help centre</h1></header>
    <article><h2>First?</h2><p>One.</p></article>
    <article><header><h2>Second?</h2></header><p>Two.</p><footer>By Ann</footer></article>
    <article><h2>Third?</h2><p>Three.</p></article>
    <footer>Copyright</footer></body></html>"""
    markdown, report = read(html)
    assert markdown == "## First?\n\nOne.\n\n## Second?\n\nTwo.\n\nBy Ann\n\n## Third?\n\nThree."
    assert report.dropped == [
        {"part": "page header", "reason": FURNITURE, "count": 1},
        {"part": "page footer", "reason": FURNITURE, "count": 1},
    ]


def test_faq_definition_list_details_and_accordion_are_kept():
    html = """<body><h1>FAQ</h1>
    <dl><dt>How long is the warranty?</dt><dd>Two years.</dd>
        <dt>Can I return it?</dt><dd>Within 30 days.</dd></dl>
    <details><summary>Do you ship abroad?</summary>Only within the EU.</details>
    <details open><summary>Is gift wrap free?</summary><p>It costs 3 euros.</p></details>
    <div class="accordion">
      <h3><button aria-expanded="false" aria-controls="panel-1">Who pays return postage?</button></h3>
      <div id="panel-1" role="region" hidden><p>The customer pays.</p></div>
      <button class="accordion-header">Can I pay later?</button>
      <div class="collapse">Yes, within 14 days.</div>
    </div>
    <div role="tabpanel" hidden>Tab two text.</div><div hidden="until-found">Found by search.</div></body>"""
    markdown, report = read(html)
    assert markdown.split("\n") == [
        "# FAQ",
        "",
        "How long is the warranty?",
        ":   Two years.",
        "",
        "Can I return it?",
        ":   Within 30 days.",
        "",
        "Do you ship abroad?",
        "",
        "Only within the EU.",
        "",
        "Is gift wrap free?",
        "",
        "It costs 3 euros.",
        "",
        "### Who pays return postage?",
        "",
        "The customer pays.",
        "",
        "Can I pay later?",
        "",
        "Yes, within 14 days.",
        "",
        "Tab two text.",
        "",
        "Found by search.",
    ]
    assert report.dropped == []


def test_docs_index_of_links_keeps_its_text():
    html = """<html><head><title>Docs</title></head><body>
    <nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
    <main><h1>Documentation</h1><ul>
      <li><a href="/install">Installation</a> - install the agent on Linux.</li>
      <li><a href="/config">Configuration</a> - every setting and its default.</li>
      <li><a href="/backup">Backups</a> - nightly snapshots and restore.</li>
    </ul></main></body></html>"""
    markdown, title = read_html(html)
    assert title == "Docs"
    assert markdown == (
        "# Documentation\n\n"
        "- Installation - install the agent on Linux.\n"
        "- Configuration - every setting and its default.\n"
        "- Backups - nightly snapshots and restore."
    )


@pytest.mark.parametrize(
    ("furniture", "part", "reason"),
    [
        ("<script>var tracking = 1;</script>", "script", "not displayed"),
        ("<style>p { color: red }</style>", "style", "not displayed"),
        ("<noscript>Enable JavaScript</noscript>", "noscript", "not displayed"),
        ("<template><p>Row</p></template>", "template", "not displayed"),
        ("<nav><a href='/'>Home</a></nav>", "nav", FURNITURE),
        ("<div role='navigation'>Home | HR</div>", "nav", FURNITURE),
        ("<div role='search'><input name='q'> Search</div>", "nav", FURNITURE),
        ("<ol class='breadcrumb'><li>Home</li><li>HR</li></ol>", "nav", FURNITURE),
        ("<div class='cookie-notice'>We use cookies. Accept?</div>", "cookie banner", FURNITURE),
        ("<div id='onetrust-consent-sdk'><p>Your privacy</p></div>", "cookie banner", FURNITURE),
        ("<div class='gdpr'>Accept all</div>", "cookie banner", FURNITURE),
        ("<div role='dialog' class='cc-banner'>Got it</div>", "cookie banner", FURNITURE),
        ("<div role='alertdialog' aria-label='Cookie settings'>Allow</div>", "cookie banner", FURNITURE),
        ("<header>Company intranet</header>", "page header", FURNITURE),
        ("<div role='banner'>Company intranet</div>", "page header", FURNITURE),
        ("<div id='site-header'>Company intranet</div>", "page header", FURNITURE),
        ("<footer>Copyright 2024</footer>", "page footer", FURNITURE),
        ("<div role='contentinfo'>Copyright 2024</div>", "page footer", FURNITURE),
        ("<div class='footer'>Copyright 2024</div>", "page footer", FURNITURE),
        ("<aside>Related links</aside>", "sidebar", FURNITURE),
        ("<div role='complementary'>Related links</div>", "sidebar", FURNITURE),
        ("<div class='left-sidebar'>Related links</div>", "sidebar", FURNITURE),
        ("<form><input name='q'> Search</form>", "form", FURNITURE),
        ("<iframe>Your browser has no frames</iframe>", "iframe", FURNITURE),
        ("<svg><title>Logo</title></svg>", "svg", FURNITURE),
        ("<div hidden>Draft text</div>", "hidden element", "hidden"),
        ("<span aria-hidden='true'>Icon</span>", "hidden element", "hidden"),
        ("<div style='display: none'>Draft text</div>", "hidden element", "hidden"),
        ("<p style='visibility:hidden'>Draft text</p>", "hidden element", "hidden"),
        ("<dialog><p>Subscribe!</p></dialog>", "hidden element", "hidden"),
    ],
)
def test_each_kind_of_furniture_is_dropped_and_reported(furniture, part, reason):
    markdown, report = read(f"<html><body>{furniture}<p>Kept text.</p></body></html>")
    assert markdown == "Kept text."
    assert report.dropped == [{"part": part, "reason": reason, "count": 1}]
    assert report.warnings == []


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<article><header><h1>News</h1></header><p>Body.</p></article>", "# News\n\nBody."),
        (
            "<section><header><h2>Part</h2></header><p>Body.</p><footer>Signed</footer></section>",
            "## Part\n\nBody.\n\nSigned",
        ),
        ("<article><p>Body.</p><aside>Note: unplug first.</aside></article>", "Body.\n\nNote: unplug first."),
        ("<form id='page'><h1>Title</h1><p>Body.</p><input name='x'></form>", "# Title\n\nBody."),
        ("<div class='with-sidebar'><h1>Title</h1><p>Body.</p></div>", "# Title\n\nBody."),
        ("<div class='cookie-page'><main><p>About our cookies.</p></main></div>", "About our cookies."),
        (
            "<article class='cookie-recipe'><h2>Cookies</h2><p>Bake at 180C.</p></article>",
            "## Cookies\n\nBake at 180C.",
        ),
        ("<dialog open><p>Open dialog text.</p></dialog>", "Open dialog text."),
    ],
)
def test_content_that_looks_like_furniture_is_kept(html, expected):
    markdown, report = read(f"<body>{html}</body>")
    assert markdown == expected
    assert report.dropped == []


def test_tables_are_pipe_tables_with_a_header_row():
    html = """<body><h1>Prices</h1>
    <table><thead><tr><th>Part</th><th>Price</th></tr></thead>
    <tbody><tr><td>P-1077</td><td>62.75</td></tr><tr><td>P-1078</td><td>15.50</td></tr></tbody></table>
    <table><tr><td>Name</td><td>Role</td></tr><tr><td>Priya</td><td>Lead</td></tr></table></body>"""
    markdown, report = read(html)
    assert markdown.split("\n") == [
        "# Prices",
        "",
        "| Part | Price |",
        "| --- | --- |",
        "| P-1077 | 62.75 |",
        "| P-1078 | 15.50 |",
        "",
        "| Name | Role |",
        "| --- | --- |",
        "| Priya | Lead |",
    ]
    assert report.tables == 2
    assert report.parser == "beautifulsoup4+markdownify"


def test_chinese_page():
    html = """<html><head><title>年假</title></head><body><nav>首页 | 关于</nav>
    <article><h1>年假政策</h1><p>员工每年享有十五天带薪年假。</p><h2>病假</h2><p>病假需要提供医生证明。</p></article>
    <footer>版权所有</footer></body></html>"""
    report = ParseReport()
    markdown, title = read_html(html, report)
    assert title == "年假"
    assert markdown == "# 年假政策\n\n员工每年享有十五天带薪年假。\n\n## 病假\n\n病假需要提供医生证明。"
    assert [entry["part"] for entry in report.dropped] == ["nav", "page footer"]


@pytest.mark.parametrize(
    "html",
    ["<body><p>Gate code is 4471.</p></body>", "Gate code is 4471.", "<p>Gate code is 4471.</p>"],
)
def test_a_page_with_only_a_body_is_kept(html):
    assert read(html) == ("Gate code is 4471.", ParseReport(parser="beautifulsoup4+markdownify"))


def test_text_outside_main_is_dropped_and_counted():
    html = """<body><div class="promo">Buy now</div>
    <main><h1>Leave</h1><p>Staff get 25 days of annual leave.</p></main>
    <p>Last edited by Bob.</p></body>"""
    markdown, report = read(html)
    assert markdown == "# Leave\n\nStaff get 25 days of annual leave."
    assert report.dropped == [
        {"part": "text outside <main>", "reason": "not the page's main content", "count": 2}
    ]
    assert report.warnings == []


def test_a_main_holding_less_than_the_rest_of_the_page_keeps_the_page_and_warns():
    html = """<body><main><p>Welcome.</p></main>
    <div><p>The answer lies outside main, in this much longer text.</p></div></body>"""
    markdown, report = read(html)
    assert markdown == "Welcome.\n\nThe answer lies outside main, in this much longer text."
    assert report.dropped == []
    assert report.warnings == [
        "Most of the page's text lies outside its <main> element, so the whole page was kept: "
        "it may include page furniture."
    ]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<nav><ul><li><a href=a>Install guide</a></li><li><a href=b>Config guide</a></li></ul></nav>",
            "- Install guide\n- Config guide",
        ),
        (
            "<header>Site</header><div style='display:none'><p>Rendered by a script.</p></div>",
            "Site\n\nRendered by a script.",
        ),
    ],
)
def test_a_page_that_is_all_furniture_keeps_it_and_warns(html, expected):
    markdown, report = read(f"<html><head><script>x()</script></head><body>{html}</body></html>")
    assert markdown == expected
    assert report.dropped == [{"part": "script", "reason": "not displayed", "count": 1}]
    assert report.warnings == [
        "The page has no text outside its navigation, header, footer, sidebars or hidden elements, "
        "so those were kept."
    ]


def test_case_faq_noisy_keeps_all_three_articles():
    document = parse(CASES / "faq_noisy.html", HTML)
    assert document.metadata["title"] == "Zorblax FAQ"
    assert document.text.split("\n\n") == [
        "## How do I reset the warehouse gate?",
        "Hold the red button for ten seconds until the gate light blinks twice.",
        "## Where is the spare key kept?",
        "The spare key is kept in the blue lockbox next to loading dock C.",
        "## Who approves overtime?",
        "Overtime is approved by the shift lead, currently Priya Natarajan.",
    ]
    assert document.report.dropped == [
        {"part": "nav", "reason": FURNITURE, "count": 1},
        {"part": "cookie banner", "reason": FURNITURE, "count": 1},
        {"part": "page header", "reason": FURNITURE, "count": 1},
        {"part": "page footer", "reason": FURNITURE, "count": 1},
        {"part": "script", "reason": "not displayed", "count": 3},
        {"part": "style", "reason": "not displayed", "count": 1},
    ]
    assert document.report.parser == "beautifulsoup4+markdownify"
    assert document.report.warnings == []


def test_pipe_in_a_table_cell_stays_in_its_cell():
    """A literal | would split the cell into two columns of the Markdown table."""
    html = "<table><tr><th>Code</th><th>Note</th></tr><tr><td>a | b</td><td>c</td></tr></table>"
    markdown, _ = read_html(html)
    assert markdown.strip().split("\n") == ["| Code | Note |", "| --- | --- |", "| a \\| b | c |"]
