"""Generation shards (generate.shards / generate.shard): the seed set split by a hash of each
passage id, one shard per run, merged into the same dataset as one run over all seeds; a
missing shard stops the merge before any work, naming it; a top-up round is one more piece.

Every role is a fake OpenAI-compatible server on 127.0.0.1 (deterministic answers), so a
sharded generation runs in seconds and its calls are counted per stage.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from test_chain import compose_cfg

from xlexp.__main__ import run
from xlexp.config import ConfigError, validate
from xlexp.failures import BackendFailure
from xlexp.generate import seed
from xlexp.generate.declaration import table_rows
from xlexp.store_status import store_status
from xlexp.view.read import read_path


def _digit(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


class Server:
    """Teacher, two translators and the QE judge, answering deterministically; a third of the
    reverse prompts get an empty instruction (a reject) so rows are lost on the way."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.reverse_budget: int | None = None  # reverse calls answered before the server fails

    def __call__(self, body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if "Write the question" in text:
            stage = "reverse"
            with self.lock:
                if self.reverse_budget is not None and self.reverse_budget <= 0:
                    return Reply(status=503, text="down")
                if self.reverse_budget is not None:
                    self.reverse_budget -= 1
            passage = text.split("\n\n")[1]
            reply: str | Reply = (
                '""' if _digit(passage) % 3 == 0 else f"Why {' '.join(passage.split()[:4])}?"
            )
        elif "Improve the question" in text:
            stage = "refine"
            q = re.search(r"\nQuestion: (.*)\nResponse: ", text).group(1)
            r = re.search(r"\nResponse: (.*)\n\nReply in exactly", text, re.S).group(1)
            reply = f"Question: {q}\nResponse: {r}"
        elif text.startswith("Translate the following"):
            stage = "translate"
            sentence = text.split("English: ", 1)[1]
            reply = f"{body['model']}: {sentence[::-1]}"
        elif "Rate the translation" in text:
            stage = "qe"
            d = str(1 + _digit(text) % 5)
            reply = Reply(text=d, logprobs=[{d: -0.1, "3": -2.5}])
        else:
            raise AssertionError(text[:80])
        with self.lock:
            self.counts[stage] = self.counts.get(stage, 0) + 1
        return reply


def remote_args(base_url: str, store: Path, **extra: str) -> list[str]:
    api = ["backend=openai", f"base_url={base_url}", "gguf_file=null", "max_retries=1"]
    out = [f"teacher.{a}" for a in api] + ["teacher.model=teacher"]
    out += [f"judge.{a}" for a in api] + ["judge.model=judge"]
    for name in ("smollm2-greedy", "smollm2-sampled"):
        out += [f"translators.{name}.{a}" for a in api] + [f"translators.{name}.model={name}"]
    out += [f"store_dir={store}", "stages=[generate]", "seed_data.n=12", "generate.batch_size=2"]
    return out + [f"{k}={v}" for k, v in extra.items()]


def dataset_of(summary: dict, store: Path) -> tuple[bytes, bytes]:
    key = summary["stages"]["generate"]["select"]["key"]
    folder = store / "select" / key
    return (folder / "dataset.jsonl").read_bytes(), (folder / "rejects.jsonl").read_bytes()


def test_shards_partition_the_seed_set_by_id_and_keep_each_passage_position():
    cfg = compose_cfg(["seed_data.n=12"]).seed_data
    rows = list(seed.stream(cfg, 1))
    whole, _ = seed.take(rows, cfg)
    parts = [seed.take(rows, cfg, seed.Share(4, i)) for i in range(4)]
    assert sorted(r["id"] for p, _ in parts for r in p) == [r["id"] for r in whole]
    by_id = {r["id"]: r for r in whole}
    for i, (part, counts) in enumerate(parts):
        assert all(seed.shard_of(r["id"], 4) == i and r == by_id[r["id"]] for r in part)
        # Every shard reads the same stream: its other rows are accounted as elsewhere.
        assert counts["out"] + counts["elsewhere"] == len(whole)
    assert sorted(r["order"] for r in whole) == list(range(len(whole)))
    # A top-up round: the passages after the first 8 positions, the same as in the whole set.
    fresh, counts = seed.take(rows, cfg, seed.Share(start=8))
    assert sorted(r["order"] for r in fresh) == [8, 9, 10, 11] and counts["elsewhere"] == 8


def test_four_shards_merge_into_the_unsharded_dataset_and_a_missing_shard_is_named(tmp_path):
    server = Server()
    with FakeOpenAI(server) as srv:
        whole = run(compose_cfg(remote_args(srv.base_url, tmp_path / "one")), tmp_path / "r1")
        store = tmp_path / "four"
        sharded = [*remote_args(srv.base_url, store), "generate.shards=4"]
        for i in (0, 1, 3):
            out = run(compose_cfg([*sharded, f"generate.shard={i}"]), tmp_path / f"s{i}")
            assert set(out["stages"]["generate"]) >= {"seed", "qe"}
            assert "select" not in out["stages"]["generate"]
        before = dict(server.counts)
        with pytest.raises(ConfigError) as err:
            run(compose_cfg(sharded), tmp_path / "merge-early")
        message = str(err.value)
        assert err.value.key == "generate.shards" and "1 of 4 shards not finished" in message
        assert "(missing: 2)" in message and "generate.shard=2" in message
        assert server.counts == before and not (store / "select").exists()  # no work
        status = store_status(store)
        assert status[0].endswith("3 done, 0 in progress, 1 missing"), status
        assert status[3] == "  shard 2 of 4: missing"
        assert status[1].startswith("  shard 0 of 4: done")
        # The HTML view of the store lists the shards the same way.
        (note,) = [n for n in read_path(store)["notes"] if "shards" in n]
        assert note.startswith("generation 4 shards") and "shard 2 of 4: missing" in note

        # The teacher's server goes down while shard 2 runs: its seeds are in, and reverse's
        # first batch (generate.batch_size=2) is kept as a part.
        server.reverse_budget = 2
        with pytest.raises(BackendFailure):
            run(compose_cfg([*sharded, "generate.shard=2", "teacher.max_concurrency=1"]),
                tmp_path / "s2-down")  # fmt: skip
        server.reverse_budget = None
        cli = subprocess.run(
            [sys.executable, "-m", "xlexp.store", "status", str(store)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "  shard 2 of 4: in progress (seed done; reverse: 1 part files)" in cli.stdout
        building = r"in progress: 2 \(seed done; reverse: 1 part files\)"
        with pytest.raises(ConfigError, match=building):
            run(compose_cfg(sharded), tmp_path / "merge-early")

        before = dict(server.counts)
        run(compose_cfg([*sharded, "generate.shard=2"]), tmp_path / "s2")
        shard_calls = {k: server.counts[k] - before.get(k, 0) for k in server.counts}
        assert 0 < shard_calls["reverse"] < before["reverse"]  # that shard's passages only
        merged = run(compose_cfg(sharded), tmp_path / "merge")
        assert merged["backend_calls"] == 0  # every shard's calls reused
    assert dataset_of(merged, store) == dataset_of(whole, tmp_path / "one")
    # The stats too: stage counts added up, QE means summed exactly whatever the row order.
    assert merged["generation_stats"] == whole["generation_stats"]
    assert merged["stages"]["generate"]["select"]["pieces"] == 4
    # results.md's stage table: every stage's rows over the 4 shards, as the unsharded run's.
    rows = {r.artifact: r for r in table_rows(merged["stages"]["generate"], merged)}
    one = {r.artifact: r for r in table_rows(whole["stages"]["generate"], whole)}
    assert rows["seed"].key == "4 pieces" and set(rows) == set(one)
    for name, row in rows.items():
        assert (row.rows_in, row.rows_out) == (one[name].rows_in, one[name].rows_out), name


def test_a_target_of_kept_rows_adds_a_piece_of_fresh_seeds_to_the_shards(tmp_path):
    server = Server()
    with FakeOpenAI(server) as srv:
        extra = {"generate.target_rows": "9"}
        one = remote_args(srv.base_url, tmp_path / "one", **extra)
        whole = run(compose_cfg(one), tmp_path / "a")
        store = tmp_path / "two"
        sharded = [*remote_args(srv.base_url, store, **extra), "generate.shards=2"]
        for i in (0, 1):
            run(compose_cfg([*sharded, f"generate.shard={i}"]), tmp_path / f"s{i}")
        merged = run(compose_cfg(sharded), tmp_path / "merge")
        assert merged["stages"]["generate"]["select"]["pieces"] >= 3  # 2 shards + fresh seeds
        assert merged["stages"]["generate"]["select"]["rows"] >= 9
        calls = dict(server.counts)
        again = run(compose_cfg(sharded), tmp_path / "again")
        assert again["backend_calls"] == 0 and server.counts == calls
    assert dataset_of(merged, store) == dataset_of(whole, tmp_path / "one")


@pytest.mark.parametrize(
    "args,key",
    [
        (["generate.shards=4", "generate.shard=4"], "generate.shard"),
        (["generate.shards=2", "generate.shard=0", "stages=[generate,sft]"], "generate.shard"),
        (["generate.shards=0"], "generate.shards"),
        (["generate.shards=2", "generate.shard=-1"], "generate.shard"),
    ],
)
def test_bad_shard_settings_name_their_key(args, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["stages=[generate]", *args]), cuda=False)
    assert err.value.key == key


def test_a_damaged_shard_is_named_by_the_merge_and_rebuilt_by_its_rerun(tmp_path):
    server = Server()
    with FakeOpenAI(server) as srv:
        store = tmp_path / "store"
        sharded = [*remote_args(srv.base_url, store), "generate.shards=2"]
        for i in (0, 1):
            run(compose_cfg([*sharded, f"generate.shard={i}"]), tmp_path / f"s{i}")
        first = run(compose_cfg(sharded), tmp_path / "merge")
        # One shard's QE scores lose a row on disk: its DONE record no longer matches.
        qe_dir = sorted(p for p in (store / "qe").iterdir() if not p.name.startswith("."))[0]
        rows = (qe_dir / "rows.jsonl").read_text().splitlines()
        (qe_dir / "rows.jsonl").write_text("\n".join(rows[1:]) + "\n")
        with pytest.raises(ConfigError, match=r"1 of 2 shards not finished \(in progress: (\d)"):
            run(compose_cfg(sharded), tmp_path / "merge-damaged")
        (line,) = [s for s in store_status(store) if "qe: damaged" in s]
        index = int(re.search(r"shard (\d) of 2", line).group(1))
        calls = dict(server.counts)
        run(compose_cfg([*sharded, f"generate.shard={index}"]), tmp_path / "again")
        assert server.counts == calls  # the rebuilt QE comes from the response cache
        again = run(compose_cfg(sharded), tmp_path / "merge-again")
    key = first["stages"]["generate"]["select"]["key"]
    assert again["stages"]["generate"]["select"]["key"] == key
    assert dataset_of(again, store) == dataset_of(first, store)
