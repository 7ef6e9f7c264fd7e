"""Metric columns are declared once (label, format, which way is better) and results.md, the
sweep's tables and the HTML view take their columns and their bold "best" from the declarations:
a metric registered from this file alone, lower is better, is bolded at its lowest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import html as lxml_html
from omegaconf import OmegaConf
from test_view import chromium, needs_browser
from viewstore import build_evaluation

from xlexp import report
from xlexp.evaluate import metrics
from xlexp.evaluate.metrics import Column, Metric
from xlexp.store import Store
from xlexp.view import write_view
from xlexp.view.read import read_path

ROOT = Path(__file__).resolve().parents[1]
ERRORS = {"deu": 3.0, "fra": 1.0}  # per language; the lowest (fra) is the best
ERR = Column("err_rate", "error rate", ".2f", higher_is_better=False)


@pytest.fixture
def err_metric():
    metrics.METRICS.register(
        "err_rate",
        Metric(
            (ERR,),
            lambda d, *_: {"err_rate": ERRORS[d.lang]},
            lambda rows, *_: {"err_rate": sum(r["err_rate"] for r in rows) / len(rows)},
        ),
    )
    yield ERR
    metrics.METRICS.unregister("err_rate")


def _summary(tmp_path: Path) -> dict:
    """A run's summary with metrics computed by the real summarize (no model): deu wins 2 of 3
    prompts, fra 1 of 3; both outputs are German / French as declared."""
    table = metrics.summarize(
        {
            "deu": {"prefs": [1.0, 1.0, 0.0], "outputs": ["a", "bb", "ccc"], "lang_fidelity": 1.0},
            "fra": {"prefs": [0.0, 0.0, 1.0], "outputs": ["a", "bb", "ccc"], "lang_fidelity": 1.0},
        },
        n_boot=20,
    )
    return {
        "metrics": table,
        "columns": metrics.stored_columns(),
        "stages": {},
        "store": str(tmp_path / "nowhere"),
    }


def _cells(markdown: str, title: str) -> dict[str, dict[str, str]]:
    """lang -> column label -> cell text, from the Markdown table under `title`."""
    lines = markdown.split(f"### {title}", 1)[1].strip().splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head[1:], cells[1:], strict=True))
    return rows


def test_metric_names_are_unchanged_so_is_the_metrics_key() -> None:
    # The metrics artifact's key holds these names in this order: a stored one is still found.
    # ("se" came with the LC bootstrap, which changed the metrics key anyway; "line_fidelity"
    # with the line-level rates: a metrics artifact made before is recomputed from the stored
    # verdicts, no judge call.)
    assert metrics.METRICS.names() == [
        "win_rate",
        "se",
        "lang_fidelity",
        "line_fidelity",
        "avg_len",
        "counts",
        "lc_win_rate",
    ]
    assert metrics.stored_columns()[:2] == [["win_rate", "win rate"], ["ci_low", "95% CI low"]]


def test_results_md_bolds_the_best_by_the_declared_direction(
    tmp_path: Path, err_metric: Column
) -> None:
    cfg = OmegaConf.create(
        {
            "model": {"name": "m"},
            "reference": {"name": "r"},
            "judge": {"name": "j"},
            "eval": {"judge_protocol": "alpaca_eval", "rtt": None},
        }
    )
    paths = report.write_results(tmp_path / "run", _summary(tmp_path), cfg)
    rows = _cells(paths["markdown"].read_text(), "m vs r, judged by j (alpaca_eval protocol)")
    assert (
        rows["fra"]["error rate"] == "**1.00**" and rows["deu"]["error rate"] == "3.00"
    )  # lower is better
    assert (
        rows["deu"]["win rate"] == "**66.67**" and rows["fra"]["win rate"] == "33.33"
    )  # higher is better
    assert rows["deu"]["n"] == rows["fra"]["n"] == "3"  # a count has no best, in its integer format
    assert rows["deu"]["lang fidelity"] == "**1.000**"  # ties as shown are all best
    assert "*" not in "".join(rows["avg"].values())  # the average is not a language
    assert "*" not in rows["deu"]["95% CI low"] + rows["fra"]["95% CI high"]


def test_sweep_tables_bold_the_lowest_of_a_lower_is_better_metric(err_metric: Column) -> None:
    labels = {"reference": "r", "judge": "j", "benchmark": "b"}
    rows = [
        report.system_from_labels(
            {**labels, "model": m}, {"deu": {"err_rate": e, "win_rate": w, "n": 3}}, key=m
        )
        for m, e, w in (("A", 2.5, 40.0), ("B", 0.5, 20.0))
    ]
    md = report.paper_table(rows, "err_rate")
    assert "| A | – | 2.50 |" in md and "| B | – | **0.50** |" in md
    md = report.paper_table(rows, "win_rate")
    assert "| A | – | **40.00** |" in md and "| B | – | 20.00 |" in md
    assert "**" not in report.paper_table(rows, "n") and "| A | – | 3 |" in report.paper_table(
        rows, "n"
    )  # no best


def test_view_page_data_carries_the_declared_columns(tmp_path: Path, err_metric: Column) -> None:
    build_evaluation(Store(tmp_path / "store"), 6, ["deu", "fra"])
    (system,) = read_path(tmp_path / "store")["evaluation"]
    cols = {c["key"]: c for c in system["columns"]}
    assert cols["err_rate"] == {
        "key": "err_rate",
        "label": "error rate",
        "format": ".2f",
        "higher_is_better": False,
    }
    assert cols["win_rate"]["higher_is_better"] is True and cols["n"] == {
        "key": "n",
        "label": "n",
        "format": "d",
        "higher_is_better": None,
    }
    assert system["metrics"]["fra"]["err_rate"] == 1.0
    assert list(cols)[:3] == ["win_rate", "ci_low", "ci_high"]  # the metrics artifact's order


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="no node on PATH")
def test_view_script_picks_the_best_by_direction_under_node(
    tmp_path: Path, err_metric: Column
) -> None:
    """columns.js, the view's column helpers, on the page data the reader gives."""
    build_evaluation(Store(tmp_path / "store"), 6, ["deu", "fra"])
    (system,) = read_path(tmp_path / "store")["evaluation"]
    script = (
        (ROOT / "xlexp" / "view" / "assets" / "columns.js").read_text()
        + """
const sys = JSON.parse(require("fs").readFileSync(0, "utf8"));
const C = XLEXP_COLUMNS;
const best = C.bestByLang(sys.metrics, sys.columns);
const out = {best, text: {}};
for (const col of sys.columns) out.text[col.key] = C.text(sys.metrics.fra[col.key] ?? null, col);
out.lowest = C.best([3, 1.004, 2], {format: ".2f", higher_is_better: false});
const up = {format: ".2f", higher_is_better: true};
out.tie = C.isBest(0.996, C.best([1.0, 0.996], up), up);
console.log(JSON.stringify(out));
"""
    )
    proc = subprocess.run(
        [NODE, "-e", script], input=json.dumps(system), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    wins = {lang: system["metrics"][lang]["win_rate"] for lang in ("deu", "fra")}
    assert out["best"]["err_rate"] == 1.0 and out["best"]["win_rate"] == round(
        max(wins.values()), 2
    )
    assert out["best"]["n"] is None and out["best"]["ci_low"] is None
    assert out["text"]["err_rate"] == "1.00" and out["text"]["n"] == str(
        system["metrics"]["fra"]["n"]
    )
    assert out["lowest"] == 1.0 and out["tie"] is True


@needs_browser
def test_rendered_view_shows_the_column_and_marks_its_lowest_best(
    tmp_path: Path, err_metric: Column
) -> None:
    build_evaluation(Store(tmp_path / "store"), 6, ["deu", "fra"])
    page = write_view(tmp_path / "store", tmp_path / "view.html")
    dom = lxml_html.fromstring(chromium(page, tmp_path / "profile"))
    table = dom.xpath('//section[@id="evaluation"]//table[contains(@class,"metrics")]')[0]
    assert "error rate" in [th.text_content() for th in table.xpath(".//th")]
    cell = {td.get("data-metric"): td for td in table.xpath(".//td[@data-metric]")}
    assert (
        cell["fra:err_rate"].text_content() == "1.00"
        and cell["fra:err_rate"].get("data-best") == "true"
    )
    assert (
        cell["deu:err_rate"].get("data-best") is None
        and cell["avg:err_rate"].get("data-best") is None
    )
    assert all(cell[f"{lang}:n"].get("data-best") is None for lang in ("deu", "fra"))


def test_results_md_one_format_per_column_and_says_why_a_value_is_absent(tmp_path: Path) -> None:
    table = metrics.summarize(
        {
            "deu": {"prefs": [0.012, 0.0, 0.024, 0.012], "outputs": ["a", "bb", "ccc", "dd"],
                    "lang_fidelity": 1.0},
            "fra": {"prefs": [0.25], "outputs": ["a"], "lang_fidelity": 1.0},
        },
        n_boot=20,
    )
    table["deu"]["notes"] = {"lc_se_boot": "degenerate LC fit: a reason"}
    summary = {"metrics": table, "columns": metrics.stored_columns(), "stages": {},
               "store": str(tmp_path / "nowhere"),
               "rubric": {"deu": {"average": 1.2, "precision": 3.4166, "n": 4, "n_malformed": 1},
                          "avg": {"average": 1.2, "precision": 3.4166, "n": 4, "n_malformed": 1}}}
    cfg = OmegaConf.create({"model": {"name": "m"}, "reference": {"name": "r"},
                            "judge": {"name": "j"},
                            "eval": {"judge_protocol": "alpaca_eval", "rtt": None}})
    md = report.write_results(tmp_path / "run", summary, cfg)["markdown"].read_text()
    rows = _cells(md, "m vs r, judged by j (alpaca_eval protocol)")
    assert rows["deu"]["win rate"] == "1.20"  # a small win rate keeps the column's 2 decimals
    assert rows["deu"]["s.e."] == f"{table['deu']['se']:.2f}"
    assert rows["deu"]["95% CI low"] != "–" and rows["deu"]["n"] == "4"
    # One prompt: a win rate, no interval and no s.e.
    assert rows["fra"]["win rate"] == "**25.00**"  # the best language
    assert rows["fra"]["95% CI low"] == rows["fra"]["95% CI high"] == rows["fra"]["s.e."] == "–"
    assert "LC s.e. (bootstrap)" in md
    assert "- deu, LC s.e. (bootstrap): – because degenerate LC fit: a reason" in md
    # The rubric table: scores with 2 decimals whatever their size, counts as integers.
    assert "| deu | 1.20 | 3.42 | 1 |" in md
