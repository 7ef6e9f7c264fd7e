"""Properties of generation's cores that a mutation run found unguarded: the exact SFT row a
passage becomes, the passage QE mean over scored sentences only, the tie-break between
translators, the reject reasons (counted by reason in the tables), and the QE rating parser."""

from __future__ import annotations

import itertools
import math

import pytest
from omegaconf import OmegaConf
from test_generate_cores import _item

from xlexp.generate import qe, select
from xlexp.generate.qe import triple_key
from xlexp.generate.segment import reassemble, segment
from xlexp.llm import Completion

NAMES = ["A", "B", "C"]


def _scores(table: dict[tuple[str, str], float]) -> dict[str, float]:
    return {triple_key(src, mt, "deu"): s for (src, mt), s in table.items()}


def test_a_chosen_passage_is_exactly_this_sft_row():
    scores = _scores({("S1.", "a1"): 0.2, ("S1.", "b1"): 0.9, ("S2.", "a2"): 0.6})
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row == {
        "id": "x-deu",
        "seed_id": "x",
        "lang": "deu",
        "messages": [
            {"role": "user", "content": "Q? Respond in German."},
            {"role": "assistant", "content": "b1 a2"},
        ],
        # S2's b2 has no score: a2 (scored) wins, and the mean is over the two scored choices
        "qe_score": pytest.approx((0.9 + 0.6) / 2),
        "translators": ["B", "A"],
        "source_question": "Q?",
        "source_response": "S1. S2.",
    }


def test_unscored_sentences_do_not_count_as_zero_in_the_passage_mean():
    # S2 has no score for any candidate: its first candidate is kept, and the mean is S1's.
    scores = _scores({("S1.", "a1"): 0.4, ("S1.", "b1"): 0.8})
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row["messages"][1]["content"] == "b1 a2"
    assert row["translators"] == ["B", "A"]
    assert row["qe_score"] == pytest.approx(0.8)


def test_a_missing_candidate_is_skipped_not_the_end_of_the_sentence():
    # Translator A gave nothing for S1; B and C did and C scores best.
    scores = _scores({("S1.", "b1"): 0.3, ("S1.", "c1"): 0.7, ("S2.", "a2"): 0.5})
    row = select.choose(_item([[None, "b1", "c1"], ["a2", None, None]]), scores, NAMES, "best_of_k")
    assert row["translators"] == ["C", "A"]
    assert row["qe_score"] == pytest.approx(0.6)


def test_equal_scores_go_to_the_earlier_translator():
    scores = _scores(
        {("S1.", "a1"): 0.5, ("S1.", "b1"): 0.5, ("S2.", "a2"): 0.1, ("S2.", "b2"): 0.9}
    )
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row["translators"] == ["A", "B"]
    # only A's candidates count for naive: B's better S2 is ignored
    naive = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "naive")
    assert naive["translators"] == ["A", "A"] and naive["qe_score"] == pytest.approx(0.3)


def test_no_score_at_all_is_a_reject_with_its_reason():
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), {}, NAMES, "best_of_k")
    assert row == {"id": "x-deu", "reject": "no QE score for any sentence"}
    row = select.choose(_item([["a1"], [None]]), {}, NAMES, "best_of_k")
    assert row == {"id": "x-deu", "reject": "no valid translation for sentence 1"}


def test_candidates_not_aligned_with_sentences_are_an_error_not_a_shorter_passage():
    with pytest.raises(ValueError):
        select.choose(_item([["a1", "b1"]]), {}, NAMES, "best_of_k")


def test_a_passage_without_sentences_scores_zero_and_keeps_its_text():
    item = _item([], sentences=())
    item["segments"] = [{"text": "```code```", "translate": False}]
    row = select.choose(item, {}, NAMES, "best_of_k")
    assert row["qe_score"] == 0.0 and row["messages"][1]["content"] == "```code```"


def test_kept_rows_are_ranked_from_zero_best_first():
    rows = [{"id": f"r{i}", "qe_score": s} for i, s in enumerate([0.1, 0.9, 0.5, 0.9])]
    kept = select.filter_rows(rows, 0.75, "best_of_k", seed=1)
    assert [(r["id"], r["rank"]) for r in kept] == [("r1", 0), ("r3", 1), ("r2", 2)]
    # half of 5 rounds half up: 3 rows
    assert len(select.filter_rows(rows + [{"id": "r4", "qe_score": 0}], 0.5, "x", 1)) == 3


def test_qe_rating_is_the_probability_weighted_mean_of_the_digits():
    # P(3) = 0.5, P(5) = 0.5 (split over " 5" and "5"); "x" and "12" are not ratings
    lp = {"3": math.log(0.5), " 5": math.log(0.25), "5": math.log(0.25), "x": 0.0, "12": 0.0}
    score, reason = qe.parse_score(Completion(text="3", logprobs=[lp]))
    assert reason is None and score == pytest.approx(((3 * 0.5 + 5 * 0.5) - 1) / 4)
    # no digit among the logprobs: the text's digit
    assert qe.parse_score(Completion(text="Rating 2", logprobs=[{"x": 0.0}])) == (0.25, None)
    assert qe.parse_score(Completion(text="none")) == (None, "no 1-5 rating in QE answer")
    failed = Completion(error="timeout", failure="connection")
    assert qe.parse_score(failed) == (None, "backend error: timeout")


def test_qe_triples_are_unique_per_language_and_keyed_by_all_three():
    item = _item([["a1", "a1"], ["a2", None]])
    other = {**_item([["a1", "b1"], ["a2", "b2"]]), "lang": "fra"}
    assert qe.unique_triples([item, other]) == [
        ("S1.", "a1", "deu"),
        ("S2.", "a2", "deu"),
        ("S1.", "a1", "fra"),
        ("S1.", "b1", "fra"),
        ("S2.", "a2", "fra"),
        ("S2.", "b2", "fra"),
    ]
    with pytest.raises(ValueError):  # candidates not aligned with sentences: no silent cut
        qe.unique_triples([_item([["a1"]])])
    keys = {triple_key(*t) for t in [("s", "m", "deu"), ("s", "m", "fra"), ("m", "s", "deu")]}
    assert len(keys) == 3 and all(len(k) == 24 for k in keys)


class _Rater:
    """A judge role that rates 4 with certainty and records the prompts it got."""

    def __init__(self):
        self.prompts, self.kwargs, self.sent = [], None, []

    def sampling(self, **kwargs):
        self.kwargs = kwargs
        return kwargs

    def chat(self, convs, sampling):
        self.prompts += convs
        self.sent.append(sampling)
        return [Completion(text="4", logprobs=[{"4": 0.0}]) for _ in convs]


def test_llm_qe_asks_one_greedy_token_per_pair_in_the_target_language():
    rater = _Rater()
    scorer = qe.LLMQE(rater)
    out = scorer.score([("Hello.", "Hallo.", "deu"), ("Bye.", "Tschüss.", "deu")])
    assert out == [{"score": 0.75, "reject": None}, {"score": 0.75, "reject": None}]
    assert rater.kwargs == {"temperature": 0.0, "max_tokens": 1, "logprobs": qe.TOP_LOGPROBS}
    assert rater.sent == [rater.kwargs]  # the chat got that sampling, not the card's
    (turn,) = rater.prompts[0]
    assert turn["role"] == "user"
    assert "German" in turn["content"] and "Hello." in turn["content"]
    assert "Hallo." in turn["content"]


@pytest.mark.parametrize(
    "text",
    [
        "Plain line. Another one 123",  # a trailing piece with no letter stays literal
        "| a | b |\n|---|---|\n| one. | two |\n",
        "x" * 2000 + " tail.",  # one char past the limit is cut in pieces
    ],
)
def test_segments_join_back_and_digits_alone_are_not_translated(text):
    class Split:
        def split(self, t):
            return [t]

    segs = segment(text, Split())
    assert "".join(s["text"] for s in segs) == text
    assert all(any(c.isalpha() for c in s["text"]) for s in segs if s["translate"])
    same = reassemble(segs, [s["text"] for s in segs if s["translate"]])
    assert same == text


def test_kept_ranks_do_not_depend_on_the_order_rows_arrive_in():
    # Shards are merged in any order: equal QE is broken by id, so a row's rank is fixed.
    pairs = [("r3", 0.5), ("r1", 0.5), ("r2", 0.9), ("r0", 0.5), ("r4", 0.1)]
    for perm in itertools.permutations(pairs):
        assert select.kept_ranks(list(perm), 0.8, "best_of_k", 1) == {
            "r2": 0,
            "r0": 1,
            "r1": 2,
            "r3": 3,
        }
    drawn = {
        tuple(select.kept_ranks(list(p), 0.6, "random", 3).items()) for p in [pairs[::-1], pairs]
    }
    assert len(drawn) == 1


def test_qe_artifact_keys_are_what_decides_the_scores():
    # The key material is stored with every QE artifact: it must stay the same for the same
    # scorer (or stored scores are not found again) and differ for another model or prompt.
    from xlexp.config import LLMConfig
    from xlexp.generate import prompt
    from xlexp.llm.card import card_key
    from xlexp.store import digest

    def card(model: str) -> dict:
        return OmegaConf.structured(LLMConfig(name="j", backend="openai", model=model))

    llm = OmegaConf.create({"kind": "llm", "model": "ignored", "llm": card("m1")})
    assert qe.LLMQE.key_info(llm) == {
        "kind": "llm",
        "model": None,  # the comet checkpoint plays no part
        "llm": card_key(llm.llm),
        "prompt": digest(prompt("qe")),
    }
    other = OmegaConf.create({"kind": "llm", "model": "ignored", "llm": card("m2")})
    assert qe.LLMQE.key_info(other)["llm"] != qe.LLMQE.key_info(llm)["llm"]
    comet = OmegaConf.create({"kind": "comet", "model": "/ckpt/kiwi", "llm": card("m1")})
    assert qe.CometQE.key_info(comet) == {"kind": "comet", "model": "/ckpt/kiwi"}


def test_llm_qe_runs_as_its_own_role_with_the_qe_card():
    # costs, failures and the response cache are counted under the role's name
    asked = []

    class Models:
        def role(self, name, card):
            asked.append((name, card))
            return _Rater()

    card = {"model": "judge-card"}
    scorer = qe.LLMQE.from_config(OmegaConf.create({"kind": "llm", "llm": card}), Models())
    assert isinstance(scorer, qe.LLMQE) and asked == [("qe", card)]


def test_comet_qe_without_unbabel_comet_is_refused_only_when_it_would_run(monkeypatch):
    import importlib.util

    from xlexp.errors import ConfigError

    qe.CometQE.check(None, runs=True)  # installed here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    qe.CometQE.check(None, runs=False)
    with pytest.raises(ConfigError) as err:
        qe.CometQE.check(None, runs=True)
    assert err.value.key == "qe.kind"


def test_the_pysbd_splitter_is_made_from_its_config():
    from xlexp.generate.segment import PysbdSplitter, make_splitter

    splitter = make_splitter(OmegaConf.create({"kind": "pysbd"}))
    assert isinstance(splitter, PysbdSplitter)
    assert splitter.split("Dr. Smith left. He ran.") == ["Dr. Smith left. ", "He ran."]


# ---- the CometKiwi and SaT wrappers, their model stood in for (test_comet_qe.py and
# test_sat.py run them on real tiny models) ----


class _Kiwi:
    """Stands for a loaded CometKiwi: a distinct score per pair, each predict call recorded."""

    def __init__(self, missing: int = 0):
        self.calls: list[tuple[list[dict], dict]] = []
        self.missing = missing

    def predict(self, data: list[dict], **kwargs):
        from types import SimpleNamespace

        self.calls.append((data, kwargs))
        scores = [len(x["src"]) + len(x["mt"]) / 100 for x in data]
        return SimpleNamespace(scores=scores[: len(scores) - self.missing])


@pytest.fixture
def comet_calls(monkeypatch):
    """What CometQE asks of unbabel-comet: the names it downloads and the checkpoints it loads."""
    import comet

    calls: dict[str, list[str]] = {"download": [], "load": []}

    def download(name: str) -> str:
        calls["download"].append(name)
        return "/hub/cache/kiwi/checkpoints/model.ckpt"

    def load(path: str) -> _Kiwi:
        calls["load"].append(path)
        return _Kiwi()

    monkeypatch.setattr(comet, "download_model", download)
    monkeypatch.setattr(comet, "load_from_checkpoint", load)
    return calls


def test_a_comet_checkpoint_is_a_local_dir_a_ckpt_file_or_else_a_hub_name(tmp_path, comet_calls):
    (tmp_path / "kiwi" / "checkpoints").mkdir(parents=True)
    (tmp_path / "kiwi" / "checkpoints" / "model.ckpt").write_text("")
    (tmp_path / "other").mkdir()  # a dir without a checkpoint: a hub name as far as COMET goes
    cases = {
        str(tmp_path / "kiwi"): ([], str(tmp_path / "kiwi" / "checkpoints" / "model.ckpt")),
        str(tmp_path / "kiwi" / "checkpoints" / "model.ckpt"): (
            [],
            str(tmp_path / "kiwi" / "checkpoints" / "model.ckpt"),
        ),
        str(tmp_path / "other"): ([str(tmp_path / "other")], None),
        str(tmp_path / "gone.ckpt"): ([str(tmp_path / "gone.ckpt")], None),
        "Unbabel/wmt22-cometkiwi-da": (["Unbabel/wmt22-cometkiwi-da"], None),
    }
    for model, (downloaded, loaded) in cases.items():
        comet_calls["download"].clear(), comet_calls["load"].clear()
        qe.CometQE(model)
        assert comet_calls["download"] == downloaded, model
        assert comet_calls["load"] == [loaded or "/hub/cache/kiwi/checkpoints/model.ckpt"], model


def test_comet_scores_each_unique_pair_once_and_maps_them_back(comet_calls, monkeypatch):
    import torch

    from xlexp.generate.config import QEConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scorer = qe.CometQE("Unbabel/kiwi")  # a direct call gets the config's default batch
    pairs = [("ab", "x"), ("c", "yy"), ("ab", "x")]
    assert scorer.score_pairs(pairs) == [2.01, 1.02, 2.01]
    ((data, kwargs),) = scorer.model.calls
    assert data == [{"src": "ab", "mt": "x"}, {"src": "c", "mt": "yy"}]
    assert kwargs == {"batch_size": QEConfig().batch_size, "gpus": 0, "progress_bar": False}
    assert scorer.score_pairs([]) == [] and len(scorer.model.calls) == 1  # nothing to predict

    # the same pair in two languages: one input (CometKiwi sees no language), one score each
    rows = scorer.score([("ab", "x", "deu"), ("ab", "x", "fra"), ("c", "yy", "deu")])
    assert rows == [
        {"score": 2.01, "reject": None},
        {"score": 2.01, "reject": None},
        {"score": 1.02, "reject": None},
    ]
    assert len(scorer.model.calls[-1][0]) == 2


def test_comet_runs_with_the_configured_batch_on_the_gpu_when_there_is_one(
    comet_calls, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = OmegaConf.create({"kind": "comet", "model": "Unbabel/kiwi", "batch_size": 3})
    scorer = qe.CometQE.from_config(cfg, None)
    assert comet_calls["download"] == ["Unbabel/kiwi"]
    scorer.score_pairs([("a", "b")])
    assert scorer.model.calls[0][1] == {"batch_size": 3, "gpus": 1, "progress_bar": False}


def test_comet_answering_fewer_scores_than_pairs_is_an_error_not_a_shift(comet_calls):
    scorer = qe.CometQE("Unbabel/kiwi")
    scorer.model = _Kiwi(missing=1)
    with pytest.raises(ValueError):
        scorer.score_pairs([("a", "b"), ("c", "d")])


class _SaT:
    """Stands for wtpsplit.SaT: records how it was made and what each split was asked."""

    made: list[tuple[str, dict]] = []
    last: _SaT

    def __init__(self, model: str, **kwargs):
        _SaT.made.append((model, kwargs))
        _SaT.last = self
        self.asked: list[dict] = []

    def split(self, text: str, **kwargs):
        self.asked.append(kwargs)
        return iter(text.split("|"))  # wtpsplit may answer a generator


@pytest.fixture
def fake_sat(monkeypatch):
    import wtpsplit

    monkeypatch.setattr(wtpsplit, "SaT", _SaT)
    _SaT.made = []
    return _SaT


def test_sat_uses_the_configured_tokenizer_else_the_one_a_local_model_ships(tmp_path, fake_sat):
    from xlexp.generate.config import SplitterConfig
    from xlexp.generate.segment import SaTSplitter, make_splitter

    (tmp_path / "tokenizer_config.json").write_text("{}")
    local = str(tmp_path)
    cases = [
        ((local, None), {"tokenizer_name_or_path": local}),
        ((local, "tok"), {"tokenizer_name_or_path": "tok"}),
        (("sat-3l-sm", None), {}),  # the hub model's own default
        (("sat-3l-sm", "tok"), {"tokenizer_name_or_path": "tok"}),
        ((str(tmp_path / "none"), None), {}),
    ]
    for (model, tokenizer), kwargs in cases:
        cfg = OmegaConf.structured(SplitterConfig(kind="sat", model=model, tokenizer=tokenizer))
        splitter = make_splitter(cfg)
        assert isinstance(splitter, SaTSplitter) and fake_sat.made[-1] == (model, kwargs)


@pytest.mark.parametrize("threshold", [None, 0.0, 0.7])
def test_sat_passes_the_threshold_only_when_one_is_set(fake_sat, threshold):
    from xlexp.generate.config import SplitterConfig
    from xlexp.generate.segment import make_splitter

    cfg = SplitterConfig(kind="sat", model="sat-3l-sm", threshold=threshold)
    splitter = make_splitter(OmegaConf.structured(cfg))
    assert splitter.split("One.| Two.") == ["One.", " Two."]  # a list, not a generator
    asked = {} if threshold is None else {"threshold": threshold}  # else the model's default
    assert fake_sat.last.asked == [asked]


def test_an_unknown_splitter_is_a_config_error_naming_the_key():
    from xlexp.errors import ConfigError
    from xlexp.generate.segment import make_splitter

    with pytest.raises(ConfigError) as err:
        make_splitter(OmegaConf.create({"kind": "nltk"}))
    assert err.value.key == "splitter.kind"
