"""alpaca_eval 0.6.6's `weighted_alpaca_eval_gpt4_turbo` annotator, taken from the installed
package: the paper ran its evaluation "using the AlpacaEval repository" (GPT-4o judge).

Nothing of the annotator is retyped here. We build alpaca_eval's own `SinglePairwiseAnnotator`
from the package's `configs.yaml` and use its parts:
- its `RandomSwitchTwoColumnsProcessor` decides, per prompt, whether the two outputs swap
  slots (seeded on the instruction text and the annotator seed, one order per prompt);
- its prompt template, filled by `utils.make_prompts` and split into chat messages by
  `utils.prompt_to_chatml`, exactly what its `openai_completions` sends;
- its completion parser (`logprob_parser` with the config's kwargs: P("m") over {"m", "M"}
  at the first generated token, no text fallback);
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


def openai_shape(logprobs: list[dict[str, float]] | None) -> dict:
    """Our per-token `{token: logprob}` list as the OpenAI chat completion alpaca_eval parses."""
    content = [
        {
            "token": max(top, key=lambda t: _finite(top[t])) if top else "",
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()],
        }
        for top in logprobs or []
    ]
    return {"logprobs": {"content": content}}


def _finite(x: Any) -> float:
    return x if isinstance(x, int | float) and math.isfinite(x) else -math.inf


def parse(
    logprobs: list[dict[str, float]] | None, switched: bool
) -> tuple[float | None, str | None]:
    """(P(system better), None) from the judge's first-token top logprobs, or (None, reason).

    alpaca_eval's parser gives 2 - P(m) in the judge's slots; a switched prompt is flipped back
    (3 - x, as its switcher does) and the scale shifted to ours (x - 1). NaN, -inf-only or
    missing candidates give no verdict: alpaca_eval drops those rows from its win rate too.
    """
    if not logprobs or not logprobs[0]:
        return None, "no logprobs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numpy as np

        # Its parser logs a root-logger warning for every answer without m/M; we count those.
        muted = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with np.errstate(all="ignore"):
                (value,) = annotator().fn_completion_parser(openai_shape(logprobs[:1]))
        except (ValueError, AssertionError, TypeError) as e:
            return None, f"logprob parser: {type(e).__name__}"
        finally:
            logging.disable(muted)
    value = float(value)
    if not math.isfinite(value) or not 1.0 <= value <= 2.0:
        return None, "no m/M in the top logprobs" if math.isnan(
            value
        ) else f"preference out of range: {value}"
    if switched:
        value = 3.0 - value
    return value - 1.0, None


class AlpacaEval(JudgeProtocol):
    """The paper's: alpaca_eval's annotator, one judge call per prompt in the slot order its
    switcher draws, its logprob parser (no text fallback)."""

    name = "alpaca_eval"
    calls_per_prompt = 1

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
        pref, reason = parse(logprobs, bool(request["switched"]))
        if pref is None:
            return None, reason
        return {"preference": pref, "source": "logprobs"}, None


PROTOCOL = AlpacaEval()  # registered in xlexp.evaluate.judge as "alpaca_eval"
