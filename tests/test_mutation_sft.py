"""SFT data selection and defaults, as a mutation run found them unguarded: the subset's
defaults (top by QE, seed 1), its bounds (all rows and none are valid sizes), the chat shape TRL
trains on, and the paper's hyperparameters as the composed config's defaults (paper section 5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf
from test_config import make

from xlexp.errors import ConfigError
from xlexp.sft import config as sft_config
from xlexp.sft.config import SFTConfig
from xlexp.sft.data import take, to_prompt_completion

ROWS = [{"id": f"r{i}", "qe_score": s} for i, s in enumerate([0.3, 0.9, 0.1, 0.9, 0.5])]


def test_the_default_subset_is_the_top_by_qe_with_ties_by_id():
    assert [r["id"] for r in take(ROWS, 3)] == ["r1", "r3", "r4"]
    assert take(ROWS, 3, seed=1) == take(ROWS, 3, "top", 1)


def test_the_random_subset_is_seeded_1_by_default():
    assert take(ROWS, 3, "random") == take(ROWS, 3, "random", seed=1)
    draws = {tuple(r["id"] for r in take(ROWS, 2, "random", seed=s)) for s in range(1, 8)}
    assert len(draws) > 1  # the seed matters


def test_every_row_and_no_row_are_valid_sizes():
    assert len(take(ROWS, len(ROWS))) == len(ROWS)
    assert take(ROWS, 0) == []
    with pytest.raises(ValueError, match="holds 5"):
        take(ROWS, 6)
    with pytest.raises(ValueError, match=">= 0"):
        take(ROWS, -1)


def test_a_training_row_must_end_with_an_assistant_turn_after_a_prompt():
    user = {"role": "user", "content": "q"}
    bot = {"role": "assistant", "content": "a"}
    assert to_prompt_completion([{"messages": [user, bot]}]) == [
        {"prompt": [user], "completion": [bot]}
    ]
    for bad in ([bot], [user, user], [bot, user]):
        with pytest.raises(ValueError, match="assistant turn"):
            to_prompt_completion([{"id": "x", "messages": bad}])


def test_sft_defaults_are_the_papers():
    # the schema's defaults (the tiny profile shrinks the batch for CPU; the paper profile not)
    for sft in (SFTConfig(), make("profile=paper").sft):
        assert (sft.r, sft.alpha, list(sft.target_modules)) == (8, 16, ["q_proj", "v_proj"])
        assert (sft.epochs, sft.lr, sft.scheduler, sft.warmup_ratio) == (1.0, 1e-4, "cosine", 0.03)
        assert (sft.batch_size, sft.grad_accum, sft.bf16, sft.subset) == (8, 1, "auto", "top")
    assert make().seed == 1


# ---- the SFT checks, called in process (the CLI error tests run subprocesses) ----

_BASE = make()  # the tiny profile: stages include sft, source generated, backend hf


def _cfg(**sft: Any) -> DictConfig:
    """The tiny profile with `sft.<dotted key>=value` overrides (`external__n` is external.n)."""
    cfg = copy.deepcopy(_BASE)
    for key, value in sft.items():
        OmegaConf.update(cfg, "sft." + key.replace("__", "."), value, force_add=True)
    return cfg


def _refused(cfg: DictConfig, runs: bool = True) -> str:
    with pytest.raises(ConfigError) as err:
        sft_config.validate(cfg, runs)
    return err.value.key


@pytest.mark.parametrize(
    "stages, source, needed",
    [
        (["generate", "sft"], "generated", True),
        (["sft"], "generated", True),  # generation runs for SFT even when not asked for
        (["sft"], "external", False),
        (["sft"], "release", False),
        (["generate", "evaluate"], "generated", False),  # no SFT: nothing needs the dataset
    ],
)
def test_generation_is_needed_exactly_when_sft_trains_on_the_generated_data(stages, source, needed):
    cfg = _cfg(source=source)
    cfg.stages = stages
    assert sft_config.needs_generated_data(cfg) is needed


def test_the_always_checked_settings_are_refused_even_when_sft_does_not_run():
    bad_size = _cfg()
    bad_size.data_size = "2m"
    assert _refused(bad_size, runs=False) == "data_size"
    assert _refused(_cfg(subset="best"), runs=False) == "sft.subset"
    for subset in sft_config.SUBSETS:
        sft_config.validate(_cfg(subset=subset), runs=False)
    # what only a running stage needs is not checked when it does not run
    for sft in ({"source": "nowhere"}, {"num_processes": "zero"}, {"source": "external"}):
        sft_config.validate(_cfg(**sft), runs=False)
        assert _refused(_cfg(**sft)) in ("sft.source", "sft.num_processes", "sft.external.dataset")


def test_sft_needs_a_trainable_student_and_names_the_ones_that_are():
    cfg = _cfg()
    cfg.model.backend = "openai"
    with pytest.raises(ConfigError) as err:
        sft_config.validate(cfg, True)
    assert err.value.key == "model.backend"
    assert "needs a trainable backend (hf, vllm), not 'openai'" in str(err.value)
    sft_config.validate(cfg, False)  # a student that is only evaluated may be any backend


@pytest.mark.parametrize("value, ok", [("auto", True), ("1", True), ("4", True), ("0", False)])
def test_the_process_count_is_auto_or_positive(value, ok):
    cfg = _cfg(num_processes=value)
    if ok:
        sft_config.validate(cfg, True)
    else:
        with pytest.raises(ConfigError) as err:
            sft_config.validate(cfg, True)
        assert err.value.key == "sft.num_processes" and "not '0'" in str(err.value)
        assert err.value.__cause__ is None and err.value.__suppress_context__


def test_an_unknown_source_is_refused_and_the_known_ones_are_accepted():
    assert _refused(_cfg(source="hub")) == "sft.source"
    sft_config.validate(_cfg(source="generated"), True)
    sft_config.validate(
        _cfg(source="external", external__dataset="org/name", subset="random"), True
    )
    sft_config.validate(_cfg(source="release"), True)


@pytest.mark.parametrize(
    "data_size, target, source, ok",
    [
        ("4", 4, "generated", True),  # as many rows as generation makes: fine
        ("5", 4, "generated", False),
        ("2k", 1999, "generated", False),  # sizes compared as counts, k = 1000
        ("2k", "2k", "generated", True),
        ("5", None, "generated", True),  # no target: generation runs until it has enough
        ("5", 4, "release", True),  # the target bounds only the generated dataset
    ],
)
def test_sft_cannot_ask_for_more_rows_than_generation_makes(data_size, target, source, ok):
    cfg = _cfg(source=source)
    cfg.data_size = data_size
    OmegaConf.update(cfg, "generate.target_rows", target, force_add=True)
    if ok:
        sft_config.validate(cfg, True)
    else:
        assert _refused(cfg) == "data_size"


EXTERNAL = {"source": "external", "external__dataset": "org/name", "subset": "random"}


@pytest.mark.parametrize(
    "change, key",
    [
        ({}, None),  # a hub id, the default fields, a random subset
        ({"external__dataset": None}, "sft.external.dataset"),
        ({"external__dataset": ""}, "sft.external.dataset"),
        ({"external__dataset": "/nonexistent/x.jsonl"}, "sft.external.dataset"),
        ({"external__dataset": "rows.jsonl"}, "sft.external.dataset"),  # local by its suffix
        ({"external__dataset": "{tmp}/rows.jsonl"}, None),  # a local file that is there
        ({"external__instruction_field": ""}, "sft.external.messages_field"),
        ({"external__response_field": ""}, "sft.external.messages_field"),
        ({"external__instruction_field": "", "external__messages_field": "chat"}, None),
        ({"external__messages_field": "chat"}, None),
        ({"external__langs": ["fi"]}, "sft.external.lang_field"),
        ({"external__langs": []}, "sft.external.lang_field"),  # an empty filter is a filter
        ({"external__langs": ["fi"], "external__lang_field": "language"}, None),
        ({"external__langs": ["fi"], "external__data_files": {"fi": "fi.jsonl"}}, None),
        (
            {"external__langs": ["fi"], "external__data_files": ["fi.jsonl"]},
            "sft.external.lang_field",
        ),
        ({"subset": "top"}, "sft.subset"),  # top needs a quality score
        ({"subset": "top", "external__qe_field": "score"}, None),
    ],
)
def test_external_data_settings(tmp_path, change, key):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    change = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in change.items()}
    cfg = _cfg(**{**EXTERNAL, **change})
    if key is None:
        sft_config.validate(cfg, True)
    else:
        assert _refused(cfg) == key


@pytest.mark.parametrize(
    "change, key",
    [
        ({}, None),
        ({"release__config": "bestof3"}, None),
        ({"release__config": "scored"}, None),
        ({"release__config": "best"}, "sft.release.config"),
        ({"release__langs": ["deu", "zho"]}, None),
        ({"release__langs": ["deu", "de"]}, "sft.release.langs[1]"),  # names the entry
        ({"release__langs": ["xx"]}, "sft.release.langs[0]"),
    ],
)
def test_release_settings(change, key):
    cfg = _cfg(source="release", **change)
    if key is None:
        sft_config.validate(cfg, True)
    else:
        assert _refused(cfg) == key
