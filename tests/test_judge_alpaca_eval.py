"""The `alpaca_eval` judge protocol against alpaca_eval's own annotator: one fixture of raw judge
outputs goes through xlexp (plan, combine, metrics) and through alpaca_eval's PairwiseAnnotator
(its switcher, template, equality rule, logprob parser) and get_winrate; the win rates agree."""

from __future__ import annotations

import math
import re
import warnings

import pytest

from xlexp.evaluate import alpaca_judge, judge, metrics
from xlexp.llm import Completion

_SLOT_M = re.compile(r'"model_identifier": "m",\s*"output": """(.*?)"""', re.S)


def fake_judge_top_logprobs(messages: list[dict]) -> dict[str, float]:
    """A judge that likes outputs saying "good", sees only the prompt, and sometimes answers badly.

    Its answer depends on which output sits in slot "m", so a wrong slot order changes the result.
    """
    user = messages[-1]["content"]
    first = _SLOT_M.search(user).group(1)
    key = sum(map(ord, user)) % 7
    if key == 0:
        return {"The": -0.1, "Both": -2.5, "I": -3.0}  # no m/M in the top-5: no verdict
    if key == 1:
        return {"m": float("nan"), "M": -0.7, "The": -2.0}  # a NaN logprob
    p_m = 0.8 if "good" in first else 0.3
    p_m = min(max(p_m + 0.01 * key, 0.01), 0.99)
    return {"m": math.log(p_m), "M": math.log(1 - p_m) - 0.05, "Model": -4.0}


def _fixture(n: int = 60) -> tuple[list[dict], list[str], list[str]]:
    rows = [
        {
            "id": i,
            "lang": "deu",
            "instruction": f"Frage {i}: erkläre Thema {i * 7 % 11}.\n\nAnswer in German.",
        }
        for i in range(n)
    ]
    systems = [("good " if i % 3 else "plain ") + f"Antwort {i}" for i in range(n)]
    references = [("good " if i % 4 == 0 else "meh ") + f"Reference {i}" for i in range(n)]
    for i in (5, 17, 33):  # identical outputs: a tie without a judge call
        references[i] = systems[i]
    return rows, systems, references


def _alpaca_eval_win_rate(
    rows: list[dict], systems: list[str], references: list[str]
) -> tuple[float, int, list[str]]:
    """alpaca_eval's own pipeline on the same fixture, its judge call replaced by the fake judge."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import utils
        from alpaca_eval.annotators import PairwiseAnnotator
        from alpaca_eval.metrics import get_winrate

        annotator = PairwiseAnnotator(
            annotators_config=alpaca_judge.ANNOTATOR,
            caching_path=None,
            is_avoid_reannotations=False,
        )
        sent: list[str] = []

        def fake_completions(prompts: list[str], **kwargs) -> dict:
            sent.extend(prompts)
            completions = []
            for prompt in prompts:
                top = fake_judge_top_logprobs(utils.prompt_to_chatml(prompt))
                completions.append(
                    {
                        "logprobs": {
                            "content": [
                                {
                                    "token": max(
                                        top, key=lambda t: top[t] if top[t] == top[t] else -1e9
                                    ),
                                    "top_logprobs": [
                                        {"token": t, "logprob": lp} for t, lp in top.items()
                                    ],
                                }
                            ]
                        }
                    }
                )
            n = len(prompts)
            return {
                "completions": ["x"] * n,
                "completions_all": completions,
                "price_per_example": [0.0] * n,
                "time_per_example": [0.0] * n,
            }

        (single,) = annotator.annotators.values()
        single.fn_completions = fake_completions
        df = pd.DataFrame(
            {
                "instruction": [r["instruction"] for r in rows],
                "output_1": references,
                "output_2": systems,
                "generator_1": "reference",
                "generator_2": "system",
            }
        )
        annotations = annotator.annotate_pairs(df)
        result = get_winrate(annotations)
    return float(result["win_rate"]), int(result["n_total"]), sent


def _xlexp_rows(
    rows: list[dict], systems: list, references: list
) -> tuple[list[dict], list[list[dict]]]:
    entries = judge.plan("alpaca_eval", rows, systems, references)
    convs = judge.conversations(entries)
    comps = [Completion(text="m", logprobs=[fake_judge_top_logprobs(c)]) for c in convs]
    return judge.combine("alpaca_eval", entries, comps), convs


def test_win_rate_equals_alpaca_evals_own() -> None:
    rows, systems, references = _fixture()
    verdicts, convs = _xlexp_rows(rows, systems, references)
    theirs, n_theirs, sent = _alpaca_eval_win_rate(rows, systems, references)
    ours = metrics.win_rate([r["preference"] for r in verdicts])
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert sum(r["preference"] is not None for r in verdicts) == n_theirs
    # The same calls, the same messages, none for identical outputs.
    assert len(convs) == len(sent) == len(rows) - 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import utils
    assert sorted(map(str, convs)) == sorted(str(utils.prompt_to_chatml(p)) for p in sent)
    statuses = [r["status"] for r in verdicts]
    assert statuses.count("identical") == 3 and statuses.count("malformed") > 0


def test_one_order_per_prompt_drawn_as_alpaca_eval_draws_it() -> None:
    rows, systems, references = _fixture()
    entries = judge.plan("alpaca_eval", rows, systems, references)
    orders = [e["requests"][0]["order"] for e in entries if e["requests"]]
    assert set(orders) == {"sr", "rs"}  # both slot orders occur, one per prompt
    assert all(len(e["requests"]) <= 1 for e in entries)
    # The draw follows the instruction text (and alpaca_eval's seed), not the row's position.
    again = judge.plan("alpaca_eval", rows[::-1], systems[::-1], references[::-1])
    assert [e["requests"] and e["requests"][0]["order"] for e in again][::-1] == [
        e["requests"] and e["requests"][0]["order"] for e in entries
    ]
    sr = next(e for e in entries if e["requests"] and e["requests"][0]["order"] == "sr")
    user = sr["requests"][0]["conversation"][-1]["content"]
    assert _SLOT_M.search(user).group(1) == systems[sr["id"]]  # "sr": the system in slot m


def test_sampling_and_prompt_come_from_the_installed_config() -> None:
    assert judge.sampling_kwargs("alpaca_eval") == {
        "max_tokens": 1,
        "temperature": 1.0,
        "logprobs": 5,
    }
    assert "model_identifier" in judge.prompt_digest_input("alpaca_eval")
    assert judge.prompt_digest_input("both_orders") == judge.PROMPT


def test_bad_logprobs_are_malformed_never_nan() -> None:
    cases = [
        (None, "no logprobs"),
        ([{}], "no logprobs"),
        ([{"The": -0.1}], "no m/M in the top logprobs"),
        ([{"m": float("-inf"), "M": float("-inf")}], "no m/M in the top logprobs"),
        ([{"m": float("nan"), "M": float("nan")}], "no m/M in the top logprobs"),
    ]
    for logprobs, reason in cases:
        assert alpaca_judge.parse(logprobs, switched=False) == (None, reason)
    # P(m) = 0.8 unswitched: m is the reference, so P(system better) = 0.2; switched: 0.8.
    top = [{"m": math.log(0.8), "M": math.log(0.2)}]
    assert alpaca_judge.parse(top, switched=False)[0] == pytest.approx(0.2)
    assert alpaca_judge.parse(top, switched=True)[0] == pytest.approx(0.8)
