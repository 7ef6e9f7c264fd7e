"""Key completeness: a config field a stage reads is in its artifact's key, and no other field is.

A field read but not keyed makes a changed config silently reuse the old artifact (a dataset
built with another `generate.keep`); a field keyed but not read rebuilds for nothing. For every
leaf of the composed config (so a new field is covered without a new test), each perturbation
of it (typed by its value or its schema, or an alternative listed below for enumerations) is
probed with the run's own read-only probe against a store that holds every artifact (empty
stand-ins). The store kinds whose own key material changed must be exactly those whose declared
slice (`READS`) names the leaf. Conditional fields (qe.model only for comet, rubric criteria only
with the rubric on) are probed from base configs that switch them on (`BASES`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf

import xlexp.run as run_module
from xlexp.config import register
from xlexp.store import Artifact, Store, canonical

ROOT = Path(__file__).resolve().parents[1]
register()

# A model card determines its outputs by these fields and its sampling (xlexp.llm.card.card_key);
# the others say how to reach and pay for it.
CARD_IDENTITY = ("backend", "model", "revision", "gguf_file", "dtype", "chat_template")
# vLLM's engine settings are read by a vllm backend only (the "vllm" base probes them), and
# not by SFT (the adapter does not depend on how the model is served)
ENGINE = "engine_kwargs"
CARD_TRANSPORT = (
    "name",
    "batch_size",
    "base_url",
    "api_key_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "max_retries",
    "timeout_s",
    "breaker_after",
    "tokens_per_s",
    "train_tokens_per_s",
    "price_in_per_mtok",
    "price_out_per_mtok",
    "batch_api",
    "batch_poll_s",
    "batch_price_factor",
)
ROLES = ("teacher", "translators.*", "model", "judge", "reference")


def card(role: str, sampling: bool = True, engine: bool = True) -> tuple[str, ...]:
    return tuple(f"{role}.{f}" for f in CARD_IDENTITY) + (
        (f"{role}.sampling.*",) if sampling else ()
    ) + ((f"{role}.{ENGINE}",) if engine else ())


# Store kind -> the config leaves (globs) its own key material is made of; inputs' keys aside.
READS: dict[str, tuple[str, ...]] = {
    "seed": ("seed", "seed_data.*", "generate.shard"),  # a shard's seeds: its share
    "reverse": card("teacher"),
    "refine": card("teacher"),
    # `k` picks the first k translators
    "translate": (
        *card("translators.*"),
        "splitter.*",
        "langs.*",
        "generate.suffix_templates",
        "seed",
        "k",
    ),
    "qe": (*card("judge"), "qe.kind", "qe.model"),  # qe.llm is ${judge}
    "select": ("generate.selection", "generate.keep", "seed", "k"),
    # generate.selection=random makes the SFT subset random too (paper B.3)
    # (where the rows came from is the data artifact's key, an input of the sft key)
    "sft": (
        *card("model", sampling=False, engine=False),
        "sft.*",
        "data_size",
        "seed",
        "generate.selection",
        "!sft.source",
        "!sft.external.*",
        "!sft.release.*",
        "!sft.save_steps",
        "!sft.num_processes",
    ),
    "respond": (
        *card("model"),
        *card("reference"),
        "langs.codes",
        "seed",
        "eval.benchmark",
        "eval.limit",
        "eval.langs",
        "eval.exclude_ids",
        "eval.templates",
        "eval.path",
        "eval.rewrites",
        "eval.rtt",
        "eval.rtt_max_tokens",
    ),
    # the released XL-AlpacaEval prompts (eval.benchmark=xl_alpacaeval_release)
    "prompt_set": (
        "eval.release_repo",
        "eval.hub_revision",
        "eval.langs",
        "langs.codes",
        "eval.limit",
    ),
    "judge": (*card("judge"), "eval.judge_protocol"),
    "metrics": ("eval.bootstrap", "eval.lc_bootstrap", "seed"),
    "rubric": (*card("judge"), "eval.rubric_criteria"),
    # sft.source=external: the external dataset, which the sft key takes as its input
    "external_data": ("sft.external.*", "seed"),
}

# Leaves no artifact's key holds, each with why (a leaf neither read nor listed fails the test).
NOT_KEYED: dict[str, str] = {
    **{
        f"{r}.{f}": "how to reach, pace and pay for a model, not what it answers"
        for r in ROLES
        for f in CARD_TRANSPORT
    },
    "stages": "which stages run, not what one makes",
    "store_dir": "where artifacts live",
    "note": "printed with the results",
    "note_models": "printed with the results",
    "preflight": "a check before the run",
    "reject_warn_share": "a warning threshold",
    "logger.*": "where the run is logged",
    "qe.batch_size": "throughput: scores do not depend on the batch",
    "generate.batch_size": "throughput: answers are cached per request",
    "generate.target_rows": "how many seed rounds run: each round's seed artifact keys its n",
    "sft.save_steps": "checkpoint cadence (resuming), not the adapter",
    "sft.num_processes": "the global batch is the same on any count (xlexp.sft.batch)",
    "sft.release.*": "read by the release_data artifact (not probed offline: needs the hub)",
    "eval.prompts": "read by the hub benchmarks only (not probed offline)",
    "eval.hub_repo": "read by the hub benchmarks only (not probed offline)",
    "eval.hub_file": "read by the hub benchmarks only (not probed offline)",
    "eval.translator": "read by m_alpacaeval's prompt translation only (not probed offline)",
    "eval.translate_max_tokens": "read by m_alpacaeval's prompt translation only (not probed)",
    "eval.english": "read by m_alpacaeval only (not probed offline)",
}

# Fields that choose which artifacts are made (a stage, a piece of the work), checked apart:
# every other field leaves the set of artifacts as it is.
SHAPES: dict[str, str] = {
    "stages": "which stages run",
    "eval.rubric": "the rubric artifact or none",
    "sft.source": "which data artifact SFT reads",
    "eval.benchmark": "a stored prompt set for the hub benchmarks",
    "eval.judge_protocol": "a protocol judging both orders adds the agreement table",
    "eval.judges": "one judge artifact per extra judge, and the agreement table",
    "generate.shards": "one chain of artifacts per shard, each keyed by its share of the seeds",
    "generate.shard": "one shard's artifacts up to QE, nothing after",
}

# Leaves not probed, with why.
NOT_PROBED: dict[str, str] = {
    "eval.human_labels": "needs a labels file for the probed prompts (tests/test_agreement*)",
}

# Values to try where a perturbed value of the same type would not be a valid choice.
ALTERNATIVES: dict[str, list[Any]] = {
    "*.backend": ["openai", "vllm"],
    "qe.kind": ["comet"],
    "generate.selection": ["naive", "random"],
    "sft.subset": ["random"],
    "sft.source": ["external"],
    "sft.external.dataset": [str(ROOT / "xlexp" / "data" / "demo_prompts.jsonl")],
    "eval.judge_protocol": ["both_orders"],
    "eval.benchmark": ["xl_alpacaeval_release"],
    "eval.rtt": ["one_prompt", "two_step"],
    "eval.judges": [["smollm2"]],
    "eval.rewrites": [None],
    "eval.path": [str(ROOT / "xlexp" / "data" / "demo_prompts.jsonl")],
    "eval.rubric_criteria": [["precision"]],
    "langs.codes": [["deu"], ["deu", "fra", "hun"]],
    "langs.assign": ["all"],
    "eval.langs": [["deu"]],
    "data_size": ["3"],
    "generate.target_rows": ["16"],
    "splitter.kind": ["sat"],
    "sft.scheduler": ["linear"],
    "sft.bf16": ["true"],
}

# Base configs (overrides), each probing the leaves under its prefixes (all: None).
BASES: dict[str, tuple[list[str], tuple[str, ...] | None]] = {
    "default": ([], None),
    "comet": (["qe.kind=comet", "qe.model=/nonexistent/cometkiwi"], ("qe.*",)),
    "rubric": (["eval.rubric=true"], ("eval.*", "judge.*")),
    "rtt": (["eval.rtt=two_step"], ("eval.*",)),
    "external": (
        ["sft.source=external", f"sft.external.dataset={ROOT}/xlexp/data/demo_seed.jsonl"],
        ("sft.*", "seed"),
    ),
    "release": (["eval.benchmark=xl_alpacaeval_release"], ("eval.*", "langs.*")),
    "vllm": (
        [
            *(f"{r}.backend=vllm" for r in ("teacher", "judge", "model", "reference")),
            *(f"translators.{t}.backend=vllm" for t in ("smollm2-greedy", "smollm2-sampled")),
            "eval.rubric=true",
        ],
        tuple(f"{r}.{ENGINE}" for r in ROLES),
    ),
}

ROWS = [
    {
        "id": f"r{i:03d}",
        "seed_id": f"s{i:03d}",
        "lang": "deu",
        "qe_score": i / 100,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }
    for i in range(100)
]


class EveryArtifact(Store):
    """A read-only store that holds every artifact asked for (a stand-in with a few rows), so the
    probe runs every stage's shell to the end; it records each key's material by store kind."""

    made: list[tuple[str, str]] = []

    def __init__(self, root: Any, read_only: bool = True):
        super().__init__(root, read_only=True)

    def key(self, stage: str, config: Any, inputs: Any = (), version: int = 1) -> str:
        key = super().key(stage, config, inputs, version)
        EveryArtifact.made.append((stage, canonical([config, version])))
        return key

    def get(self, stage: str, key: str) -> Artifact:
        path = self.path(stage, key)
        if not path.exists():
            path.mkdir(parents=True)
            counts = {"in": len(ROWS), "out": len(ROWS), "rows": len(ROWS), "before_filter": 100}
            done = {"stage": stage, "key": key, "counts": counts}
            (path / "DONE").write_text(json.dumps(done))
            text = "".join(json.dumps(r) + "\n" for r in ROWS)
            for name in ("rows.jsonl", "dataset.jsonl"):
                (path / name).write_text(text)
        return Artifact(stage, key, path)


def compose_base(store: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"store_dir={store}", *overrides])


def key_material(
    cfg: DictConfig, monkeypatch: pytest.MonkeyPatch, store_cls: type = EveryArtifact
) -> dict[str, list[str]]:
    """Store kind -> the key material of each of its artifacts, in the order the run makes them."""
    monkeypatch.setattr(run_module, "Store", store_cls)
    EveryArtifact.made = []
    run_module.probe(copy.deepcopy(cfg))
    out: dict[str, list[str]] = {}
    for kind, material in EveryArtifact.made:
        out.setdefault(kind, []).append(material)
    return out


def leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the config's leaves; an interpolation is an alias of its source, skipped."""
    out = []
    for k in node:
        path = f"{prefix}{k}"
        if OmegaConf.is_interpolation(node, k):
            continue
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none() and len(child):
            out += leaves(child, path + ".")
        else:
            out.append(path)
    return out


def matches(path: str, globs: Any) -> bool:
    """`path` matches a glob and no `!glob` (an exception to a wider glob)."""
    if any(g.startswith("!") and fnmatch.fnmatchcase(path, g[1:]) for g in globs):
        return False
    return any(fnmatch.fnmatchcase(path, g) for g in globs if not g.startswith("!"))


def candidates(cfg: DictConfig, path: str) -> list[Any]:
    """Other values for a leaf: listed alternatives, else typed by its value or, for None, by
    the schema's annotation (Optional[int] -> 1, a list -> ["x"])."""
    listed = [v for g, vals in ALTERNATIVES.items() if fnmatch.fnmatchcase(path, g) for v in vals]
    if listed:
        return listed
    parent_path, _, key = path.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    value = OmegaConf.select(cfg, path)
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1] if value > 1 else [value + 1]
    if isinstance(value, float):
        return [value / 2 if value else 0.5, value + 1]
    if isinstance(value, str):
        return [value + "x"]
    node = parent._get_node(key)
    if isinstance(value, ListConfig) or isinstance(node, ListConfig):
        items = list(value or [])
        if items:
            return [items[:-1], items + items[-1:]]
        element = node._metadata.element_type
        return [[{int: 2, float: 0.5}.get(element, "x")]]
    if isinstance(value, DictConfig):
        return [{"x": 1}]
    if value is None:
        ref = node._metadata.ref_type
        args = [a for a in getattr(ref, "__args__", (ref,)) if a is not type(None)]
        kind = getattr(args[0], "__origin__", args[0]) if args else Any
        return {int: [2], float: [0.5], str: ["x"], bool: [True], list: [["x"]]}.get(kind, ["x", 2])
    return []


def changed_kinds(
    base: DictConfig,
    path: str,
    before: dict,
    monkeypatch: Any,
    store_cls: type = EveryArtifact,
    shape: set[str] | None = None,
) -> set[str] | str:
    """The store kinds made before and after whose own key material any candidate value of
    `path` changes; a string when no value could be probed. Kinds that appear, go or are made
    a different number of times go into `shape` (which artifacts are made, not their keys)."""
    changed: set[str] = set()
    shape = set() if shape is None else shape
    errors, probed = [], 0
    for value in candidates(base, path):
        cfg = copy.deepcopy(base)
        try:
            OmegaConf.update(cfg, path, value, merge=False)
            after = key_material(cfg, monkeypatch, store_cls)
        except Exception as e:  # an invalid value for this config: try the next
            errors.append(f"{value!r}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        probed += 1
        for kind in set(before) | set(after):
            was, now = before.get(kind, []), after.get(kind, [])
            if len(was) != len(now):
                shape.add(kind)
            elif was != now:
                changed.add(kind)
    return changed if probed else "; ".join(errors)


def expected_kinds(path: str) -> set[str]:
    if matches(path, NOT_KEYED):
        return set()
    return {kind for kind, globs in READS.items() if matches(path, globs)}


def check(base_name: str, tmp_path: Path, monkeypatch: Any) -> tuple[list[str], dict]:
    overrides, only = BASES[base_name]
    base = compose_base(tmp_path / "store", overrides)
    before = key_material(base, monkeypatch)
    problems, seen = [], {}
    for path in leaves(base):
        if (only is not None and not matches(path, only)) or matches(path, NOT_PROBED):
            continue
        shape: set[str] = set()
        got = changed_kinds(base, path, before, monkeypatch, shape=shape)
        if isinstance(got, str):
            problems.append(f"{path}: no value could be probed ({got}); list one in ALTERNATIVES")
            continue
        if shape and not matches(path, SHAPES):
            problems.append(f"{path}: changes which {sorted(shape)} artifacts are made")
        seen[path] = got
    return problems, seen


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], dict]]:
    with pytest.MonkeyPatch.context() as mp:
        return {name: check(name, tmp_path_factory.mktemp(name), mp) for name in BASES}


def test_every_leaf_is_keyed_where_read_and_nowhere_else(results):
    problems = [p for found, _ in results.values() for p in found]
    changed: dict[str, set[str]] = {}
    for _, seen in results.values():
        for path, kinds in seen.items():
            changed.setdefault(path, set()).update(kinds)
    for path, kinds in sorted(changed.items()):
        want = expected_kinds(path)
        if not want and not matches(path, [*NOT_KEYED, *SHAPES]):
            problems.append(f"{path}: read by no artifact's slice and not in NOT_KEYED")
        if kinds - want:
            problems.append(f"{path}: changes the key of {sorted(kinds - want)}, not declared")
        if want - kinds:
            problems.append(f"{path}: declared for {sorted(want - kinds)} but not in its key")
    assert not problems, "\n".join(problems)


def test_every_declared_kind_is_made_by_some_base(results, tmp_path, monkeypatch):
    """A kind READS names that no base config makes would leave its slice unchecked."""
    made = set()
    for name, (overrides, _) in BASES.items():
        made |= set(key_material(compose_base(tmp_path / name, overrides), monkeypatch))
    assert set(READS) <= made, sorted(set(READS) - made)


class DropsKeep(EveryArtifact):
    """The bug this test exists for: the select key without `generate.keep`."""

    def key(self, stage: str, config: Any, inputs: Any = (), version: int = 1) -> str:
        if stage == "select":
            config = {k: v for k, v in config.items() if k != "keep"}
        return super().key(stage, config, inputs, version)


class KeysStoreDir(EveryArtifact):
    """The other way round: a field no stage should read (where the store is) in the qe key."""

    def key(self, stage: str, config: Any, inputs: Any = (), version: int = 1) -> str:
        if stage == "qe":
            config = {**config, "where": str(self.root)}
        return super().key(stage, config, inputs, version)


@pytest.mark.parametrize(
    "store_cls,path,want",
    [(DropsKeep, "generate.keep", {"select"}), (KeysStoreDir, "store_dir", set())],
)
def test_the_check_sees_a_dropped_or_extra_field(store_cls, path, want, tmp_path, monkeypatch):
    base = compose_base(tmp_path / "store", [])
    assert expected_kinds(path) == want
    before = key_material(base, monkeypatch)
    assert changed_kinds(base, path, before, monkeypatch) == want  # the code as it is
    before = key_material(base, monkeypatch, store_cls)
    assert changed_kinds(base, path, before, monkeypatch, store_cls) != want  # the bug


def test_a_vllm_engine_setting_that_changes_answers_changes_the_model_identity():
    from xlexp.llm.base import identity_of
    from xlexp.llm.card import LLMConfig as ModelCard

    plain_card = ModelCard(name="m", backend="vllm", model="org/m")
    assert identity_of(plain_card) == identity_of(
        ModelCard(name="other name", backend="vllm", model="org/m", base_url="http://h:1/v1")
    )
    for placement in ({"tensor_parallel_size": 2}, {"gpu_memory_utilization": 0.5},
                      {"max_num_seqs": 64, "enforce_eager": True}):
        card = ModelCard(name="m", backend="vllm", model="org/m", engine_kwargs=placement)
        assert identity_of(card) == identity_of(plain_card), placement
    for answers in ({"quantization": "fp8"}, {"max_model_len": 2048}, {"kv_cache_dtype": "fp8"}):
        card = ModelCard(name="m", backend="vllm", model="org/m", engine_kwargs=answers)
        assert identity_of(card) != identity_of(plain_card), answers
        assert identity_of(card, engine=False) == identity_of(plain_card)  # the SFT adapter's
    # a backend without vLLM's engine does not read them
    hf = ModelCard(name="m", backend="hf", model="org/m")
    assert identity_of(hf) == identity_of(
        ModelCard(name="m", backend="hf", model="org/m", engine_kwargs={"quantization": "fp8"})
    )
