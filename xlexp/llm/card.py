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
    backend: str = "hf"  # a name in xlexp.llm.BACKENDS: hf | openai | vllm
    model: str = MISSING  # hub id, local dir, or pkg:<python package> (a dir inside a wheel)
    revision: str | None = None
    gguf_file: str | None = None  # a GGUF file inside `model` (hf backend converts it once)
    dtype: str = "auto"  # auto: bfloat16 on CUDA (paper section 3), float32 on CPU
    chat_template: str | None = None  # jinja template for models that have none
    batch_size: int = 8  # hf: rows per generate() call
    base_url: str | None = None  # openai: any OpenAI-compatible server
    api_key_env: str | None = None  # openai: name of the env var holding the key, never the key
    # openai: the window, requests in flight at once (a continuous window, shared by every role
    # on this model). A self-hosted vLLM server: about its --max-num-seqs (128-256); a paid API:
    # what its rate limits allow.
    max_concurrency: int = 8
    requests_per_minute: float | None = None  # openai: the API's request quota (None: no limit)
    tokens_per_minute: float | None = None  # openai: the token quota (prompt + max_tokens)
    max_retries: int = 6  # openai: retries on 429/5xx/timeouts
    timeout_s: float = 120.0
    breaker_after: int = 8  # openai: failed calls in a row after which the endpoint counts as down
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # vllm.LLM(**engine_kwargs)
    # The cost plan's GPU-hours (python -m xlexp.plan) for a local model (hf, vllm): tokens per
    # second on one GPU when generating, and when it is the student being fine-tuned. None: the
    # plan's --generate-tokens-per-s / --train-tokens-per-s.
    tokens_per_s: float | None = None
    train_tokens_per_s: float | None = None
    price_in_per_mtok: float = 0.0  # USD per 1M prompt tokens (cost ledger)
    price_out_per_mtok: float = 0.0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # openai: send each batch of cache misses through the OpenAI Batch API (files + batches,
    # 24 h window, half price) instead of one request each; the batch id is kept in the store
    # (<store>/batches/) so a restarted job resumes polling instead of resubmitting.
    batch_api: bool = False
    batch_poll_s: float = 30.0  # seconds between batches.retrieve polls
    batch_price_factor: float = 0.5  # Batch API price / synchronous price (cost ledger)


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
    check_sampling(key, card)
    cls.check_card(key, card, cuda)


def check_sampling(key: str, card: Any) -> None:
    """What no backend can serve, checked before any model loads (a negative temperature or
    batch size would otherwise load the model and fail late, or pass silently)."""
    s = card.sampling
    if s.max_tokens < 1:
        raise ConfigError(f"{key}.sampling.max_tokens", f"must be >= 1, not {s.max_tokens}")
    if not s.temperature >= 0:
        raise ConfigError(f"{key}.sampling.temperature", f"must be >= 0, not {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"{key}.sampling.top_p", f"must be in (0, 1], not {s.top_p}")
    if int(card.batch_size) < 1:
        raise ConfigError(f"{key}.batch_size", f"must be >= 1, not {card.batch_size}")


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
