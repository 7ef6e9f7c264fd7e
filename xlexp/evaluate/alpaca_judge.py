"""alpaca_eval 0.6.6's `weighted_alpaca_eval_gpt4_turbo` annotator, taken from the installed
package: the paper ran its evaluation "using the AlpacaEval repository" (GPT-4o judge).

Nothing of the annotator is retyped here. We build alpaca_eval's own `SinglePairwiseAnnotator`
from the package's `configs.yaml` and use its parts:
- its `RandomSwitchTwoColumnsProcessor` decides, per prompt, whether the two outputs swap
  slots (seeded on the instruction text and the annotator seed, one order per prompt);
- its prompt template, filled by `utils.make_prompts` and split into chat messages by
  `utils.prompt_to_chatml`, exactly what its `openai_completions` sends;
- its completion parsing (`_parse_completions`: `logprob_parser` with the config's kwargs,
  P("m") over {"m", "M"} among the listed top logprobs, one annotation per answer token, no
  verdict unless there is exactly one; no text fallback);
- its sampling settings (`max_tokens`, `temperature`, `top_logprobs`) for the judge call.

alpaca_eval's scale: `output_1` is the baseline (our reference), `output_2` the model (our
system); a preference is in [1, 2], 2 = output_2 better, 1.5 a tie. Ours is
P(system better) in [0, 1]: alpaca_eval's preference minus 1.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

from xlexp.evaluate.judge import JudgeProtocol

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
# alpaca_eval's `PairwiseAnnotator(seed=0)` default, which `alpaca_eval evaluate` uses: it
# seeds the slot swap, so the same seed gives the same orders as the alpaca_eval CLI.
SEED = 0
SWITCH_COLUMN = "is_switched_outputs"


@cache
def annotator() -> Any:
    """alpaca_eval's own single annotator for `ANNOTATOR`, built from the installed configs.yaml."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import constants, utils
        from alpaca_eval.annotators.pairwise_evaluator import SinglePairwiseAnnotator

        base = constants.EVALUATORS_CONFIG_DIR
        config = utils.load_configs(base / ANNOTATOR / "configs.yaml")[ANNOTATOR]
        return SinglePairwiseAnnotator(
            seed=SEED,
            base_dir=base,
            annotation_column="preference",
            completion_column="raw_completion",
            **config,
        )


def _switcher() -> Any:
    from alpaca_eval.processors import RandomSwitchTwoColumnsProcessor

    found = [p for p in annotator().processors if isinstance(p, RandomSwitchTwoColumnsProcessor)]
    if len(found) != 1:
        raise RuntimeError(
            f"alpaca_eval's {ANNOTATOR} annotator has {len(found)} output switchers, expected 1"
        )
    return found[0]


def completion_kwargs() -> dict:
    """The annotator's sampling settings: max_tokens, temperature, top_logprobs (ints/floats)."""
    kw = annotator().completions_kwargs
    return {
        "max_tokens": int(kw["max_tokens"]),
        "temperature": float(kw["temperature"]),
        "logprobs": int(kw["top_logprobs"]),
    }


def prompt_template() -> str:
    """The template text (for the judge artifact's key)."""
    return str(annotator().prompt_template)


def prepare(
    instructions: Sequence[str], references: Sequence[str], systems: Sequence[str]
) -> list[dict]:
    """One judge request per prompt: `{switched, conversation}`, aligned with the inputs.

    `output_1` = reference, `output_2` = system, then alpaca_eval's switcher swaps the slots
    of the prompts it draws; the conversation is what alpaca_eval would send to the judge.
    """
    if not len(instructions) == len(references) == len(systems):
        raise ValueError(
            f"{len(instructions)} instructions, "
            f"{len(references)} references, {len(systems)} systems"
        )
    if not instructions:
        return []
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import utils

        df = pd.DataFrame(
            {
                "instruction": list(instructions),
                "output_1": list(references),
                "output_2": list(systems),
            }
        )
        df = _switcher().preprocess(df)
        prompts, df = annotator()._make_prompts(df)
    return [
        {"switched": bool(s), "conversation": utils.prompt_to_chatml(p)}
        for s, p in zip(df[SWITCH_COLUMN], prompts, strict=True)
    ]


def openai_shape(top_logprobs: Sequence[Sequence[Sequence[Any]]]) -> dict:
    """The listed alternatives of each generated token as the OpenAI chat completion that
    alpaca_eval parses (its `completions_all` entry): `top_logprobs` is all its parser reads."""
    return {
        "logprobs": {
            "content": [
                {"top_logprobs": [{"token": t, "logprob": lp} for t, lp in listed]}
                for listed in top_logprobs
            ]
        }
    }


def _why_none(top_logprobs: Sequence[Sequence[Sequence[Any]]]) -> str:
    """Why alpaca_eval's reading gave no preference (for the malformed count's reason)."""
    if len(top_logprobs) != 1:
        # Its parser gives one annotation per token; not one for a batch of 1: None.
        return f"an answer of {len(top_logprobs)} tokens (alpaca_eval reads one-token answers)"
    return "no m/M in the top logprobs"


def parse(
    top_logprobs: Sequence[Sequence[Sequence[Any]]] | None, switched: bool
) -> tuple[float | None, str | None]:
    """(P(system better), None) from the judge's listed top logprobs, or (None, reason).

    `top_logprobs`: per generated token, the [token, logprob] pairs the server listed (the
    sampled token only when listed, as alpaca_eval sees them). Read by alpaca_eval's own
    `_parse_completions` (its `logprob_parser`, then None unless exactly one annotation), so a
    token missing from the list counts as probability 0 and an answer longer than one token
    has no verdict, as in alpaca_eval. It gives 2 - P(m) in the judge's slots; a switched
    prompt is flipped back (3 - x, as its switcher does) and the scale shifted to ours (x - 1).
    None/NaN (no m/M listed, NaN or -inf-only candidates) is no verdict: alpaca_eval drops
    those rows from its win rate too.
    """
    if not top_logprobs:
        return None, "no logprobs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numpy as np

        # Its parser logs a root-logger warning for every answer it cannot read; we count those.
        muted = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            with np.errstate(all="ignore"):
                (value,), _ = annotator()._parse_completions([openai_shape(top_logprobs)])
        finally:
            logging.disable(muted)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, _why_none(top_logprobs)
    value = float(value)
    if not 1.0 <= value <= 2.0:
        return None, f"preference out of range: {value}"
    if switched:
        value = 3.0 - value
    return value - 1.0, None


class AlpacaEval(JudgeProtocol):
    """The paper's: alpaca_eval's annotator, one judge call per prompt in the slot order its
    switcher draws, its logprob parser on the listed top logprobs only (no text fallback)."""

    name = "alpaca_eval"
    calls_per_prompt = 1
    logprobs_field = "top_logprobs"  # what alpaca_eval reads: the sampled token is not added
    parser_version = 3  # 3: the listed top_logprobs only; a multi-token answer has no verdict

    def prompt_text(self) -> str:
        return ANNOTATOR + "\n" + prompt_template()

    def sampling(self) -> dict:
        return completion_kwargs()

    def requests(
        self, rows: Sequence[dict], systems: Sequence[str], references: Sequence[str]
    ) -> list[list[dict]]:
        prepared = prepare([r["instruction"] for r in rows], references, systems)
        # Unswitched, output_1 (slot "m", our A) is the reference: order "rs".
        return [[{"order": "sr" if req["switched"] else "rs", "switched": req["switched"],
                  "conversation": req["conversation"]}] for req in prepared]

    def verdict(self, request: dict, text: str, logprobs: Any) -> tuple[dict | None, str | None]:
        pref, reason = parse(logprobs, bool(request["switched"]))  # logprobs: the listed ones
        if pref is None:
            return None, reason
        return {"preference": pref, "source": "logprobs"}, None


PROTOCOL = AlpacaEval()  # registered in xlexp.evaluate.judge as "alpaca_eval"
