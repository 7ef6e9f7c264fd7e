"""LoRA SFT settings (paper section 5), the SFT data source and their checks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from xlexp.errors import ConfigError
from xlexp.llm.backends import BACKENDS, backend_class
from xlexp.ranges import knob

SOURCES = ("generated", "external", "release")
SUBSETS = ("top", "random")


@dataclass
class ExternalDataConfig:
    """An SFT dataset from outside the pipeline (paper Table 9: X-Instruction), read by
    `datasets`."""

    dataset: str | None = None
    # files inside `dataset`: a list, or {lang: file} when each file is one language
    data_files: Any = None
    revision: str | None = None  # hub revision (pin it: the store key cannot see hub updates)
    split: str = "train"
    # a chat list (role/content or ShareGPT from/value); else the pair below
    messages_field: str | None = None
    instruction_field: str = "instruction"
    input_field: str | None = None  # optional context appended to the instruction (Alpaca-style)
    response_field: str = "output"
    id_field: str | None = None  # None: ids from the row's position in its file
    lang_field: str | None = None  # None: the data_files key, when data_files is {lang: file}
    # keep rows whose language is one of these (as written in the data)
    langs: list[str] | None = None
    qe_field: str | None = None  # a quality score, needed for sft.subset=top
    # a seeded subset of this many rows (paper: 40K); None: every matching row
    n: int | None = knob(None, ge=1)


@dataclass
class ReleaseDataConfig:
    """The authors' XL-Instruct release (sft.source=release), read by `datasets`
    (xlexp.sft.source)."""

    repo: str = "viyer98/xl-instruct"  # hub id, or a local folder laid out like it
    config: str = "default"  # default (one file per language) | bestof3 (8 core languages) | scored
    revision: str | None = None  # hub revision (pin it: the store key cannot see hub updates)
    langs: list[str] | None = None
    # appended when the instruction does not name the language
    suffix_template: str | None = "Respond in {language}."


@dataclass
class SFTConfig:
    # Paper section 5: LoRA r=8 on q/v, 1 epoch, cosine, lr 1e-4, 3% warmup, bf16, batch 8, seed 1.
    r: int = knob(8, ge=1)
    alpha: int = knob(16, gt=0)
    dropout: float = knob(0.05, ge=0, lt=1)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    epochs: float = knob(1.0, gt=0)
    lr: float = knob(1e-4, gt=0)
    scheduler: str = "cosine"
    warmup_ratio: float = knob(0.03, ge=0, le=1)
    batch_size: int = knob(8, ge=1)
    grad_accum: int = knob(1, ge=1)
    max_seq_len: int = knob(1024, ge=1)
    bf16: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    subset: str = "top"  # top (by QE, as the paper) | random
    save_steps: int = knob(50, ge=1)  # checkpoint every N steps for resume
    # generated (the XL-Instruct dataset) | external (sft.external) | release (sft.release)
    source: str = "generated"
    external: ExternalDataConfig = field(default_factory=ExternalDataConfig)
    release: ReleaseDataConfig = field(default_factory=ReleaseDataConfig)
    # auto: one per visible GPU (accelerate launch when > 1), or a count
    num_processes: str = "auto"


_SIZE = re.compile(r"^\s*(\d+)\s*([kK]?)\s*$")


def parse_data_size(value: Any) -> int:
    """`32` -> 32, `2k` -> 2000, `32k` -> 32000 (k = x1000)."""
    m = _SIZE.match(str(value))
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            "data_size",
            f"cannot parse {value!r}: use a positive count such as 32, 256, 2k, 8k, 32k",
        )
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def needs_generated_data(cfg: Any) -> bool:
    """SFT trains on the generated dataset, so generation must run (or be in the store)."""
    return "sft" in cfg.stages and cfg.sft.source == "generated"


def validate(cfg: Any, runs: bool) -> None:
    """SFT settings; `runs`: the stage will run, so its data source and processes must work."""
    parse_data_size(cfg.data_size)
    sft = cfg.sft
    if sft.subset not in SUBSETS:
        raise ConfigError("sft.subset", f"must be 'top' or 'random', not {sft.subset!r}")
    if not runs:
        return
    from xlexp.sft.launch import parse_num_processes

    if not backend_class(cfg.model, "model.backend").trainable:
        trainable = [name for name in BACKENDS.names() if BACKENDS.get(name).trainable]
        raise ConfigError(
            "model.backend",
            "SFT trains a local LoRA adapter: the student model "
            f"needs a trainable backend ({', '.join(trainable)}), not {cfg.model.backend!r}",
        )
    try:
        parse_num_processes(sft.num_processes)
    except ValueError as e:
        raise ConfigError("sft.num_processes", str(e)) from None
    if sft.source not in SOURCES:
        raise ConfigError("sft.source", f"must be one of {', '.join(SOURCES)}, not {sft.source!r}")
    target = cfg.generate.get("target_rows") if sft.source == "generated" else None
    if target is not None and parse_data_size(cfg.data_size) > parse_data_size(target):
        raise ConfigError(
            "data_size",
            f"{cfg.data_size} rows is more than generate.target_rows={cfg.generate.target_rows}",
        )
    if sft.source == "external":
        _validate_external(sft)
    if sft.source == "release":
        _validate_release(sft)


def _validate_release(sft: Any) -> None:
    from xlexp.langs import LANGUAGES
    from xlexp.sft.release import RELEASE_CONFIGS

    if sft.release.config not in RELEASE_CONFIGS:
        raise ConfigError(
            "sft.release.config",
            f"must be one of {', '.join(RELEASE_CONFIGS)}, not {sft.release.config!r}",
        )
    for i, code in enumerate(sft.release.langs or []):
        if code not in LANGUAGES:
            raise ConfigError(f"sft.release.langs[{i}]", f"unknown language {code!r}")


def _validate_external(sft: Any) -> None:
    from xlexp.sft.source import looks_local

    ext = sft.external
    if not ext.dataset:
        raise ConfigError(
            "sft.external.dataset", "sft.source=external needs a hub dataset id or a local file"
        )
    if looks_local(ext.dataset) and not os.path.exists(ext.dataset):
        raise ConfigError("sft.external.dataset", f"file not found: {ext.dataset!r}")
    if not ext.messages_field and not (ext.instruction_field and ext.response_field):
        raise ConfigError(
            "sft.external.messages_field", "set it, or both instruction_field and response_field"
        )
    if (
        ext.langs is not None
        and not ext.lang_field
        and not isinstance(ext.data_files, dict | DictConfig)
    ):
        raise ConfigError(
            "sft.external.lang_field",
            "a language filter needs a language column or data_files {lang: file}",
        )
    if sft.subset == "top" and not ext.qe_field:
        raise ConfigError(
            "sft.subset",
            "top needs quality scores: set sft.external.qe_field or use sft.subset=random",
        )
