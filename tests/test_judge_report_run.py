"""A real `stages=[evaluate,report]` run against the fake OpenAI server under the alpaca_eval
protocol: results.md shows the s.e. column, an LC s.e. that is a bootstrap figure, one format
per column, a warning for a repeated instruction, and no note that does not apply."""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir

from xlexp.__main__ import run
from xlexp.config import register

ROOT = Path(__file__).resolve().parents[1]
register()


def judge_answer(body: dict) -> Reply:
    """A temperature-1 judge: P(m) from the prompt's hash; two answers in 8 sample a token its
    top-5 does not list (with "M" listed: P(m) = 0; with neither: no verdict)."""
    user = body["messages"][-1]["content"]
    h = zlib.crc32(user.encode())
    p_m = 0.05 + 0.9 * (h % 1000) / 1000
    m, big_m = math.log(p_m), math.log(1 - p_m)
    others = {"The": -3.0, "Both": -3.5, "I": -4.0, "Based": -4.5}
    if h % 8 == 0:  # sampled "m" far down: only "M" and the others are listed
        return Reply(text="m", logprobs=[{"m": -9.0, "M": -0.1, **others}])
    if h % 8 == 1:  # sampled "m" far down, "M" not listed either
        return Reply(text="m", logprobs=[{"m": -9.0, "Model": -0.2, **others}])
    chosen = "m" if p_m >= 0.5 else "M"
    top = {"m": m, "M": big_m, **others}
    return Reply(text=chosen, logprobs=[{chosen: top.pop(chosen), **top}])


def answer(body: dict) -> str | Reply:
    if body["model"] == "fake-judge":
        return judge_answer(body)
    user = body["messages"][-1]["content"]
    words = 5 + zlib.crc32(user.encode()) % 40
    if body["model"] == "fake-ref":
        return "Eine Referenzantwort " + "und so weiter " * words
    return "Eine Antwort " + "mit Inhalt " * (words // 2 + 3)


def prompts_file(path: Path, n: int) -> Path:
    rows = [{"instruction": f"Question {i}: explain topic {i}.", "dataset": "x"} for i in range(n)]
    rows[7]["instruction"] = rows[3]["instruction"]  # a repeated instruction
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def compose_cfg(base_url: str, tmp_path: Path, n: int):
    args = [
        "stages=[evaluate,report]",
        f"store_dir={tmp_path / 'store'}",
        "eval=xl_alpacaeval",
        f"eval.path={prompts_file(tmp_path / 'prompts.jsonl', n)}",
        "eval.prompts=null",
        "eval.rewrites=null",
        f"eval.limit={n}",
        "eval.langs=[deu]",
        "eval.bootstrap=100",
        "eval.lc_bootstrap=8",
        "eval.judge_protocol=alpaca_eval",
    ]
    for role, name in (("model", "fake-sys"), ("reference", "fake-ref"), ("judge", "fake-judge")):
        args += [f"{role}.backend=openai", f"{role}.model={name}", f"{role}.base_url={base_url}",
                 f"{role}.gguf_file=null", f"{role}.max_retries=0"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args)


def run_fake(tmp_path: Path, n: int) -> tuple[str, dict]:
    with FakeOpenAI(answer) as srv:
        summary = run(compose_cfg(srv.base_url, tmp_path, n), tmp_path / "run")
    md = (tmp_path / "run" / "results.md").read_text()
    return md, summary


@pytest.mark.slow
def test_results_md_of_a_fake_judge_run(tmp_path: Path) -> None:
    md, summary = run_fake(tmp_path, 40)
    deu = summary["metrics"]["deu"]
    assert deu["n"] < 40  # answers without m/M listed have no verdict
    assert deu["se"] is not None and deu["lc_se_boot"] is not None
    head = next(line for line in md.splitlines() if line.startswith("| lang |"))
    assert "| s.e. |" in head and "| LC s.e. (bootstrap) |" in head
    row = next(line for line in md.splitlines() if line.startswith("| deu |"))
    cells = dict(zip(head.strip("|").split("|"), row.strip("|").split("|"), strict=True))
    cells = {k.strip(): v.strip().strip("*") for k, v in cells.items()}
    for label in ("win rate", "95% CI low", "95% CI high", "s.e.", "LC win rate",
                  "LC s.e. (bootstrap)"):
        assert re.fullmatch(r"\d+\.\d\d", cells[label]), (label, cells[label])
    assert re.fullmatch(r"\d\.\d\d\d", cells["lang fidelity"]) and cells["n"].isdigit()
    assert "repeated in the prompts (ids 4, 8)" in md
    assert "tiny profile" not in md  # every role is an external server


def test_the_tiny_note_only_while_a_tiny_model_plays_a_role(tmp_path: Path) -> None:
    from xlexp.report.declaration import note_applies

    def cfg(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=["stages=[evaluate,report]", *overrides])

    assert cfg().note and note_applies(cfg())
    external = [f"{role}.model=gpt-x" for role in ("model", "reference", "judge")]
    assert note_applies(cfg(*external[:2]))  # the judge is still the 135M model
    assert not note_applies(cfg(*external))
    assert note_applies(cfg(*external, "stages=[generate]"))  # the teacher is the 135M model
    assert note_applies(cfg(*external, "note_models=[]"))  # a note about no model: always
