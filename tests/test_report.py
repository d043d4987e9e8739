"""`probe report`: the numbers on the page equal the records; the page works in a real browser."""

from __future__ import annotations

import csv
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from probe.report.table import COLUMNS

TINY = ("--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--vision", "baseline/pixels-16",
        "--text", "test/tiny-bert")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, shared_cache):
    """Records of a small sweep (with a failure and similarity records) and the report built from them."""
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
    ran = probe("--registry", str(root / "mine.toml"), "run", *TINY, "--vision", "mine/broken-vit", "--epochs", "2")
    assert ran.returncode == 1 and "3 written, 1 failed" in ran.stderr, ran.stderr
    assert probe("select", *TINY).returncode == 0
    built = probe("report", "--out", str(root / "reports"))
    assert built.returncode == 0, built.stderr
    assert f"leaderboard: {(root / 'reports' / 'leaderboard.html').resolve()}" in built.stdout
    return root


class Cells(HTMLParser):
    """Rows of the leaderboard table as lists of (data-v, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str | None, str]]] = []
        self.in_board = self.in_body = False
        self.cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "leaderboard":
            self.in_board = True
        elif self.in_board and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append([])
        elif self.in_body and tag == "td":
            self.cell = [attrs.get("data-v"), ""]

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "table":
            self.in_board = self.in_body = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (root / "results" / "records" / "alignment").rglob("*.json")]


def test_html_csv_and_json_hold_the_record_numbers(report_dir):
    ok = {(r["vision"]["name"], r["text"]["name"]): r for r in records(report_dir) if r["status"] == "ok"}
    keys = [k for k, _, _ in COLUMNS]
    parser = Cells()
    html = (report_dir / "reports" / "leaderboard.html").read_text()
    parser.feed(html)
    assert len(parser.rows) == 3
    for cells in parser.rows:
        record = ok[(cells[0][0], cells[1][0])]
        for key in ("alignment/probing_score", "retrieval/i2t_R@1", "retrieval/t2i_R@10", "compositional/group"):
            assert float(cells[keys.index(key)][0]) == record["metrics"][key], key
        lo, hi = record["intervals"]["alignment/probing_score"]
        assert float(cells[keys.index("alignment/probing_score_lo")][0]) == lo
        assert float(cells[keys.index("alignment/probing_score_hi")][0]) == hi
        sim = cells[keys.index("similarity/mutual_knn")][0]
        assert sim and 0 <= float(sim) <= 1
    assert "control" in html and "features of mine/broken-vit failed" in html  # controls marked; failure with its reason
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # self-contained
    table = json.loads((report_dir / "reports" / "leaderboard.json").read_text())
    assert len(table["rows"]) == 3 and table["failures"][0]["vision"] == "mine/broken-vit"
    with (report_dir / "reports" / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row, json_row in zip(rows, table["rows"], strict=True):
        record = ok[(row["vision"], row["text"])]
        assert float(row["alignment/probing_score"]) == record["metrics"]["alignment/probing_score"]
        assert json_row["zeroshot/shape_top1"] == record["metrics"]["zeroshot/shape_top1"]
    pixel_row = next(r for r in table["rows"] if r["vision"] == "baseline/pixels-16")
    assert pixel_row["vision_control"] is True
    assert {p.name for p in (report_dir / "reports" / "plots").iterdir()} >= {"heatmap.png", "heads_losses.png",
                                                                              "selection_vs_probing.png"}


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
def test_leaderboard_sorts_and_filters_in_chromium(report_dir):
    from playwright.sync_api import sync_playwright

    executable = _browser()
    page_url = (report_dir / "reports" / "leaderboard.html").resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(page_url)

        def column(index: int) -> list[str]:
            return page.eval_on_selector_all(
                "#leaderboard tbody tr", f"rows => rows.map(r => r.cells[{index}].dataset.v)")

        header = page.locator("#leaderboard th", has_text="vision").first
        header.click()
        ascending = column(0)
        assert ascending == sorted(ascending)
        header.click()
        assert column(0) == sorted(ascending, reverse=True)
        assert header.get_attribute("aria-sort") == "descending"
        score = page.locator("#leaderboard th", has_text="probing score")
        score.focus()
        page.keyboard.press("Enter")  # headers are reachable and sortable from the keyboard
        values = [float(v) for v in column([k for k, _, _ in COLUMNS].index("alignment/probing_score"))]
        assert values == sorted(values, reverse=True)  # a score column's first sort puts the best on top
        assert score.get_attribute("aria-sort") == "descending" and header.get_attribute("aria-sort") == "none"
        page.fill("#filter", "pixels")
        visible = page.locator("#leaderboard tbody tr:visible")
        assert visible.count() == 1 and "pixels" in visible.first.inner_text()
        page.fill("#filter", "pixels tiny")  # words are ANDed, in any order
        assert visible.count() == 1
        page.fill("#filter", "pixels nosuchword")
        assert visible.count() == 0
        page.fill("#filter", "")
        page.uncheck("#controls")
        assert page.locator("#leaderboard tbody tr:visible").count() == 2
        page.check("#controls")
        page.locator("#leaderboard details summary").first.click()
        assert "versions" in page.locator("#leaderboard details pre").first.inner_text()
        shot = report_dir / "reports" / "leaderboard.png"
        page.screenshot(path=str(shot), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(page_url)
        # on a phone the page is as wide as the screen: tables scroll inside it, plots shrink to fit
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        browser.close()
    assert shot.stat().st_size > 10_000
    assert problems == [] and requests == []
