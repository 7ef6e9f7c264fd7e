"""The root config (registered in Hydra's ConfigStore) and the validation pass.

Each stage package owns its settings and their checks (`xlexp/<stage>/config.py`); this module
composes them, adds the top-level knobs and the model roles, and asks each stage to validate
its slice. Types are checked by OmegaConf when the YAML tree is merged onto these dataclasses;
`validate` checks what types cannot, before any model loads. Every error names the key at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from xlexp.errors import ConfigError
from xlexp.evaluate.config import EvalConfig
from xlexp.generate.config import (
    GenerateConfig,
    QEConfig,
    SeedDataConfig,
    SplitterConfig,
    translator_cards,
)
from xlexp.langs import LangsConfig, validate_langs
from xlexp.llm.card import LLMConfig, SamplingConfig, check_card
from xlexp.ranges import check_ranges, knob
from xlexp.sft.config import ExternalDataConfig, SFTConfig, parse_data_size
from xlexp.stage import STAGES
from xlexp.track import LoggerConfig

__all__ = [
    "Config", "ConfigError", "EvalConfig", "ExternalDataConfig", "GenerateConfig", "LLMConfig",
    "LangsConfig", "LoggerConfig", "QEConfig", "SFTConfig", "SamplingConfig", "SeedDataConfig",
    "SplitterConfig", "parse_data_size", "register", "translator_cards", "validate",
]


@dataclass
class Config:
    # The top-level knobs, stated here only (conf/config.yaml composes the groups around them).
    stages: list[str] = field(default_factory=lambda: ["generate", "sft", "evaluate", "report"])
    data_size: str = "8"  # SFT rows: 32, 256, 2k, 8k, 32k (k = x1000); paper Fig. 2
    k: int = knob(2, ge=1)  # best-of-k: the first k of `translators` (paper 4.3 uses k=3)
    seed: int = 1  # the random seed of every stage (paper section 5: seed 1)
    store_dir: str = "outputs/store"
    note: str = ""  # printed with the results (the tiny profile says its numbers mean nothing)
    note_models: list[str] = field(default_factory=list)  # note only while one plays a role
    preflight: bool = True  # before the first stage: each checkable role's server, key, model
    # a stage with more content rejects than this says so loudly
    reject_warn_share: float = knob(0.5, ge=0, le=1)
    teacher: LLMConfig = MISSING
    translators: dict[str, LLMConfig] = field(default_factory=dict)
    model: LLMConfig = MISSING
    judge: LLMConfig = MISSING
    reference: LLMConfig = MISSING
    langs: LangsConfig = field(default_factory=LangsConfig)
    seed_data: SeedDataConfig = field(default_factory=SeedDataConfig)
    splitter: SplitterConfig = field(default_factory=SplitterConfig)
    qe: QEConfig = field(default_factory=QEConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register() -> None:
    """The root schema for Hydra, and the `${paper:NAME}` resolver for facts stated once in code."""
    ConfigStore.instance().store(name="base_config", node=Config)
    if not OmegaConf.has_resolver("paper"):
        from xlexp.evaluate.build_xl import PAPER_FACTS

        OmegaConf.register_new_resolver("paper", lambda name: list(PAPER_FACTS[name]))


def _cuda_probe(cuda: bool | None) -> Any:
    """`cuda()` for the backends' checks; torch is imported only if a backend asks."""
    if cuda is not None:
        return lambda: cuda

    def probe() -> bool:
        import torch

        return torch.cuda.is_available()

    return probe


def validate(cfg: DictConfig | Any, cuda: bool | None = None) -> None:
    """Fail fast, naming the key, before any model loads: the top-level knobs, then each
    declared stage's own checks of its slice, then the model card of every role it calls."""
    if isinstance(cfg, DictConfig):
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(missing[0], "must be set (it is ??? in the config)")
        OmegaConf.resolve(cfg)
    names = STAGES.names()
    if not cfg.stages:
        raise ConfigError("stages", f"no stage to run: name at least one of {', '.join(names)}")
    for i, stage in enumerate(cfg.stages):
        if stage not in STAGES:
            raise ConfigError(
                f"stages[{i}]", f"unknown stage {stage!r} (known: {', '.join(names)})"
            )
    check_ranges(cfg, Config)  # every knob's declared range (xlexp.ranges), one walk
    validate_langs(cfg)
    stages = STAGES.values()
    for stage in stages:
        stage.validate(cfg, stage.is_wanted(cfg))
    if cfg.logger.kind not in ("wandb", "none"):
        raise ConfigError("logger.kind", f"unknown logger {cfg.logger.kind!r} (wandb, none)")
    probe = _cuda_probe(cuda)
    # The cards of the stages the config names (a stage run only for its output, such as the
    # generation SFT reads from the store, may name roles this machine cannot load).
    roles: dict[str, Any] = {}
    for stage in stages:
        if stage.name in cfg.stages:
            roles.update(stage.roles(cfg))
    if "qe.llm" in roles:  # it often interpolates ${judge}: name the role the user set first
        roles["qe.llm"] = roles.pop("qe.llm")
    for key, card in roles.items():
        check_card(key, card, probe)
