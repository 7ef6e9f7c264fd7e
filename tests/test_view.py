"""The HTML view (`python -m xlexp.view`): what it reads from a store, and the page as headless
Chromium renders it, from a real tiny run (fake API teacher and judge, tiny Llama translators,
student and reference) and from a 32,000-row synthetic store.

The browser tests run when `chromium` is on PATH, and must run when XLEXP_BROWSER_TEST=1 (CI);
their screenshots are kept under outputs/ci-artifacts/.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from lxml import html as lxml_html
from test_chain import Teacher, compose_cfg, overrides
from viewstore import build_large, build_store

from xlexp.report.stage_table import stage_table
from xlexp.store import Store
from xlexp.view import write_view
from xlexp.view.read import read_path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "outputs" / "ci-artifacts"
CHROMIUM = os.environ.get("XLEXP_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("XLEXP_BROWSER_TEST") != "1",
    reason=(
        "no chromium on PATH (apt-get install chromium; XLEXP_BROWSER_TEST=1 makes this a failure)"
    ),
)


def chromium(
    page: Path,
    profile: Path,
    *,
    fragment: str = "",
    screenshot: Path | None = None,
    height: int = 2400,
) -> str:
    """The DOM of `page` after its scripts ran (or a PNG of it), from headless Chromium with
    every background fetch turned off: the page must render from the file alone."""
    assert CHROMIUM, "XLEXP_BROWSER_TEST=1 but no chromium on PATH (apt-get install chromium)"
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--hide-scrollbars", f"--user-data-dir={profile}",
        # The page inflates its data asynchronously: wait until it has no work left (virtual
        # time, so the page's own performance.now() readings are not wall time).
        "--virtual-time-budget=60000",
    ]
    args += (
        [f"--window-size=1280,{height}", f"--screenshot={screenshot}"]
        if screenshot
        else ["--dump-dom"]
    )
    proc = subprocess.run(
        [*args, page.resolve().as_uri() + fragment], capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout.decode("utf-8", errors="replace")


def xpath_counts(block: lxml_html.HtmlElement) -> dict[str, str]:
    return {el.get("data-count"): el.text_content() for el in block.xpath(".//*[@data-count]")}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# ---------------------------------------------------------------- the reader, no browser


def test_store_alone_gives_every_row_its_candidates_scores_and_status(tmp_path: Path) -> None:
    keys = build_store(tmp_path / "store", 120)
    page = read_path(tmp_path / "store")
    assert page["source"]["kind"] == "store"
    (ds,) = page["generation"]
    # The chain of artifacts, from the inputs each DONE records.
    assert ds["keys"] == keys["generation"] and ds["notes"] == []
    store = Store(tmp_path / "store")
    sel = store.get("select", keys["generation"]["select"])
    kept = {r["id"]: r for r in sel.rows("dataset.jsonl")}
    rejected = {r["id"]: r["reject"] for r in sel.rows("rejects.jsonl")}
    items = store.get("translate", keys["generation"]["translate"]).rows()
    rows = {r["id"]: r for r in ds["rows"]}
    assert set(rows) == {i["id"] for i in items}
    assert ds["counts"] == {
        "kept": len(kept),
        "dropped": len(items) - len(kept) - len(rejected),
        "rejected": len(rejected),
    }
    assert ds["cut"] == min(r["qe_score"] for r in kept.values())
    assert all(r["qe"] <= ds["cut"] for r in ds["rows"] if r["status"] == "dropped")
    scores = {
        (q["source"], q["translation"], q["lang"]): q["score"]
        for q in store.get("qe", keys["generation"]["qe"]).rows()
    }
    for row_id, ds_row in kept.items():
        row = rows[row_id]
        assert (
            row["status"] == "kept"
            and row["qe"] == ds_row["qe_score"]
            and row["final"] == ds_row["messages"][1]["content"]
        )
        assert [ds["translators"][s["chosen"]] for s in row["sentences"]] == ds_row["translators"]
        for s in row["sentences"]:
            assert s["scores"] == [
                scores.get((s["src"], c, row["lang"])) if c is not None else None
                for c in s["cands"]
            ]
    for row_id, reason in rejected.items():
        assert rows[row_id]["status"] == "rejected" and rows[row_id]["reason"] == reason
    by_stage = {(r["stage"], r["reason"]): r for r in ds["rejects"]}
    reverse_rejects = store.get("reverse", keys["generation"]["reverse"]).rows("rejects.jsonl")
    assert by_stage[("reverse", "empty instruction")]["count"] == len(reverse_rejects) > 0
    assert by_stage[("select", "no valid translation")]["examples"][0]["id"] == next(iter(rejected))

    (system,) = page["evaluation"]
    assert (
        system["keys"]["respond"] == keys["evaluation"]["respond"]
        and system["keys"]["reference"] == keys["evaluation"]["reference"]
    )
    judge = store.get("judge", keys["evaluation"]["judge"])
    verdicts = [v for lang in ("deu", "fra") for v in judge.rows(f"{lang}.jsonl")]
    assert len(system["rows"]) == len(verdicts) and system["counts"]["malformed"] == sum(
        1 for v in verdicts if v["malformed"]
    )
    outputs = json.loads(
        store.get("respond", keys["evaluation"]["respond"]).file("deu.json").read_text()
    )
    first = next(
        r for r in system["rows"] if r["lang"] == "deu" and r["id"] == str(outputs[0]["id"])
    )
    assert (
        first["output"] == outputs[0]["output"]
        and first["instruction"] == outputs[0]["instruction"]
    )
    # Metrics come from their own artifact, which the reader found by its recorded input.
    table = json.loads(
        store.get("metrics", keys["evaluation"]["metrics"]).file("metrics.json").read_text()
    )
    assert (
        system["metrics"]["deu"]["win_rate"] == pytest.approx(table["deu"]["win_rate"])
        and system["notes"] == []
    )
    assert page["sweep"]["tables"][0]["rows"][0]["judge"] == keys["evaluation"]["judge"]


def test_store_without_recorded_inputs_is_linked_by_its_rows(tmp_path: Path) -> None:
    """A store whose DONE files name no inputs (written before they did): the reader finds the
    artifacts a dataset was made of from the ids and scores of their rows."""
    keys = build_store(tmp_path / "store", 60, record_inputs=False)
    (ds,) = read_path(tmp_path / "store")["generation"]
    assert ds["keys"] == keys["generation"] and ds["strategy"] == "best_of_k"


def test_missing_files_become_notes_not_errors(tmp_path: Path) -> None:
    keys = build_store(tmp_path / "store", 40, record_inputs=False)
    qe_rows = tmp_path / "store" / "qe" / keys["generation"]["qe"] / "rows.jsonl"
    qe_rows.unlink()
    (tmp_path / "store" / "metrics" / keys["evaluation"]["metrics"] / "metrics.json").unlink()
    page = read_path(tmp_path / "store")
    (ds,) = page["generation"]
    # The store alone cannot tell which QE artifact it was without its rows: the page says so.
    assert any("not found: the qe artifact" in n for n in ds["notes"]) and ds["counts"]["kept"] > 0
    assert all(s["scores"] == [None] * len(s["cands"]) for r in ds["rows"] for s in r["sentences"])
    (system,) = page["evaluation"]
    assert system["metrics"] == {} and any("no metrics" in n for n in system["notes"])


def test_page_embeds_its_data_gzipped_and_row_records_in_chunks(tmp_path: Path) -> None:
    """The index and each chunk of row records are gzip in base64 (the page inflates them with
    DecompressionStream), so no row's text is in the page as it is."""
    build_store(tmp_path / "store", 120)
    text = write_view(tmp_path / "store", tmp_path / "view.html").read_text()
    dom = lxml_html.fromstring(text)
    (data_el,) = dom.xpath('//script[@id="xlexp-data"]')
    assert data_el.get("type") == "application/gzip"
    data = json.loads(gzip.decompress(base64.b64decode(data_el.text)))
    chunks = dom.xpath("//script[@data-chunk]")
    assert chunks and all(c.get("type") == "application/gzip" for c in chunks)
    records = [
        json.loads(line)
        for c in chunks
        for line in gzip.decompress(base64.b64decode(c.text)).decode().split("\n")
    ]
    (ds,) = data["generation"]
    first = ds["index"][0]
    assert records[first["d"]]["id"] == first["id"] and first["ins"]
    assert first["ins"] not in text and records[first["d"]]["sentences"][0]["src"] not in text


def test_cli_names_a_path_with_nothing_to_show(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "xlexp.view", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert (
        proc.returncode == 2 and str(tmp_path) in proc.stderr and "no results.json" in proc.stderr
    )


def test_results_md_stage_table_is_readable(tmp_path: Path) -> None:
    summary = {
        "store": str(tmp_path / "nowhere"),
        "stages": {
            "generate": {
                "reverse": {
                    "key": "k1",
                    "in": 8,
                    "out": 7,
                    "rejects": 1,
                    "reject_reasons": {"empty instruction": 1},
                },
                "select": {"key": "k2", "rows": 6, "before_filter": 7, "rejects": 0},
                "seconds": 1.5,
            },
            "evaluate": {"judge": {"key": "k3", "kind": "judge"}, "seconds": 2.0},
        },
        "generation_stats": {
            "stages": {
                "select": {
                    "in": 7,
                    "out": 6,
                    "before_filter": 7,
                    "dropped_by_qe_filter": 1,
                    "reject_reasons": {},
                    "rejects": 0,
                }
            }
        },
    }
    table = stage_table(summary)
    assert "| generate | reverse | `k1` | 8 | 7 | 1 | reasons empty instruction 1 |" in table
    assert (
        "| generate | select | `k2` | 7 | 6 | 0 | rows 6; before_filter 7; "
        "dropped by the QE cut 1 |"
    ) in table
    assert "| evaluate | judge | `k3` |  |  |  |  |" in table and "{" not in table


# ---------------------------------------------------------------- in the browser


class ViewTeacher(Teacher):
    """The chain test's teacher, with the faults a real one shows: one passage gets no question
    (a reverse reject), QE scores spread out, and one prompt's verdict has no label."""

    def __call__(self, body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if "Write the question" in text:
            return Reply(text="") if "Recycling paper" in text else super().__call__(body)
        if "Rate the translation" in text:
            digit = "345"[len(text) % 3]
            return Reply(text=digit, logprobs=[{digit: -0.1, "4" if digit != "4" else "3": -2.5}])
        if "Improve the question" not in text and "honey" in text:  # the judge, on prompt 1
            return Reply(text="Both are fine.")
        return super().__call__(body)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A real run of every stage (report included, which writes the view) on the tiny models."""
    from xlexp.__main__ import run

    root = tmp_path_factory.mktemp("view-run")
    with FakeOpenAI(ViewTeacher()) as srv:
        summary = run(
            compose_cfg(overrides(srv.base_url, tiny_model_dir, root / "store")), root / "run"
        )
    assert summary["results"]["view"] == str(root / "run" / "view.html")
    return root


@pytest.mark.slow
@needs_browser
def test_tiny_run_page_renders_every_section_offline(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tiny_run / "run"
    summary = json.loads((run_dir / "results.json").read_text())
    results_md = (run_dir / "results.md").read_text()
    assert "[view.html](view.html)" in results_md and "| generate | select |" in results_md
    store = Store(tiny_run / "store")
    gen = summary["stages"]["generate"]
    sel = store.get("select", gen["select"]["key"])
    dataset = sel.rows("dataset.jsonl")
    items = store.get("translate", gen["translate"]["key"]).rows()
    known = dataset[0]
    item = next(i for i in items if i["id"] == known["id"])

    dom = lxml_html.fromstring(
        chromium(
            run_dir / "view.html", tmp_path / "profile", fragment=f"#gen={known['id']}&eval=honey"
        )
    )
    assert (
        dom.get_element_by_id("xlexp-perf").get("data-script-ms") is not None
    )  # the script ran to the end
    gen_block, = dom.xpath('//section[@id="generation"]/div[@data-dataset]')
    assert xpath_counts(gen_block) == {
        "gen-rows": str(len(items)),
        "gen-kept": str(len(dataset)),
        "gen-dropped": str(gen["select"]["before_filter"] - len(dataset)),
        "gen-rejected": "0",
        "gen-strategy": "best_of_k",
        "gen-translators": "smollm2-greedy, smollm2-sampled",
    }
    funnel = {
        tr.xpath("td")[0].text_content(): [td.text_content() for td in tr.xpath("td")[1:4]]
        for tr in gen_block.xpath('.//table[contains(@class,"funnel")]/tbody/tr')
    }
    assert funnel["reverse"] == ["8", "7", "1"] and funnel["select"][1] == str(len(dataset))
    rejects = [
        [td.text_content() for td in tr.xpath("td")[:3]]
        for tr in gen_block.xpath('.//table[contains(@class,"rejects")]/tbody/tr')
    ]
    assert ["reverse", "empty instruction", "1"] in rejects
    assert {svg.get("data-hist") for svg in gen_block.xpath(".//*[@data-hist]")} == {"deu", "fra"}
    # The known row, opened by the page's fragment: its sentences, candidates, scores, the chosen
    # ones.
    row, = gen_block.xpath(f'.//div[@class="row"][@data-id="{known["id"]}"]')
    assert row.xpath('.//pre[@data-field="instruction"]')[0].text_content() == item["instruction"]
    sources = [
        tr.xpath("td")[1].text_content()
        for tr in row.xpath('.//table[contains(@class,"sentences")]/tbody/tr')
    ]
    assert sources == item["sentences"]
    chosen = row.xpath('.//table[contains(@class,"sentences")]/tbody/tr/td[@data-chosen="true"]')
    assert len(chosen) == len(item["sentences"])
    names = ["smollm2-greedy", "smollm2-sampled"]
    assert [td.getparent().index(td) - 2 for td in chosen] == [
        names.index(t) for t in known["translators"]
    ]
    assert f"passage QE {known['qe_score']:.3f}" in row.text_content()

    ev_block, = dom.xpath('//section[@id="evaluation"]/div[@data-system]')
    judge = store.get("judge", summary["stages"]["evaluate"]["judge"]["key"])
    verdicts = [v for lang in ("deu", "fra") for v in judge.rows(f"{lang}.jsonl")]
    assert xpath_counts(ev_block)["eval-rows"] == str(len(verdicts)) == "6"
    assert (
        xpath_counts(ev_block)["eval-malformed"]
        == str(sum(1 for v in verdicts if v["malformed"]))
        == "2"
    )
    metrics = summary["metrics"]
    assert (
        ev_block.xpath('.//td[@data-metric="deu:win_rate"]')[0].text_content()
        == f"{metrics['deu']['win_rate']:.2f}"
    )
    opened = ev_block.xpath('.//div[@class="row"]')[
        0
    ]  # the fragment's search: the honey prompt, opened
    assert "honey" in opened.xpath('.//pre[@data-field="prompt"]')[0].text_content()
    assert "no verdict in text" in opened.text_content()

    sweep = dom.get_element_by_id("sweep")
    link, = sweep.xpath(f'.//table[contains(@class,"paper")]//a[@href="#sys-{judge.key}"]')
    assert "+4 instructions" in link.text_content()
    assert sweep.xpath('.//img[@class="plot"]')[0].get("src").startswith("data:image/png;base64,")
    assert not dom.xpath(
        '//div[@class="note"][starts-with(., "no ")]'
    )  # every section has its data

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "view-tiny-run.png"
    chromium(run_dir / "view.html", tmp_path / "profile", screenshot=shot)
    assert png_size(shot) == (1280, 2400)


@pytest.mark.slow
@needs_browser
def test_32k_row_store_page_is_small_and_renders_fast(tmp_path: Path) -> None:
    build_large(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "view.html"
    proc = subprocess.run(
        [sys.executable, "-m", "xlexp.view", str(tmp_path / "store"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The page's own clock runs on virtual time here: time the browser from outside, less the
    # time it takes to open a blank page.
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><title>blank</title><p>blank</p>")
    started = time.monotonic()
    chromium(blank, tmp_path / "profile")
    blank_s = time.monotonic() - started
    started = time.monotonic()
    dom_text = chromium(out, tmp_path / "profile")
    render_s = time.monotonic() - started - blank_s
    dom = lxml_html.fromstring(dom_text)
    print(
        f"32K-row store: {out.stat().st_size / 1e6:.1f} MB page, rendered in {render_s:.2f} s "
        f"beyond a blank page's {blank_s:.2f} s, DOM {len(dom_text) / 1e3:.0f} KB"
    )
    # The data gzipped: the same page with the data as plain JSON was 118 MB.
    assert out.stat().st_size < 25_000_000
    assert render_s < 10
    assert dom.get_element_by_id("xlexp-perf").get("data-script-ms") is not None  # ran to the end
    gen = xpath_counts(dom.xpath('//section[@id="generation"]/div[@data-dataset]')[0])
    assert gen["gen-kept"] == "32000" and gen["gen-rows"] == "40000"
    # Paged: one page of rows in the DOM, not 40,000; the first one opened (its chunk inflated).
    rows = dom.xpath('//section[@id="generation"]//div[@class="row"]')
    assert len(rows) == 25 and rows[0].xpath('.//table[contains(@class,"sentences")]')
    assert len(dom_text) < 2_000_000
    info = dom.xpath('//section[@id="generation"]//*[@data-matching]')[0]
    assert info.get("data-matching") == "40000" and re.search(
        r"rows 1–25 of 40000", info.text_content()
    )
