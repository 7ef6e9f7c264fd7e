"""SFT's store shell (paper section 5): the training rows (generated or external) -> a LoRA
adapter artifact keyed by the base model, the data artifact, data_size and hyperparameters."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from xlexp.config import Config
from xlexp.errors import ConfigError
from xlexp.llm.base import identity_of
from xlexp.roles import plain
from xlexp.sft.config import parse_data_size
from xlexp.store import Artifact, Store, write_json, write_jsonl

# Not part of what the adapter is: checkpoint cadence, process count (the global batch,
# batch_size x grad_accum, is the same on any count: xlexp.sft.batch), and where the rows came
# from (the data artifact's key, an input of the sft key, already says that).
_SFT_KEY_SKIPS = ("save_steps", "num_processes", "source", "external", "release")


def sft_subset(cfg: Config) -> str:
    """`top` or `random`: a `random` selection ablation (paper B.3) also samples randomly."""
    if cfg.sft.source == "generated" and cfg.generate.selection == "random":
        return "random"
    return cfg.sft.subset


def sft_key(cfg: Config, store: Store, dataset: Artifact) -> str:
    """The adapter's key: base model, data artifact, data_size, selection and hyperparameters.
    Sampling settings of the model card are left out: they change answers, not the adapter."""
    sft_cfg = {k: v for k, v in plain(cfg.sft).items() if k not in _SFT_KEY_SKIPS}
    # the base weights and template: how vLLM would serve the model does not change the adapter
    model = {
        "identity": identity_of(cfg.model, engine=False),
        "chat_template": cfg.model.chat_template,
    }
    n = parse_data_size(cfg.data_size)
    return store.key(
        "sft",
        {"model": model, "sft": sft_cfg, "n": n, "subset": sft_subset(cfg), "seed": cfg.seed},
        [dataset.key],
    )


def report_to(cfg: Config) -> str:
    """Where TRL's trainer logs its metrics: the run's W&B logger, or nowhere."""
    return "wandb" if cfg.logger.kind == "wandb" else "none"


def run_external_data(cfg: Config, store: Store) -> Artifact:
    """The external SFT dataset (sft.source=external) as a store artifact shaped like the
    generated one (`dataset.jsonl`), so the sft key depends on it the same way."""
    from xlexp.sft import source

    ext = cfg.sft.external
    config = {"external": plain(ext), "seed": cfg.seed, "content": source.fingerprint(ext)}
    key = store.key("external_data", config)

    def produce(work: Path, parts: Any) -> dict:
        rows, rejects, stats = source.read(ext, cfg.seed)
        write_jsonl(work / "dataset.jsonl", rows)
        write_jsonl(work / "rejects.jsonl", rejects)
        write_json(work / "stats.json", stats)
        return {"rows": len(rows), "matching_lang": stats["matching_lang"], "rejects": len(rejects)}

    return store.build("external_data", key, produce)[0]


def run_release_data(cfg: Config, store: Store) -> Artifact:
    """The authors' XL-Instruct release (sft.source=release) as an artifact shaped like the
    generated dataset: languages sft.release.langs (else langs.codes), one or all per English
    instruction as langs.assign."""
    from xlexp.sft import release, source

    rel = cfg.sft.release
    codes = list(rel.langs or cfg.langs.codes)
    local = Path(str(rel.repo)).expanduser()
    content = source.fingerprint(SimpleNamespace(dataset=str(local))) if local.is_dir() else None
    config = {
        "release": plain(rel),
        "langs": codes,
        "assign": cfg.langs.assign,
        "seed": cfg.seed,
        "content": content,
    }
    key = store.key("release_data", config)

    def produce(work: Path, parts: Any) -> dict:
        rows, rejects, stats = release.read_release(rel, codes, cfg.langs.assign, cfg.seed)
        write_jsonl(work / "dataset.jsonl", rows)
        write_jsonl(work / "rejects.jsonl", rejects)
        write_json(work / "stats.json", stats)
        return {"rows": len(rows), "rejects": len(rejects), "langs": stats["langs"]}

    return store.build("release_data", key, produce)[0]


def sft_dataset(cfg: Config, store: Store, arts: dict[str, Artifact]) -> Artifact:
    """The rows SFT trains on: the generated dataset (`select`), the external one or the release."""
    if cfg.sft.source == "release":
        arts["release_data"] = run_release_data(cfg, store)
        return arts["release_data"]
    if cfg.sft.source == "external":
        arts["external_data"] = run_external_data(cfg, store)
        return arts["external_data"]
    return arts["select"]


def run_sft(cfg: Config, store: Store, dataset: Artifact) -> Artifact:
    from xlexp.llm.hf import materialize
    from xlexp.sft.data import take
    from xlexp.sft.launch import train

    n = parse_data_size(cfg.data_size)
    rows = dataset.rows("dataset.jsonl")
    subset = sft_subset(cfg)
    try:
        chosen = take(rows, n, subset, cfg.seed)
    except ValueError as e:  # more rows asked for than the dataset holds: fail before training
        raise ConfigError("data_size", str(e).removeprefix("data_size: ")) from None
    key = sft_key(cfg, store, dataset)

    def produce(work: Path, parts: Any) -> dict:
        # Checkpoints live outside the partial dir's parts so a killed job resumes from them.
        model_dir = materialize(cfg.model, store.root / "models")
        metrics = train(
            chosen,
            model_dir,
            cfg.sft,
            work,
            cfg.seed,
            chat_template=cfg.model.chat_template,
            report_to=report_to(cfg),
        )
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # only needed to resume
        shutil.rmtree(
            work / "launch", ignore_errors=True
        )  # the accelerate spec (a copy of the rows)
        return {
            "rows": len(chosen),
            **{k: v for k, v in metrics.items() if not isinstance(v, list | dict)},
        }

    return store.build("sft", key, produce)[0]
