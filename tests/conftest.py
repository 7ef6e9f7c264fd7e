"""Shared fixtures: offline environment, the tiny model, model cards for it.

The tests dir is put on sys.path so helper modules import by name
(`from tiny import build_tiny_llama`, `from fakeserver import FakeOpenAI`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before anything imports transformers/huggingface_hub/wandb: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from tiny import build_tiny_llama  # noqa: E402

from xlexp.config import LLMConfig, SamplingConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with a ChatML template (pad <pad>, eos <|im_end|>)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_card(tiny_model_dir: Path) -> Callable[..., DictConfig]:
    """`tiny_card(batch_size=4, sampling=dict(max_tokens=8))` -> a structured LLMConfig (hf)."""

    def make(**overrides: Any) -> DictConfig:
        sampling = overrides.pop("sampling", {})
        if isinstance(sampling, dict):
            sampling = SamplingConfig(**{"max_tokens": 16, **sampling})
        fields = {"name": "tiny", "backend": "hf", "model": str(tiny_model_dir), "batch_size": 4}
        fields.update(overrides)
        return OmegaConf.structured(LLMConfig(sampling=sampling, **fields))

    return make
