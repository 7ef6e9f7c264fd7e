"""generate.target_rows through the real chain: a teacher that rejects some passages, a target of
kept rows reached with fresh seeds, the same dataset key on a rerun, and a too-large data_size
refused at validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from test_chain import Teacher, compose_cfg, overrides

from xlexp.__main__ import run
from xlexp.config import ConfigError, validate


class RejectingTeacher(Teacher):
    """Answers a third of the reverse prompts (by passage) with an empty instruction: a reject."""

    def __call__(self, body: dict):
        text = body["messages"][-1]["content"]
        if (
            "Write the question" in text
            and int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0
        ):
            with self.lock:
                self.counts["reverse"] = self.counts.get("reverse", 0) + 1
            return '""'
        return super().__call__(body)


def test_a_target_of_kept_rows_is_reached_despite_rejects(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    teacher = RejectingTeacher()
    with FakeOpenAI(teacher) as srv:
        # 8 seeds x 0.8 would keep at most 6 rows; the target is 8 (10 candidates before the
        # filter).
        args = overrides(srv.base_url, tiny_model_dir, tmp_path / "store", stages="[generate]") + [
            "generate.target_rows=8"
        ]
        first = run(compose_cfg(args), tmp_path / "a")
        gen = first["stages"]["generate"]
        assert gen["reverse"]["rejects"] > 0  # the teacher did reject some
        assert gen["select"]["rows"] >= 8 and gen["select"]["before_filter"] >= 10
        assert first["generation_stats"]["stages"]["seed"]["out"] > 8  # fresh seeds were drawn
        assert gen["select"]["pieces"] >= 2  # each round of fresh seeds is one more piece
        dataset = tmp_path / "store" / "select" / gen["select"]["key"] / "dataset.jsonl"
        rows = [json.loads(line) for line in dataset.read_text().splitlines()]
        kept = sorted(r["qe_score"] for r in rows)
        # The paper's filter still applies: the bottom 20% of the candidates were dropped.
        assert len(rows) == round(0.8 * gen["select"]["before_filter"])
        assert kept == sorted(kept)
        served = dict(teacher.counts)
        again = run(compose_cfg(args), tmp_path / "b")
        assert (
            again["stages"]["generate"]["select"]["key"] == gen["select"]["key"]
        )  # stable for the target
        assert teacher.counts == served and again["backend_calls"] == 0
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([*args, "stages=[generate,sft]", "data_size=9"]), cuda=False)
    assert err.value.key == "data_size" and "generate.target_rows" in str(err.value)
