"""The model card: one model role's backend, model, sampling and transport settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

from xlexp.errors import ConfigError
from xlexp.llm.backends import backend_class
from xlexp.llm.base import identity_of
from xlexp.plain import plain
from xlexp.ranges import check_ranges, knob


@dataclass
class SamplingConfig:
    temperature: float = knob(0.0, ge=0)
    top_p: float = knob(1.0, gt=0, le=1)
    max_tokens: int = knob(256, ge=1)
    seed: int | None = None


@dataclass
class LLMConfig:
    """A model card: one model role's backend, model and sampling."""

    name: str = MISSING  # short label: generator name in outputs, W&B
    backend: str = "hf"  # a name in xlexp.llm.BACKENDS: hf | openai | vllm
    model: str = MISSING  # hub id, local dir, or pkg:<python package> (a dir inside a wheel)
    revision: str | None = None
    gguf_file: str | None = None  # a GGUF file inside `model` (hf backend converts it once)
    dtype: str = "auto"  # auto: bfloat16 on CUDA (paper section 3), float32 on CPU
    chat_template: str | None = None  # jinja template for models that have none
    batch_size: int = knob(8, ge=1)  # hf: rows per generate() call
    # openai: any OpenAI-compatible server, or a list of replicas of one model (the same model
    # on several servers): requests go to the one with the fewest in flight, around one that is
    # down. Not part of the card's key: the same model behind another server answers the same.
    base_url: Any = None  # str | list[str] | None (None: api.openai.com)
    api_key_env: str | None = None  # openai: name of the env var holding the key, never the key
    # openai: the window, requests in flight at once (a continuous window, shared by every role
    # on this model), per server: a list of replicas keeps this many in flight on each. A
    # self-hosted vLLM server: about its --max-num-seqs (128-256); a paid API: what its rate
    # limits allow.
    max_concurrency: int = knob(8, ge=1)
    # openai: the API's request quota (None: no limit)
    requests_per_minute: float | None = knob(None, gt=0)
    # openai: the token quota (prompt + max_tokens)
    tokens_per_minute: float | None = knob(None, gt=0)
    max_retries: int = knob(6, ge=0)  # openai: retries on 429/5xx/timeouts
    timeout_s: float = knob(120.0, gt=0)
    # openai: failed calls in a row after which the endpoint counts as down
    breaker_after: int = knob(8, ge=1)
    # vllm.LLM(**engine_kwargs); those that change answers are part of the card's key (the
    # placement settings in xlexp.llm.base.ENGINE_PLACEMENT are not)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    # The cost plan's GPU-hours (python -m xlexp.plan) for a local model (hf, vllm): tokens per
    # second on one GPU when generating, and when it is the student being fine-tuned. None: the
    # plan's --generate-tokens-per-s / --train-tokens-per-s.
    tokens_per_s: float | None = knob(None, gt=0)
    train_tokens_per_s: float | None = knob(None, gt=0)
    price_in_per_mtok: float = knob(0.0, ge=0)  # USD per 1M prompt tokens (cost ledger)
    price_out_per_mtok: float = knob(0.0, ge=0)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # openai: send each batch of cache misses through the OpenAI Batch API (files + batches,
    # 24 h window, half price) instead of one request each; the batch id is kept in the store
    # (<store>/batches/) so a restarted job resumes polling instead of resubmitting.
    batch_api: bool = False
    batch_poll_s: float = knob(30.0, gt=0)  # seconds between batches.retrieve polls
    batch_price_factor: float = knob(0.5, ge=0)  # Batch API price / synchronous price (cost ledger)


DEFAULT_BASE_URL = "https://api.openai.com/v1"


def base_urls(card: Any) -> list[str]:
    """The servers a card's requests go to: one, or the replicas its `base_url` lists."""
    value = getattr(card, "base_url", None)
    if value is None or value == "":
        return [DEFAULT_BASE_URL]
    if isinstance(value, str):
        return [value]
    return [str(url) for url in value]


def card_key(card: Any) -> dict:
    """What of a model card determines its outputs (not concurrency, prices or batch size)."""
    c = plain(card) if OmegaConf.is_config(card) else dict(vars(card))
    return {
        "identity": identity_of(card),
        "sampling": c.get("sampling"),
        "chat_template": c.get("chat_template"),
    }


def check_card(key: str, card: Any, cuda: Any) -> None:
    """The card's backend exists and accepts it; errors name `key.<field>`."""
    if card is None:
        raise ConfigError(key, "is not set")
    cls = backend_class(card, f"{key}.backend")
    check_ranges(card, LLMConfig, f"{key}.")  # untyped cards (qe.llm, eval.translator) too
    cls.check_card(key, card, cuda)


def api_key(card: Any) -> tuple[str, str | None]:
    """(the key to send, the secret to redact from messages): from the env var the card names;
    without one, "EMPTY" (local servers such as vLLM and llama.cpp accept any key), nothing
    secret."""
    if not card.api_key_env:
        return "EMPTY", None
    key = os.environ.get(card.api_key_env)
    if not key:
        raise ValueError(f"api_key_env: environment variable {card.api_key_env} is not set")
    return key, key
