"""`probe report`: the numbers on the page equal the records; the page works in a real browser."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

TINY = ("--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--vision", "baseline/pixels-16",
        "--text", "test/tiny-bert")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, shared_cache):
    """Records of a small sweep (fitted on shapes, scored in-domain and on shapes-ood, two learning
    rates, with a failure and similarity records) and the report built from them."""
    import subprocess
    import sys

    from conftest import ROOT

    root = tmp_path_factory.mktemp("report")
    env = {**os.environ, "PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(root / "results"),
           "HF_HUB_OFFLINE": "1"}

    def probe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "probe", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)

    from test_run import BROKEN

    (root / "garbage.pth").write_bytes(b"not a checkpoint")  # passes the up-front check, fails to load
    (root / "mine.toml").write_text(BROKEN.format(weights=root / "garbage.pth"))
    ran = probe("--registry", str(root / "mine.toml"), "run", *TINY, "--vision", "mine/broken-vit", "--epochs", "2",
                "--lr", "1e-3", "--lr", "3e-4", "--train", "shapes", "--eval", "shapes", "--eval", "shapes-ood")
    assert ran.returncode == 1 and "12 written, 4 failed" in ran.stderr, ran.stderr
    assert probe("select", *TINY).returncode == 0
    built = probe("report", "--out", str(root / "reports"))
    assert built.returncode == 0, built.stderr
    assert f"leaderboard: {(root / 'reports' / 'leaderboard.html').resolve()}" in built.stdout
    return root


class Boards(HTMLParser):
    """Every ranked table of the page: its id, column keys and rows as lists of (data-v, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.table: dict | None = None
        self.cell: list | None = None
        self.in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "board" in (attrs.get("class") or ""):
            self.table = self.tables.setdefault(attrs["id"], {"keys": [], "rows": []})
        elif self.table is not None and tag == "th":
            self.table["keys"].append(attrs.get("data-key"))
        elif self.table is not None and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr" and "main" in (attrs.get("class") or ""):
            self.table["rows"].append([])
            self.row_open = True
        elif self.in_body and tag == "tr":
            self.row_open = False  # a details row
        elif self.in_body and tag == "td" and self.row_open:
            self.cell = [attrs.get("data-v"), ""]

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.table["rows"][-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "table":
            self.table, self.in_body = None, False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (root / "results" / "records" / "alignment").rglob("*.json")]


def _tag(record: dict) -> str:
    """The label the terminal gives the record's head configuration."""
    from probe.align.config import ProbeConfig

    return ProbeConfig(**record["config"]).tag


def test_each_benchmark_has_its_own_ranked_table_holding_the_record_numbers(report_dir):
    from scipy.stats import rankdata

    ok = {(r["vision"]["name"], r["text"]["name"], _tag(r), r["benchmark"]["name"]): r
          for r in records(report_dir) if r["status"] == "ok"}
    assert len(ok) == 12
    parser = Boards()
    html = (report_dir / "reports" / "leaderboard.html").read_text()
    parser.feed(html)
    boards = {name: t for name, t in parser.tables.items() if name.startswith("board-")}
    assert set(boards) == {"board-shapes-test-shapes", "board-shapes-ood-test-shapes"}  # never ranked together
    for name, board in boards.items():
        benchmark = "shapes-ood" if "ood" in name else "shapes"
        assert len(board["rows"]) == 6 and board["keys"][:3] == ["rank", "pair", "config"]
        scores = []
        for cells in board["rows"]:
            value = dict(zip(board["keys"], cells, strict=True))
            vision, text = next((v, t) for (v, t, _, _) in ok if value["pair"][0] == f"{v} {t}")
            record = ok[(vision, text, value["config"][0], benchmark)]
            for key in ("alignment/probing_score", "retrieval/i2t_R@1", "retrieval/t2i_R@10", "compositional/group"):
                if key in board["keys"]:
                    assert float(value[key][0]) == record["metrics"][key], key
            lo, hi = record["intervals"]["alignment/probing_score"]
            assert f"[{lo:.2f}, {hi:.2f}]" in value["alignment/probing_score"][1]  # the interval in the score cell
            sim = value["similarity/mutual_knn"][0]
            assert sim and 0 <= float(sim) <= 1
            scores.append(record["metrics"]["alignment/probing_score"])
        # rank = position of a real pair by the probing score, ties sharing the better rank (checked against
        # scipy); a control row is shown in score order with no rank ("–"), so real ranks have no gaps
        controls = ["(control)" in cells[1][1] or "control" in cells[1][1] for cells in board["rows"]]
        real_scores = [s for s, c in zip(scores, controls, strict=True) if not c]
        assert [int(cells[0][0]) for cells, c in zip(board["rows"], controls, strict=True) if not c] == list(
            rankdata([-s for s in real_scores], method="min"))
        assert all(cells[0] == ("", "–") for cells, c in zip(board["rows"], controls, strict=True) if c)
        assert any(controls) and scores == sorted(scores, reverse=True)
    assert "control" in html and "features of mine/broken-vit failed" in html  # controls marked; failure with its reason
    assert "it mixes in-domain and\ntransfer scores" in html  # the suite's mean says what it averages
    assert '<span class="v" title="test/tiny-vit">tiny-vit' in html  # short names, the full one on hover
    assert "cannot miss" not in html  # explained only where a value carries the mark
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # self-contained
    table = json.loads((report_dir / "reports" / "leaderboard.json").read_text())
    assert len(table["rows"]) == 12 and table["failures"][0]["vision"] == "mine/broken-vit"
    with (report_dir / "reports" / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row, json_row in zip(rows, table["rows"], strict=True):
        key = (row["vision"], row["text"], row["config"], row["benchmark"].split("/")[0])
        record = ok[key]
        assert float(row["alignment/probing_score"]) == record["metrics"]["alignment/probing_score"]
        assert float(row["lr"]) == record["config"]["lr"] and int(row["epochs"]) == 2 and row["seed"] == "0"
        assert json_row["zeroshot/shape_top1"] == record["metrics"]["zeroshot/shape_top1"]
        for metric, (low, high) in record["intervals"].items():  # every metric's interval, not only the primary's
            assert (json_row[f"{metric}_lo"], json_row[f"{metric}_hi"]) == (low, high), metric
            assert float(row[f"{metric}_lo"]) == low
    pixel_row = next(r for r in table["rows"] if r["vision"] == "baseline/pixels-16")
    assert pixel_row["vision_control"] is True
    plots = {p.name for p in (report_dir / "reports" / "plots").iterdir()}
    for stem in ("shapes-test-shapes", "shapes-ood-test-shapes"):  # each section its own figures, with and
        assert {f"{stem}-heatmap.png", f"{stem}-heatmap-real.png", f"{stem}-heads.png",  # without controls
                f"{stem}-selection.png", f"{stem}-selection-real.png"} <= plots


def test_report_without_results_or_with_a_future_schema(run_cli, tmp_path, report_dir):
    assert_one_line_error(run_cli("report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "o")),
                          "no results under", "probe run")
    future = tmp_path / "future"
    shutil.copytree(report_dir / "results" / "records", future / "records")
    victim = next((future / "records" / "alignment").rglob("*.json"))
    record = json.loads(victim.read_text())
    record["schema_version"] = 99
    victim.write_text(json.dumps(record))
    # a record from a newer probe is named and skipped; the others still make the leaderboard
    newer = run_cli("report", "--results", str(future), "--out", str(tmp_path / "o"))
    assert newer.returncode == 0, newer.stderr
    assert "schema_version 99" in newer.stderr and "reads 1" in newer.stderr and "skipped" in newer.stderr
    rows = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["rows"]
    assert rows and victim.name not in json.dumps(rows)
    # a bench.json of the wrong shape in the report folder is named and left out; the page is written
    for bad in ('[1, 2]', '{"cases": "fast"}', '{"cases": [{"case": "x", "ours_s": "0.1", "baseline_s": 1, "ratio": 2}]}',
                "not json"):
        (tmp_path / "o" / "bench.json").write_text(bad)
        odd = run_cli("report", "--results", str(future), "--out", str(tmp_path / "o"))
        assert odd.returncode == 0 and "Traceback" not in odd.stderr, odd.stderr
        assert "bench.json left out of the leaderboard" in odd.stderr
    good = {"cases": [{"case": "similarity", "ours_s": 0.5, "baseline_s": 2.0, "ratio": 4.0, "agree": True, "note": ""}],
            "stamp": {"commit": "0123456789abcdef", "date": "2026-12-07", "cpu": "AMD EPYC", "cores": 2, "gpu": None,
                      "command": "python -m benchmarks similarity"}}
    (tmp_path / "o" / "bench.json").write_text(json.dumps(good))
    shown = run_cli("report", "--results", str(future), "--out", str(tmp_path / "o"))
    assert shown.returncode == 0 and "bench.json" not in shown.stderr
    page = (tmp_path / "o" / "leaderboard.html").read_text()
    assert "4.00x" in page  # and where and how the figures were measured
    assert "Measured at 0123456789ab on 2026-12-07, AMD EPYC (2 cores): python -m benchmarks similarity" in page


def _browser():
    chromium = Path("/usr/bin/chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        chromium = Path("/nonexistent")
    if not chromium.exists():
        if os.environ.get("PROBE_REQUIRE_BROWSER"):
            pytest.fail("PROBE_REQUIRE_BROWSER is set but Debian's chromium or playwright is missing")
        pytest.skip("needs Debian's chromium (/usr/bin/chromium) and playwright")
    return str(chromium)


@pytest.mark.browser
def test_leaderboard_tabs_sorting_filter_controls_and_phone_width_in_chromium(report_dir):
    from playwright.sync_api import sync_playwright

    executable = _browser()
    page_url = (report_dir / "reports" / "leaderboard.html").resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(page_url)
        tabs = page.locator("[role=tab]")
        assert tabs.all_inner_texts() == ["suite (mean)", "shapes-ood/test", "shapes/test"]
        assert page.locator("[role=tabpanel]:visible").count() == 1  # the suite first, one panel at a time
        page.locator("#tab-shapes-test-shapes").click()
        panel = page.locator("#panel-shapes-test-shapes")
        assert panel.is_visible() and page.locator("[role=tabpanel]:visible").count() == 1
        page.keyboard.press("ArrowLeft")  # arrow keys move between tabs, as in any tab list
        assert page.locator("#panel-shapes-test-shapes").is_hidden()
        page.locator("#tab-shapes-test-shapes").click()
        board = "#board-shapes-test-shapes"

        def column(key: str) -> list[str]:
            return page.eval_on_selector(board, """(t, key) => {
                const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.dataset.key === key);
                return Array.from(t.tBodies[0].rows).filter(r => r.classList.contains('main'))
                    .map(r => r.cells[i].dataset.v); }""", key)

        def visible_rows() -> int:
            return page.locator(f"{board} tbody tr.main:visible").count()

        header = page.locator(f"{board} th[data-key=pair]")
        header.click()
        ascending = column("pair")
        assert ascending == sorted(ascending)
        header.click()
        assert column("pair") == sorted(ascending, reverse=True) and header.get_attribute("aria-sort") == "descending"
        score = page.locator(f"{board} th[data-key='alignment/probing_score']")
        score.focus()
        page.keyboard.press("Enter")  # headers are reachable and sortable from the keyboard
        values = [float(v) for v in column("alignment/probing_score")]
        assert values == sorted(values, reverse=True)  # a score column's first sort puts the best on top
        assert score.get_attribute("aria-sort") == "descending" and header.get_attribute("aria-sort") == "none"
        page.locator(f"{board} th[data-key=rank]").click()
        ranks = column("rank")
        ranked = [int(v) for v in ranks if v]
        assert ranked == sorted(ranked) and ranks[len(ranked):] == [""] * (len(ranks) - len(ranked))  # 1 first, controls last
        page.fill("#filter", "pixels")
        assert visible_rows() == 2 and "pixels" in page.locator(f"{board} tbody tr.main:visible").first.inner_text()
        page.fill("#filter", "tiny-bert pixels lr0.0003")  # words are ANDed, in any order, over names and settings
        assert visible_rows() == 1
        page.fill("#filter", "pixels nosuchword")
        assert visible_rows() == 0 and panel.locator(".count").inner_text() == "0"
        page.fill("#filter", "")
        figure = panel.locator("figure", has=page.locator("img[alt^='Score per vision x text pair']"))
        with_controls = figure.locator("img").get_attribute("src")
        page.uncheck("#controls")  # the switch reaches the rows, the counts and the plots
        assert visible_rows() == 4 and panel.locator(".count").inner_text() == "4"
        assert page.locator("#shown").inner_text() == "8"
        assert figure.locator("img").get_attribute("src") == figure.locator("img").get_attribute("data-real")
        assert figure.locator("img").get_attribute("src") != with_controls
        page.check("#controls")
        assert figure.locator("img").get_attribute("src") == with_controls and visible_rows() == 6
        details = panel.locator("button.more").first
        details.click()
        opened = panel.locator("tr.detail:visible")
        assert opened.count() == 1 and "versions" in opened.inner_text() and details.get_attribute("aria-expanded") == "true"
        page.locator(".chooser summary").click()
        page.uncheck("input[data-column='config']")  # the column chooser hides a column in every table
        assert page.locator(f"{board} th[data-key=config]").is_hidden()
        assert page.locator(f"{board} tbody tr.main td:nth-child(3):visible").count() == 0
        page.check("input[data-column='config']")
        artefacts = Path(os.environ.get("PROBE_TEST_ARTEFACTS", report_dir / "reports"))
        artefacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artefacts / "leaderboard-1400.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(page_url + "#show=shapes-test-shapes")
        assert phone.locator("#panel-shapes-test-shapes").is_visible()  # a tab can be linked to
        assert phone.evaluate("window.scrollY") == 0  # and the page opens at its title, not scrolled to the tab
        older = browser.new_page(viewport={"width": 390, "height": 844})
        older.goto(page_url + "#tab-shapes-test-shapes")  # an older link still selects its tab, unscrolled
        assert older.locator("#panel-shapes-test-shapes").is_visible() and older.evaluate("window.scrollY") == 0
        older.close()
        # on a phone the page is as wide as the screen: tables scroll inside it, plots shrink to fit
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        pinned = phone.locator("#board-shapes-test-shapes tbody tr.main td.pair").first
        before = pinned.bounding_box()["x"]
        phone.locator("#panel-shapes-test-shapes .scroll").first.evaluate("s => { s.scrollLeft = 400; }")
        assert pinned.bounding_box()["x"] == before  # the pair column stays in view while the table scrolls
        # each tab opens with its answer at a phone's width too, and a plot shrunk to fit opens full size on a tap
        answer = phone.locator("#panel-shapes-test-shapes .answer")
        assert answer.is_visible() and answer.inner_text().startswith("Best real pair:")
        plot = phone.locator("#panel-shapes-test-shapes .plots img").first
        natural = plot.evaluate("i => i.naturalWidth")
        assert plot.bounding_box()["width"] < natural  # shrunk: its 7-8 pt type is ~4 px here
        plot.click()
        assert abs(plot.bounding_box()["width"] - natural) <= 2  # full size, type as drawn
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # scrolling inside its figure
        phone.screenshot(path=str(artefacts / "leaderboard-390-plot.png"))
        plot.click()
        phone.screenshot(path=str(artefacts / "leaderboard-390.png"), full_page=True)
        browser.close()
    assert (artefacts / "leaderboard-1400.png").stat().st_size > 10_000
    assert (artefacts / "leaderboard-390.png").stat().st_size > 10_000
    assert problems == [] and requests == []


def test_figures_are_stored_in_256_colours_where_that_is_smaller_and_look_the_same(tmp_path):
    """A plot with lines, markers, a colour map and text: at most 256 colours takes well under half
    the bytes of matplotlib's own PNG, and its pixels are matplotlib's, or within a few levels."""
    import io

    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from probe.report.plots import save_figure

    def figure():
        fig, ax = plt.subplots(figsize=(6, 4))
        rng = np.random.default_rng(0)
        for i in range(6):
            ax.plot(rng.random(20).cumsum(), marker="o", label=f"pair {i}")
        ax.imshow(rng.random((8, 6)), cmap="viridis", extent=(0, 5, 0, 5), aspect="auto")
        ax.set_title("score per pair")
        ax.legend(fontsize=7)
        return fig

    full = io.BytesIO()
    fig = figure()
    fig.savefig(full, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    path = save_figure(figure(), tmp_path / "plot.png", dpi=100, bbox_inches="tight")
    assert path.stat().st_size < len(full.getvalue()) / 2
    with Image.open(path) as stored:
        assert stored.mode == "P" and len(stored.getcolors(257) or []) <= 256
        mine = np.asarray(stored.convert("RGB"), dtype=int)
    theirs = np.asarray(Image.open(io.BytesIO(full.getvalue())).convert("RGB"), dtype=int)
    assert mine.shape == theirs.shape
    off = np.abs(mine - theirs).max(axis=2)
    assert (off == 0).mean() > 0.9 and off.mean() < 2 and np.percentile(off, 99) <= 24
    assert not plt.get_fignums()  # closed


def test_results_the_report_cannot_vouch_for_are_marked_and_counted(run_cli, tmp_path, report_dir):
    """A record without an identity, and one whose encoder entry changed in the registry since, are
    marked "not current" with their reason; every other row stays unmarked."""
    copied = tmp_path / "results"
    shutil.copytree(report_dir / "results" / "records", copied / "records")
    files = sorted((copied / "records" / "alignment").rglob("*.json"))
    ok = [p for p in files if json.loads(p.read_text())["status"] == "ok"]
    older, moved = ok[0], next(p for p in ok[1:] if json.loads(p.read_text())["vision"]["name"] == "test/tiny-vit")
    record = json.loads(older.read_text())
    del record["identity"]
    older.write_text(json.dumps(record))
    record = json.loads(moved.read_text())
    was = record["vision"]["weights"]
    record["vision"]["weights"] = "an-older-checkpoint"
    moved.write_text(json.dumps(record))
    built = run_cli("report", "--results", str(copied), "--out", str(tmp_path / "o"))
    assert built.returncode == 0, built.stderr
    assert f"2 of {len(ok)} result(s) cannot be vouched for as current" in built.stderr
    rows = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["rows"]
    assert len(rows) == len(ok)
    doubts = sorted(row["doubt"] for row in rows if row["doubt"])
    assert doubts == sorted([
        "written before records held what produced them; `probe run --skip-existing` recomputes it",
        f"test/tiny-vit changed in the registry since (weights 'an-older-checkpoint' → {was!r}); "
        "`probe run --skip-existing` recomputes it"])
    html = (tmp_path / "o" / "leaderboard.html").read_text()
    assert html.count('<span class="badge doubt" title=') == 2 and "<b>2 result(s) marked" in html


def test_each_tab_opens_with_the_answer_computed_from_the_records(report_dir):
    """The in-domain tab's sentence names the best real pair by probing score, counts the real results
    whose interval reaches its lower bound, and names the best control: recomputed here from the
    leaderboard's JSON rows."""
    import html as html_lib

    from probe.records import keys

    page = html_lib.unescape((report_dir / "reports" / "leaderboard.html").read_text())
    rows = [r for r in json.loads((report_dir / "reports" / "leaderboard.json").read_text())["rows"]
            if r["benchmark"].startswith("shapes/") and r[keys.PROBING_SCORE] is not None]
    lo, hi = keys.interval_bounds(keys.PROBING_SCORE)
    real = [r for r in rows if not (r["vision_control"] or r["text_control"])]
    best = max(real, key=lambda r: r[keys.PROBING_SCORE])
    ties = [r for r in real if r is not best and r[hi] >= best[lo]]
    expected = (f"Best real pair: {best['vision']} × {best['text']} ({best['config']}), "
                f"{best[keys.PROBING_SCORE]:.3f} [{best[lo]:.3f}, {best[hi]:.3f}]")
    answers = [line for line in page.splitlines() if line.startswith('<p class="answer">')]
    assert answers and any(expected in line for line in answers), answers
    line = next(line for line in answers if expected in line)
    assert (f"{len(ties)} other real result(s) tied with it" in line) if ties else "no other real result" in line
    controls = [r for r in rows if r["vision_control"] or r["text_control"]]
    if controls:
        control = max(controls, key=lambda r: r[keys.PROBING_SCORE])
        assert f"Best control: {control['vision']} × {control['text']}" in line


def test_the_answer_by_hand():
    """Five real results of four pairs and one control: the best (0.50 [0.45, 0.55]) ties with the
    result whose upper bound reaches 0.45; the control is 0.30 below, intervals apart; the agreement is
    over the four pairs, each at its best result (similarity and score rise together: r = 1)."""
    from probe.report.answer import answer

    def row(vision, score, knn=None, control=False):
        return {"vision": vision, "text": "t", "config": "c", "vision_control": control, "text_control": False,
                "score": ("m", score, score - 0.05, score + 0.05), "similarity/mutual_knn": knn}

    found = answer([row("a", 0.5, 0.3), row("a", 0.4, 0.3), row("b", 0.3, 0.2), row("c", 0.2, 0.1),
                    row("d", 0.1, 0.05), row("px", 0.2, control=True)])
    assert found["best"]["vision"] == "a" and [r["score"][1] for r in found["ties"]] == [0.4]
    assert found["margin"] == pytest.approx(0.3) and "+0.300, intervals apart" in found["sentence"]
    assert found["agreement"]["n"] == 4 and found["agreement"]["spearman"] == pytest.approx(1.0)
    assert answer([row("px", 0.2, control=True)]) is None  # no real pair: no answer


def test_the_head_plot_averages_only_pairs_that_have_every_configuration():
    """Twenty pairs tried with a linear head (mean 0.28) and three strong ones also with a star head:
    each of the three falls (0.45 -> 0.36), so the paired mean falls, though the star head's unpaired
    mean (0.36) is above the linear head's over all twenty (0.28)."""
    from probe.report.plots import paired_means

    def row(vision, config, score):
        return {"vision": vision, "text": "t", "config": config, "score": ("m", score, None, None),
                "vision_control": False, "text_control": False}

    rows = [row(f"weak{i}", "linear", 0.26) for i in range(17)]
    rows += [row(f"strong{i}", "linear", 0.45) for i in range(3)] + [row(f"strong{i}", "star", 0.36) for i in range(3)]
    unpaired = {c: sum(s := [r["score"][1] for r in rows if r["config"] == c]) / len(s) for c in ("linear", "star")}
    assert unpaired["star"] > unpaired["linear"]  # the comparison the old plot drew
    configs, means, n = paired_means(rows)
    assert configs == ["linear", "star"] and n == 3 and means == pytest.approx([0.45, 0.36])  # paired: it falls
    assert paired_means([row("a", "linear", 0.1), row("b", "star", 0.2)])[1:] == (None, 0)


def test_a_plot_headline_is_over_real_pairs_first_and_labels_the_controls():
    """Controls far below every real pair make the correlation over everything high while the real
    pairs alone are anti-correlated: the headline leads with the real pairs."""
    from probe.report.plots import rank_headline

    def row(vision, sim, score, control=False):
        return {"vision": vision, "text": "t", "similarity/cka": sim, "score": ("m", score, None, None),
                "vision_control": control, "text_control": False}

    rows = [row("a", 0.9, 0.50), row("b", 0.8, 0.55), row("c", 0.7, 0.60), row("d", 0.6, 0.65),
            row("p1", 0.1, 0.05, True), row("p2", 0.2, 0.06, True), row("p3", 0.15, 0.04, True)]
    line = rank_headline(rows, "similarity/cka", "pair")
    assert line.startswith("Spearman r = -1.00 (p = 0.083) over 4 real pairs; with the controls: r = ")
    assert line.endswith("over 7 pairs") and "r = -1.00" not in line.split(";")[1]


def test_the_heatmap_colours_span_the_shown_values():
    from probe.report.plots import colour_range

    grid = np.array([[0.41, 0.45], [np.nan, 0.43]])
    assert colour_range(grid) == (0.41, 0.45)
    assert colour_range(np.array([[0.3]])) == (0.3, pytest.approx(0.3 + 1e-9))


def test_the_answer_says_chance_where_the_score_fixes_it():
    from probe.records import keys
    from probe.report.answer import answer

    row = {"vision": "v", "text": "t", "config": "c", "vision_control": False, "text_control": False,
           "score": (keys.COMPOSITIONAL_GROUP, 0.12, 0.05, 0.2), "chance": {keys.COMPOSITIONAL_GROUP: 1 / 6}}
    assert "; chance is 0.167" in answer([row])["sentence"]  # Winoground's group score: 1/6 by chance
    row["score"] = (keys.ZEROSHOT_MEAN_TOP1, 0.3, 0.2, 0.4)  # the mean top-1's chance: its tasks' mean
    row["chance"] = {keys.zeroshot("shape", 1): 1 / 7, keys.zeroshot("colour", 1): 1 / 5, keys.zeroshot("shape", 5): 5 / 7}
    assert f"; chance is {(1 / 7 + 1 / 5) / 2:.3f}" in answer([row])["sentence"]
    row["score"] = (keys.PROBING_SCORE, 0.12, 0.05, 0.2)
    assert "chance" not in answer([row])["sentence"]


def test_chance_levels_are_a_random_rankings_expected_scores():
    """Zero-shot top-k by chance is min(k, options) / options per image (a random ranking), averaged; with
    multiple-choice options each image's own count; mean per-class recall averages classes; Winoground's
    are Thrush et al.'s 25 / 25 / 16.67."""
    from types import SimpleNamespace

    import numpy as np

    from probe.evaluation.evaluate import chance_levels
    from probe.records import keys

    labels = np.array([0, 1, 2, 2, 2, 3, 4, 5, 6, -1])  # seven classes, one unlabelled image
    options = np.zeros((10, 7), dtype=bool)
    options[:, :4] = True  # four options an image, except two images with six
    options[[0, 1], :6] = True
    data = SimpleNamespace(labels={"shape": labels, "four_way": labels}, classes={"shape": list("abcdefg"),
                           "four_way": list("abcdefg")}, candidates={"four_way": options})
    swap = SimpleNamespace(swap_pairs=np.array([[0, 1]]))
    found = chance_levels(SimpleNamespace(eval=data, label_tasks=("shape", "four_way"), compositional=swap))
    assert found[keys.zeroshot("shape", 1)] == pytest.approx(1 / 7) and found[keys.zeroshot("shape", 5)] == pytest.approx(5 / 7)
    per_image = np.array([1 / 6, 1 / 6, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4])  # the nine labelled images
    assert found[keys.zeroshot("four_way", 1)] == pytest.approx(per_image.mean())
    assert keys.zeroshot("four_way", 5) not in found  # fewer than six options somewhere: no top-5
    by_class = [1 / 6, 1 / 6, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4]  # class 2's three images are each 1/4
    assert found[keys.zeroshot_per_class_recall("four_way")] == pytest.approx(np.mean(by_class))
    assert found[keys.compositional("group")] == pytest.approx(1 / 6) and found[keys.compositional("text")] == 0.25


def test_a_pairs_forecast_and_every_measured_interval_are_shown_beside_the_score(run_cli, tmp_path, report_dir):
    """A forecast record (probe forecast) puts each pair's forecast with its interval in the pair's rows of
    that benchmark, in the page, the CSV and the JSON; a cell with a measured interval shows it."""
    from probe.records.schema import ForecastRecord
    from probe.records.store import record_path, write_record

    copied = tmp_path / "results"
    shutil.copytree(report_dir / "results" / "records", copied / "records")
    ok = [r for r in records(report_dir) if r["status"] == "ok" and r["benchmark"]["name"] == "shapes-ood"]
    pair = (ok[0]["vision"]["name"], ok[0]["text"]["name"])
    label = f"shapes-ood/{ok[0]['benchmark']['split']}"
    row = {"vision": pair[0], "text": pair[1], "measured": 0.5, "forecast": 0.4321, "low": 0.3, "high": 0.55}
    write_record(record_path(copied, "forecast", "shapes", "any-any-x"),
                 ForecastRecord.new(dataset="shapes", benchmark=label, seed=0, config={
                     "head": None, "loss": None, "signals": ["similarity/mutual_knn"], "level": 0.9,
                     "validation": "leave one encoder out"}, spearman=None, spearman_p=None, coverage=0.9, rows=[row]))
    built = run_cli("report", "--results", str(copied), "--out", str(tmp_path / "o"))
    assert built.returncode == 0, built.stderr
    rows = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["rows"]
    shown = [r for r in rows if r["benchmark"] == label and (r["vision"], r["text"]) == pair]
    others = [r for r in rows if r not in shown]
    assert shown and all(r["forecast/probing_score"] == 0.4321 and r["forecast/probing_score_lo"] == 0.3
                         and r["forecast/probing_score_hi"] == 0.55 for r in shown)
    assert all(r["forecast/probing_score"] is None for r in others)
    html = (tmp_path / "o" / "leaderboard.html").read_text()
    assert "0.432 <span class=\"ci\">[0.30, 0.55]</span>" in html
    i2t = ok[0]["intervals"]["retrieval/i2t_R@1"]  # a column other than the score draws its interval too
    assert f"{ok[0]['metrics']['retrieval/i2t_R@1']:.3f} <span class=\"ci\">[{i2t[0]:.2f}, {i2t[1]:.2f}]</span>" in html


def test_the_grid_of_best_scores_carries_each_cells_interval_on_hover(report_dir):
    """The HTML grid beside the plots: one cell per pair, its value the pair's best score, its title the
    pair, the configuration and the 95% interval the record holds (the PNG heatmap cannot carry them)."""
    import html as html_lib

    page = (report_dir / "reports" / "leaderboard.html").read_text()
    rows = json.loads((report_dir / "reports" / "leaderboard.json").read_text())["rows"]
    cells = re.findall(r'<td style="background: (#[0-9a-f]{6}); color: #[0-9a-f]{6}" title="([^"]+)" data-v="([^"]+)"'
                       r' data-lo="([^"]+)" data-hi="([^"]+)">', page)
    assert cells
    for _background, title, value, low, high in cells:
        title = html_lib.unescape(title)
        pair, _, rest = title.partition(" (")
        vision, text = pair.split(" × ")
        config = rest.partition("): ")[0]
        match = [r for r in rows if (r["vision"], r["text"], r["config"]) == (vision, text, config)
                 and r["alignment/probing_score"] == pytest.approx(float(value))]
        assert match, title
        assert float(low) == pytest.approx(match[0]["alignment/probing_score_lo"])
        assert float(high) == pytest.approx(match[0]["alignment/probing_score_hi"])
        assert f"{float(value):.3f} [{float(low):.3f}, {float(high):.3f}]" in title
