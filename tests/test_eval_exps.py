"""The evaluation experiments (Tables 1, 2, 3, 7, 8): every conf/exp file composes with
the paper profile and with `profile=tiny` after it, and each runs end to end on the tiny profile.

The judge (and the m-AlpacaEval translator, which is the judge card as GPT-4o is in the paper) is a
real OpenAI-compatible HTTP server on 127.0.0.1; the system and reference models are the tiny
random Llama through the hf backend (for reason-then-translate the system is the fake server too,
so the extracted translations can be checked).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir

from xlexp.__main__ import run
from xlexp.config import register, validate
from xlexp.store import Store

pytestmark = pytest.mark.slow  # whole runs: the slow lane

ROOT = Path(__file__).resolve().parents[1]
EXPS = ("offtheshelf", "rtt", "mtransfer", "zeroshot", "finegrained")
register()

RUBRIC_ANSWERS = {
    "PRECISION": "4",
    "INFORMATIVENESS": "3",
    "NATURALNESS": "5",
    "OBJECTIVITY": "no score, sorry",
}


class Evaluator:
    """Answers judge, rubric, prompt-translation and reason-then-translate requests; counts them."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if "Which output is better" in text:  # the both_orders protocol's A/B prompt
            kind, reply = "judge", Reply(text="B", logprobs=[{"B": -0.3, "A": -1.4}])
        elif (
            "## Best Model Identifier" in text
        ):  # alpaca_eval's weighted_alpaca_eval_gpt4_turbo prompt
            kind, reply = "judge", Reply(text="M", logprobs=[{"M": -0.3, "m": -1.4}])
        elif "single digit from 1 to 5" in text:
            kind = "rubric"
            criterion = re.search(r"Criterion: (\w+)\.", text).group(1)
            reply = RUBRIC_ANSWERS[criterion]
        elif "Translate the following instruction" in text:
            kind = "mtranslate"
            lang = re.search(r"from English into (\w+)\.", text).group(1)
            src = text.split("[Instruction]\n", 1)[1].split("\n[End of Instruction]", 1)[0]
            reply = f"[{lang}] {src}"
        elif "First think about the request" in text:
            kind = "rtt_one_prompt"
            lang = re.search(r"translate your answer into (\w+)\.", text).group(1)
            reply = f"English answer:\nAn answer.\n\n**{lang} translation:**\nTRANSLATED-{lang}"
        elif "Translate the following text" in text:
            kind, reply = (
                "rtt_translate",
                "Eine Antwort auf Deutsch." if "into German" in text else "Une réponse.",
            )
        else:
            kind, reply = "answer", f"An English answer to: {text}"
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return reply


@pytest.fixture
def evaluator():
    ev = Evaluator()
    with FakeOpenAI(ev) as srv:
        srv.evaluator = ev
        yield srv


def _api(role: str, base_url: str) -> list[str]:
    return [
        f"{role}.{a}"
        for a in (
            "backend=openai",
            "model=fake-eval",
            f"base_url={base_url}",
            "gguf_file=null",
            "max_retries=1",
        )
    ]


def overrides(base_url: str, tiny_dir: Path, store: Path, *extra: str) -> list[str]:
    out = _api("judge", base_url)
    for role in ("model", "reference"):
        out += [
            f"{role}.model={tiny_dir}",
            f"{role}.gguf_file=null",
            f"{role}.sampling.max_tokens=8",
            f"{role}.batch_size=8",
        ]
    return out + [f"store_dir={store}", "eval.limit=2", "eval.bootstrap=50", *extra]


def compose_exp(exp: str, *args: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"+exp={exp}", *args])


@pytest.mark.parametrize("exp", EXPS)
def test_exp_file_names_its_table_and_composes_with_both_profiles(exp: str) -> None:
    lines = (ROOT / "conf" / "exp" / f"{exp}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_" and re.match(
        r"# Table \d", lines[1]
    )  # Hydra needs the header first
    paper = compose_exp(exp)
    assert (
        paper.judge.model.startswith("gpt-4o-")
        and paper.reference.name == "gpt-4o-mini"
        and list(paper.langs.codes)[:2] == ["por", "deu"]
    )
    assert (
        paper.eval.benchmark in ("xl_alpacaeval", "m_alpacaeval")
        and paper.eval.exclude_ids is not None
    )
    tiny = compose_exp(exp, "profile=tiny")
    assert (
        tiny.model.name == "smollm2-135m" and tiny.eval.prompts == "demo" and tiny.data_size == "4"
    )
    validate(tiny, cuda=False)  # the tiny run needs no GPU, key or network
    # The paper's judge protocol by default, in both profiles; ours is one override away.
    assert paper.eval.judge_protocol == tiny.eval.judge_protocol == "alpaca_eval"
    validate(compose_exp(exp, "profile=tiny", "eval.judge_protocol=both_orders"), cuda=False)
    expected = {
        "offtheshelf": lambda c: list(c.stages) == ["evaluate", "report"] and c.eval.rtt is None,
        "rtt": lambda c: list(c.stages) == ["evaluate", "report"] and c.eval.rtt == "one_prompt",
        "mtransfer": lambda c: (
            "sft" in c.stages and c.eval.benchmark == "m_alpacaeval" and c.eval.english
        ),
        "zeroshot": lambda c: "sft" in c.stages and list(c.eval.langs) == ["fra", "fin", "tur"],
        "finegrained": lambda c: "sft" in c.stages and c.eval.rubric,
    }[exp]
    assert expected(paper) and expected(tiny)


def test_paper_mtransfer_translates_with_the_gpt4o_card() -> None:
    cfg = compose_exp("mtransfer")
    assert cfg.eval.translator.name == "gpt-4o" and cfg.eval.translate_max_tokens == 2048
    assert (
        list(cfg.langs.codes) == ["por", "deu", "hun", "lit", "gle", "mlt", "zho", "hin"]
        and cfg.eval.langs is None
    )
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for exp in ("offtheshelf", "rtt"):  # -m sweeps the Table 1 models, each a conf/model card
            sweep = compose(
                "config", overrides=[f"+exp={exp}"], return_hydra_config=True
            ).hydra.sweeper.params
            models = sweep["model"].split(",")
            assert len(models) == 7 and all(
                (ROOT / "conf" / "model" / f"{m}.yaml").exists() for m in models
            )


@pytest.mark.parametrize("protocol", ["alpaca_eval", "both_orders"])
def test_finegrained_tiny_run_scores_the_rubric(
    tmp_path, tiny_model_dir, evaluator, protocol: str
) -> None:
    args = overrides(
        evaluator.base_url,
        tiny_model_dir,
        tmp_path / "store",
        "stages=[evaluate,report]",
        f"eval.judge_protocol={protocol}",
    )
    summary = run(compose_exp("finegrained", "profile=tiny", *args), tmp_path / "run")
    rubric = summary["rubric"]
    assert set(rubric) == {"deu", "fra", "avg"}
    for lang in ("deu", "fra"):
        # Logprobs of the fake server: the answer's digit with probability 1.
        assert (
            rubric[lang]["precision"],
            rubric[lang]["informativeness"],
            rubric[lang]["naturalness"],
        ) == (4.0, 3.0, 5.0)
        assert (
            math.isnan(rubric[lang]["objectivity"]) and rubric[lang]["n_malformed"] == 2
        )  # recorded, not guessed
        assert rubric[lang]["average"] == pytest.approx(4.0)
    assert evaluator.evaluator.counts["rubric"] == 2 * 2 * 4  # langs x prompts x criteria
    judged = Store(tmp_path / "store").get("judge", summary["stages"]["evaluate"]["judge"]["key"])
    rows = judged.rows("deu.jsonl") + judged.rows("fra.jsonl")
    assert {r["protocol"] for r in rows} == {protocol} and judged.meta["counts"]["judged"] == 4
    if protocol == "both_orders":
        # The fake judge always says "B": pure position bias, cancelled by the two orders.
        assert evaluator.evaluator.counts["judge"] == 2 * 2 * 2 and summary["metrics"]["avg"][
            "win_rate"
        ] == pytest.approx(50.0)
    else:
        # One order per prompt; the fake judge says "M" (slot 2) with P = 0.75: the system wins
        # where alpaca_eval left it in slot 2 (order "rs"), loses where it swapped the slots.
        assert evaluator.evaluator.counts["judge"] == 2 * 2
        p_m2 = 1 / (1 + math.exp(-1.1))
        expected = (
            sum(p_m2 if r["verdicts"][0]["order"] == "rs" else 1 - p_m2 for r in rows)
            / len(rows)
            * 100
        )
        assert summary["metrics"]["avg"]["win_rate"] == pytest.approx(expected)
    results = (tmp_path / "run" / "results.md").read_text()
    assert f"({protocol} protocol)" in results
    assert "fine-grained scores" in results and "| informativeness |" in results.replace(
        "| average | precision ", "|"
    )


@pytest.mark.parametrize("protocol", ["alpaca_eval", "both_orders"])
def test_offtheshelf_tiny_run_has_no_adapter_and_rtt_outputs_are_translations(
    tmp_path, tiny_model_dir, evaluator, protocol: str
) -> None:
    store = tmp_path / "store"
    judged = f"eval.judge_protocol={protocol}"
    summary = run(
        compose_exp(
            "offtheshelf",
            "profile=tiny",
            *overrides(evaluator.base_url, tiny_model_dir, store, judged),
        ),
        tmp_path / "a",
    )
    assert summary["system"]["judge_protocol"] == protocol
    assert "sft" not in summary["stages"] and not (store / "sft").exists()
    respond = Store(store).get("respond", summary["stages"]["evaluate"]["respond"]["key"])
    rows = json.loads(respond.file("deu.json").read_text())
    assert rows[0]["generator"] == "smollm2-135m" and len(rows) == 2

    for mode, expected in (
        ("one_prompt", "TRANSLATED-German"),
        ("two_step", "Eine Antwort auf Deutsch."),
    ):
        args = overrides(
            evaluator.base_url, tiny_model_dir, store, f"eval.rtt={mode}", judged
        ) + _api("model", evaluator.base_url)
        out = run(compose_exp("rtt", "profile=tiny", *args), tmp_path / mode)
        assert out["system"]["judge_protocol"] == protocol
        assert (
            out["system"]["rtt"] == mode and "RTT" not in out["system"]["model"]
        )  # a field, not a label
        art = Store(store).get("respond", out["stages"]["evaluate"]["respond"]["key"])
        rows = json.loads(art.file("deu.json").read_text())
        assert [r["output"] for r in rows] == [expected] * 2 and rows[0]["generator"].endswith(
            f"+rtt-{mode}"
        )
        assert art.meta["counts"]["langs"]["deu"]["empty_outputs"] == 0
        assert set(out["metrics"]) == {"deu", "fra", "avg"}
    counts = evaluator.evaluator.counts
    # two_step answers each English prompt once for all languages (same call: the cache serves it).
    assert counts["rtt_one_prompt"] == 4 and counts["answer"] == 2 and counts["rtt_translate"] == 4


@pytest.mark.parametrize("protocol", ["alpaca_eval", "both_orders"])
def test_mtransfer_tiny_run_translates_prompts_once_and_adds_english(
    tmp_path, tiny_model_dir, evaluator, protocol: str
) -> None:
    args = overrides(
        evaluator.base_url,
        tiny_model_dir,
        tmp_path / "store",
        "stages=[evaluate,report]",
        f"eval.judge_protocol={protocol}",
    )
    summary = run(compose_exp("mtransfer", "profile=tiny", *args), tmp_path / "a")
    assert summary["system"]["judge_protocol"] == protocol
    assert set(summary["metrics"]) == {"deu", "fra", "eng", "avg"}
    bench = Store(tmp_path / "store").get(
        "prompt_set", summary["stages"]["evaluate"]["prompt_set"]["key"]
    )
    deu, eng = bench.rows("deu.jsonl"), bench.rows("eng.jsonl")
    assert [r["instruction"] for r in deu] == [
        f"[German] {r['instruction']}" for r in eng
    ]  # monolingual, no template
    assert all(r["english"] == e["instruction"] for r, e in zip(deu, eng, strict=True))
    assert evaluator.evaluator.counts["mtranslate"] == 4  # 2 prompts x deu, fra; English needs none
    again = run(compose_exp("mtransfer", "profile=tiny", *args), tmp_path / "b")
    assert again["backend_calls"] == 0 and evaluator.evaluator.counts["mtranslate"] == 4


@pytest.mark.parametrize("protocol", ["alpaca_eval", "both_orders"])
def test_zeroshot_cli_run_evaluates_the_zero_shot_languages(
    tmp_path, tiny_model_dir, evaluator, protocol: str
) -> None:
    args = overrides(
        evaluator.base_url,
        tiny_model_dir,
        tmp_path / "store",
        "stages=[evaluate,report]",
        f"eval.judge_protocol={protocol}",
    )
    cmd = [
        sys.executable,
        "-m",
        "xlexp",
        "+exp=zeroshot",
        "profile=tiny",
        *args,
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "WANDB_DISABLED": "true", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (
        set(results["metrics"]) == {"fra", "fin", "tur", "avg"}
        and results["system"]["judge_protocol"] == protocol
    )
    assert "| tur |" in proc.stdout
