"""The generate stages keep remote servers busy: a chat stage has a whole window in flight
(not one batch), the k translators are in flight together, and a rerun makes 0 calls.

Every model role is a real OpenAI-compatible server on 127.0.0.1 (tests/fakeserver.py) that
answers like a capable model after a short delay, and records how many requests of each kind
were in flight at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from test_chain import Teacher, compose_cfg

from xlexp.__main__ import run

ROOT = Path(__file__).resolve().parents[1]

MARKERS = {
    "Write the question": "reverse",
    "Improve the question": "refine",
    "Rate the translation": "qe",
}


class Peaks:
    """Wraps the chain test's Teacher: per kind (stage, or translator model), peak in flight."""

    def __init__(self, delay: float):
        self.teacher = Teacher()
        self.delay = delay
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.overlap = False  # both translators had requests out at the same moment

    def __call__(self, body: dict) -> object:
        text = body["messages"][-1]["content"]
        if text.startswith("Translate the following"):
            kind, reply = body["model"], "Übersetzt."
        else:
            kind = next((k for marker, k in MARKERS.items() if marker in text), "judge")
            reply = self.teacher(body)
        with self.lock:
            self.now[kind] = self.now.get(kind, 0) + 1
            self.peak[kind] = max(self.peak.get(kind, 0), self.now[kind])
            if self.now.get("tr-a") and self.now.get("tr-b"):
                self.overlap = True
        time.sleep(self.delay)  # in flight meanwhile
        with self.lock:
            self.now[kind] -= 1
        return reply


def overrides(base_url: str, store: Path) -> list[str]:
    api = [
        "backend=openai",
        f"base_url={base_url}",
        "gguf_file=null",
        "max_retries=1",
        "max_concurrency=8",
    ]
    out = [f"teacher.{a}" for a in api] + ["teacher.model=teacher"]
    out += [f"judge.{a}" for a in api] + ["judge.model=judge"]
    for name, model in (("smollm2-greedy", "tr-a"), ("smollm2-sampled", "tr-b")):
        out += [f"translators.{name}.{a}" for a in api] + [f"translators.{name}.model={model}"]
    return out + [
        f"store_dir={store}",
        "stages=[generate]",
        "seed_data.n=16",
        "generate.batch_size=2",
    ]


def test_generate_keeps_the_window_full_and_translators_run_together(tmp_path):
    peaks = Peaks(delay=0.15)
    with FakeOpenAI(peaks) as srv:
        first = run(compose_cfg(overrides(srv.base_url, tmp_path / "store")), tmp_path / "a")
        served = srv.calls
        again = run(compose_cfg(overrides(srv.base_url, tmp_path / "store")), tmp_path / "b")
    gen = first["stages"]["generate"]
    assert gen["reverse"]["out"] == 16 and gen["select"]["rows"] > 0
    # 16 seeds in batches of 2, window 8: 8 in flight, where one batch at a time gave 2.
    assert peaks.peak["reverse"] == 8 and peaks.peak["refine"] == 8
    assert peaks.overlap, "the two translators never had requests out at the same time"
    assert again["backend_calls"] == 0 and srv.calls == served


NO_TORCH = """
import sys
from pathlib import Path
import pytest
from fakeserver import FakeOpenAI, Reply
from test_chain import compose_cfg
from test_stage_windows import Peaks, overrides
from xlexp.__main__ import run
store = Path(sys.argv[1])
with FakeOpenAI(Peaks(0.0)) as srv:
    run(compose_cfg(overrides(srv.base_url, store / "store")), store / "run")
print("torch imported:", "torch" in sys.modules)
"""


def test_no_torch_import_when_every_role_is_remote(tmp_path):
    """Startup and the generate stages with remote roles only never import torch (seconds)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stdout


class EvalPeaks:
    """Wraps the evaluation tests' fake answerer: which (kind, model or language) pairs had
    requests out at the same moment."""

    def __init__(self, delay: float):
        from test_eval_exps import Evaluator

        self.evaluator = Evaluator()
        self.delay = delay
        self.lock = threading.Lock()
        self.now: dict[tuple[str, str], int] = {}
        self.together: set[frozenset] = set()

    def __call__(self, body: dict) -> object:
        text = body["messages"][-1]["content"]
        before = dict(self.evaluator.counts)
        reply = self.evaluator(body)
        kind = next(k for k, n in self.evaluator.counts.items() if n != before.get(k))
        lang = next((lang for lang in ("German", "French") if lang in text), None)
        tag = (kind, lang or body["model"])
        with self.lock:
            self.now[tag] = self.now.get(tag, 0) + 1
            live = [t for t, n in self.now.items() if n]
            self.together |= {frozenset((a, b)) for a in live for b in live if a != b}
        time.sleep(self.delay)
        with self.lock:
            self.now[tag] -= 1
        return reply

    def overlapped(self, a: tuple[str, str], b: tuple[str, str]) -> bool:
        return frozenset((a, b)) in self.together


def test_evaluation_keeps_languages_and_roles_in_flight_together(tmp_path):
    """m-AlpacaEval's prompt translations of each language, the system and the reference, and
    reason-then-translate's languages are in flight at once when their roles are remote."""
    from test_eval_exps import compose_exp

    peaks = EvalPeaks(delay=0.2)
    with FakeOpenAI(peaks) as srv:
        roles = []
        for role, model in (("model", "sys"), ("reference", "ref"), ("judge", "judge")):
            roles += [
                f"{role}.{a}"
                for a in (
                    "backend=openai",
                    f"model={model}",
                    f"base_url={srv.base_url}",
                    "gguf_file=null",
                )
            ]
        common = [
            *roles,
            f"store_dir={tmp_path / 'store'}",
            "eval.limit=4",
            "eval.bootstrap=20",
            "stages=[evaluate,report]",
        ]
        run(compose_exp("mtransfer", "profile=tiny", *common), tmp_path / "m")
        assert peaks.overlapped(("mtranslate", "German"), ("mtranslate", "French"))
        assert peaks.overlapped(("answer", "sys"), ("answer", "ref"))
        run(compose_exp("rtt", "profile=tiny", *common), tmp_path / "rtt")
        assert peaks.overlapped(("rtt_one_prompt", "German"), ("rtt_one_prompt", "French"))


def test_a_language_whose_translation_fails_is_asked_again_alone(tmp_path):
    """m-AlpacaEval's languages run together: when French's prompt translations fail, German's
    finished artifact is kept, nothing downstream is built, and the rerun asks only for French."""
    from test_eval_exps import Evaluator, compose_exp

    from xlexp.failures import BackendFailure

    evaluator, down = Evaluator(), {"French": True}

    def handler(body: dict) -> object:
        text = body["messages"][-1]["content"]
        if (
            down["French"]
            and "Translate the following instruction" in text
            and "into French" in text
        ):
            return Reply(503, text="translator overloaded")
        return evaluator(body)

    with FakeOpenAI(handler) as srv:
        roles = []
        for role, model in (("model", "sys"), ("reference", "ref"), ("judge", "judge")):
            roles += [
                f"{role}.{a}"
                for a in (
                    "backend=openai",
                    f"model={model}",
                    f"base_url={srv.base_url}",
                    "gguf_file=null",
                    "max_retries=0",
                )
            ]
        args = [
            *roles,
            f"store_dir={tmp_path / 'store'}",
            "eval.limit=4",
            "eval.bootstrap=20",
            "stages=[evaluate,report]",
        ]
        with pytest.raises(BackendFailure, match="4 failed calls"):
            run(compose_exp("mtransfer", "profile=tiny", *args), tmp_path / "a")
        finished = {p.parent.name for p in (tmp_path / "store").glob("mtranslate/*/DONE")}
        assert len(finished) == 1 and not list((tmp_path / "store").glob("prompt_set/*/DONE"))
        assert evaluator.counts["mtranslate"] == 4  # German's four; French's 503s are not answers
        down["French"] = False
        summary = run(compose_exp("mtransfer", "profile=tiny", *args), tmp_path / "b")
    assert evaluator.counts["mtranslate"] == 8 and set(summary["metrics"]) == {
        "deu",
        "fra",
        "eng",
        "avg",
    }
