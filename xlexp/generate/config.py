"""Generation settings (paper section 4) and their checks: seed passages, splitter, QE,
selection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xlexp.errors import ConfigError
from xlexp.ranges import knob

SELECTIONS = ("best_of_k", "naive", "random")


@dataclass
class SeedDataConfig:
    # demo (shipped corpus) | jsonl | parquet (local files) | hf (hub dataset, streamed)
    source: str = "demo"
    path: str | None = None
    text_field: str = "text"
    n: int = knob(12, ge=1)
    min_chars: int = knob(100, ge=0)
    max_chars: int = knob(2000, ge=1)
    # hf: a hub dataset streamed with `datasets` (paper: uonlp/CulturaX, en); parquet/jsonl: local
    # files
    name: str | None = None  # hub dataset id (source=hf)
    config: str | None = None  # hub dataset config, e.g. the CulturaX language
    split: str = "train"
    gated: bool = False  # the hub dataset needs an accepted licence and HF_TOKEN
    id_field: str = "id"  # a row without it gets an id from its text
    shuffle_buffer: int = knob(10000, ge=1)  # seeded shuffle buffer of streamed sources
    # stop reading a stream after this many rows even if n did not pass
    max_read: int | None = knob(None, ge=1)


@dataclass
class SplitterConfig:
    # a name in xlexp.generate.segment.SPLITTERS: pysbd (rule-based) | sat (wtpsplit)
    kind: str = "pysbd"
    model: str = "sat-3l-sm"
    tokenizer: str | None = None  # SaT tokenizer dir; None: the hub default
    threshold: float | None = knob(None, ge=0, le=1)


@dataclass
class QEConfig:
    # a name in xlexp.generate.qe.SCORERS: llm (GEMBA-style prompt) | comet (CometKiwi)
    kind: str = "llm"
    model: str = "Unbabel/wmt23-cometkiwi-da-xl"  # comet checkpoint (hub id or local dir)
    batch_size: int = knob(16, ge=1)
    # the QE model card for kind=llm (default: ${judge}); untyped so it may interpolate
    llm: Any = None


@dataclass
class GenerateConfig:
    # Paper section 4.1: "Respond in {lang}" appended to the instruction.
    suffix_templates: list[str] = field(default_factory=lambda: ["Respond in {language}."])
    selection: str = "best_of_k"  # best_of_k | naive (first translator) | random (ignore QE)
    keep: float = knob(0.8, gt=0, le=1)  # paper 4.4: drop the bottom 20% by passage QE
    batch_size: int = knob(16, ge=1)  # rows per part file: a killed run redoes at most this many
    # Kept rows the dataset must hold (32k: every size of Fig. 2): fresh seeds are drawn until the
    # QE filter leaves at least this many despite rejects (xlexp.generate.topup). null: seed_data.n
    # alone.
    target_rows: str | None = None
    # Generation past one node (xlexp.generate.shards): the seed set split into `shards` by a
    # stable hash of each passage id; `shard` (0 .. shards-1) runs one shard up to QE (a Slurm
    # array task); without it the run merges the finished shards into the dataset.
    shards: int = knob(1, ge=1)
    shard: int | None = knob(None, ge=0)


def translator_cards(cfg: Any) -> list[tuple[str, Any]]:
    """The first `k` translators, in the order the config lists them."""
    return list(cfg.translators.items())[: cfg.k]


def roles(cfg: Any) -> dict[str, Any]:
    """Model roles generation calls, keyed by config path."""
    out = {"teacher": cfg.teacher}
    for name, card in translator_cards(cfg):
        out[f"translators.{name}"] = card
    if cfg.qe.kind == "llm":
        out["qe.llm"] = cfg.qe.llm
    return out


def validate(cfg: Any, runs: bool) -> None:
    """Generation settings; `runs`: the stage will run (or SFT needs its dataset), so its inputs
    must be readable now."""
    from xlexp.generate.qe import SCORERS
    from xlexp.generate.segment import SPLITTERS

    if cfg.k < 1 or cfg.k > len(cfg.translators):
        raise ConfigError(
            "k",
            f"k={cfg.k} but {len(cfg.translators)} translators are configured "
            f"({', '.join(cfg.translators) or 'none'})",
        )
    if cfg.generate.selection not in SELECTIONS:
        raise ConfigError(
            "generate.selection",
            f"unknown strategy {cfg.generate.selection!r} ({', '.join(SELECTIONS)})",
        )
    if cfg.generate.target_rows is not None:
        from xlexp.sft.config import parse_data_size

        try:
            parse_data_size(cfg.generate.target_rows)
        except ConfigError as e:
            raise ConfigError("generate.target_rows", str(e).removeprefix("data_size: ")) from None
    validate_shards(cfg)
    SPLITTERS.get(cfg.splitter.kind, "splitter.kind")
    SCORERS.get(cfg.qe.kind, "qe.kind").check(cfg.qe, runs)
    if runs:
        validate_seed(cfg.seed_data)
        validate_suffix_templates(cfg.generate.suffix_templates)


def validate_shards(cfg: Any) -> None:
    """A shard index within the shard count; a shard's run builds its shard only."""
    shard, shards = cfg.generate.shard, cfg.generate.shards
    if shard is None:
        return
    if shard >= shards:
        raise ConfigError(
            "generate.shard",
            f"{shard} is not a shard of generate.shards={shards} (0..{shards - 1})",
        )
    others = [str(s) for s in cfg.stages if str(s) != "generate"]
    if others:
        raise ConfigError(
            "generate.shard",
            f"a shard's run builds that shard up to QE; run it with stages=[generate], not with "
            f"{', '.join(others)} (the run without generate.shard merges the shards into the "
            "dataset and goes on)",
        )


def validate_seed(seed_data: Any) -> None:
    """The seed corpus can be read: a known source, local files that exist, a hub id and, for a
    gated hub dataset, an HF token (HF_TOKEN or a stored login)."""
    from xlexp.generate import seed

    if seed_data.source not in seed.SOURCES:
        raise ConfigError(
            "seed_data.source", f"unknown source {seed_data.source!r} ({', '.join(seed.SOURCES)})"
        )
    if seed_data.source in seed.LOCAL_BUILDERS and not seed.local_files(seed_data.path):
        raise ConfigError("seed_data.path", f"seed file not found: {seed_data.path!r}")
    seed.check_local(seed_data)  # not empty, UTF-8
    if seed_data.source == "hf":
        if not seed_data.name:
            raise ConfigError(
                "seed_data.name", "source=hf needs a hub dataset id (e.g. uonlp/CulturaX)"
            )
        if seed_data.gated and not seed.hf_token():
            raise ConfigError(
                "seed_data.name",
                f"{seed_data.name} is gated on the HF hub and no token was found: "
                "accept its terms on the hub, then set HF_TOKEN (or run `huggingface-cli login`); "
                "offline, use seed_data=jsonl or seed_data=parquet",
            )
    if seed_data.min_chars > seed_data.max_chars:
        raise ConfigError(
            "seed_data.min_chars",
            f"{seed_data.min_chars} > seed_data.max_chars={seed_data.max_chars}",
        )


def validate_suffix_templates(templates: Any) -> None:
    """Each cross-lingual suffix (paper 4.1) names the target language through `{language}`."""
    if not templates:
        raise ConfigError(
            "generate.suffix_templates",
            "needs at least one template such as 'Respond in {language}.'",
        )
    for i, template in enumerate(templates):
        try:
            filled = str(template).format(language="\x00language\x00")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"generate.suffix_templates[{i}]",
                f"{template!r} is not a valid template ({e!r}); only {{language}} is filled",
            ) from None
        if "\x00language\x00" not in filled:
            raise ConfigError(
                f"generate.suffix_templates[{i}]",
                f"{template!r} does not name the language: put {{language}} in it",
            )
