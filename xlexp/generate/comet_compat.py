"""unbabel-comet 2.2.7 (its newest release) on transformers 5: two fixes, applied once.

comet 2.2.7 was written for transformers 4 and breaks in `predict` on 5 (checkpoints load fine):
1. `Encoder.concat_sequences` joins source and translation with the tokenizer's
   `build_inputs_with_special_tokens`, which transformers 5's tokenizers-backed XLM-R tokenizer
   no longer has. XLM-R's pair layout is `<s> A </s></s> B </s>` (as in transformers 4).
2. `XLMREncoder.forward` (inherited by the XL encoder of CometKiwi-XL) unpacks the model's tuple
   output into three values, the middle one the pooler output. Built without a pooling layer,
   transformers 4 still put a `None` there; 5 drops it ("expected 3, got 2"). Reading the
   `return_dict=True` output by name works on both.
Scores then equal transformers 4.57's (tests/test_comet_compat.py holds scores stored from it).
Delete this module when a comet release runs on transformers 5 as is.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_patched = False


def _xlmr_special_tokens(
    self: Any, token_ids_0: list[int], token_ids_1: list[int] | None = None
) -> list[int]:
    cls, sep = [self.cls_token_id], [self.sep_token_id]
    if token_ids_1 is None:
        return cls + token_ids_0 + sep
    return cls + token_ids_0 + sep + sep + token_ids_1 + sep


def _xlmr_forward(self: Any, input_ids: Any, attention_mask: Any, **kwargs: Any) -> dict[str, Any]:
    out = self.model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        output_hidden_states=True,
        return_dict=True,
    )
    return {
        "sentemb": out.last_hidden_state[:, 0, :],
        "wordemb": out.last_hidden_state,
        "all_layers": out.hidden_states,
        "attention_mask": attention_mask,
    }


def patch_comet() -> bool:
    """Make comet's XLM-R encoders run on the installed transformers; True if anything changed.

    Idempotent and a no-op on transformers 4, where comet works as released.
    """
    global _patched
    with _lock:
        if _patched:
            return False
        from comet.encoders.xlmr import XLMREncoder
        from transformers import XLMRobertaTokenizerFast

        changed = False
        if not hasattr(XLMRobertaTokenizerFast, "build_inputs_with_special_tokens"):
            XLMRobertaTokenizerFast.build_inputs_with_special_tokens = _xlmr_special_tokens
            changed = True
        import transformers

        if int(transformers.__version__.split(".")[0]) >= 5:
            # The XL encoder inherits this forward, so one assignment fixes both.
            XLMREncoder.forward = _xlmr_forward
            changed = True
        _patched = True
        return changed
