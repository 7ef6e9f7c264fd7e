"""The `alpaca_eval` judge protocol against alpaca_eval's own annotator: one fixture of raw judge
outputs goes through xlexp (plan, combine, metrics) and through alpaca_eval's PairwiseAnnotator
(its switcher, template, equality rule, logprob parser) and get_winrate; the win rates agree."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest

from xlexp.evaluate import alpaca_judge, judge, metrics
from xlexp.llm import Completion, wire
from xlexp.llm.base import COMPLETION_FIELDS, ResponseCache

_SLOT_M = re.compile(r'"model_identifier": "m",\s*"output": """(.*?)"""', re.S)


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def _position(sampled: tuple[str, float], listed: list[tuple[str, float]]) -> dict:
    """One generated token as an OpenAI server sends it: the sampled token and its logprob, and
    the `top_logprobs` it lists (which need not hold the sampled token)."""
    return {**_entry(*sampled), "top_logprobs": [_entry(t, lp) for t, lp in listed]}


OTHERS = [("The", -3.1), ("Both", -3.4), ("Model", -4.0), ("I", -4.2)]

# What the fake judge answers, by `_case`: each way an answer can be read differently.
CASES = (
    "no m/M listed", "NaN logprob", "sampled m not listed", "only m listed", "only M listed",
    "sampled m, neither listed", "two tokens", "near tie", "sampled value differs from listed",
    "plain", "plain", "plain",
)


def _case(user: str) -> str:
    return CASES[sum(map(ord, user)) % len(CASES)]


def raw_judge_answer(messages: list[dict]) -> dict:
    """A judge's raw OpenAI `choices[0]` for a prompt: it likes outputs saying "good", sees only
    the prompt, answers at temperature 1 (so sometimes a token outside its top-5), and sometimes
    ignores max_tokens. Its answer depends on which output sits in slot "m", so a wrong slot order
    changes the result."""
    user = messages[-1]["content"]
    p_m = 0.8 if "good" in _SLOT_M.search(user).group(1) else 0.3
    p_m = min(max(p_m + 0.01 * (sum(map(ord, user)) % 7), 0.01), 0.99)
    m, big_m = ("m", math.log(p_m)), ("M", math.log(1 - p_m) - 0.05)
    case = _case(user)
    if case == "no m/M listed":
        content = [_position(("The", -0.1), [("The", -0.1), *OTHERS])]
    elif case == "NaN logprob":
        content = [_position(big_m, [("m", float("nan")), big_m, *OTHERS[:3]])]
    elif case == "sampled m not listed":
        content = [_position(("m", -6.2), [big_m, *OTHERS])]
    elif case == "only m listed":
        content = [_position(m, [m, *OTHERS])]
    elif case == "only M listed":
        content = [_position(big_m, [big_m, *OTHERS])]
    elif case == "sampled m, neither listed":
        content = [_position(("m", -6.0), [("The", -0.3), *OTHERS])]
    elif case == "two tokens":
        content = [_position(m, [m, big_m, *OTHERS[:3]]),
                   _position((".", -0.01), [(".", -0.01), ("!", -5.0)])]
    elif case == "near tie":
        content = [_position(("m", -0.6931471), [("m", -0.6931471), ("M", -0.6931472)])]
    elif case == "sampled value differs from listed":
        content = [_position(("m", -0.3), [big_m, ("m", -0.9), *OTHERS[:3]])]
    else:
        content = [_position(m if p_m >= 0.5 else big_m, [m, big_m, *OTHERS[:3]])]
    return {
        "index": 0,
        "finish_reason": "length",
        "message": {"role": "assistant", "content": "".join(c["token"] for c in content)},
        "logprobs": {"content": content},
    }


def _fixture(n: int = 96) -> tuple[list[dict], list[str], list[str]]:
    rows = [
        {
            "id": i,
            "lang": "deu",
            "instruction": f"Frage {i}: erkläre Thema {i * 7 % 11}.\n\nAnswer in German.",
        }
        for i in range(n)
    ]
    systems = [("good " if i % 3 else "plain ") + f"Antwort {i}" + " lang" * (i % 9)
               for i in range(n)]
    references = [("good " if i % 4 == 0 else "meh ") + f"Reference {i}" + " x" * (i % 5)
                  for i in range(n)]
    for i in (5, 17, 33):  # identical outputs: a tie without a judge call
        references[i] = systems[i]
    return rows, systems, references


def _alpaca_eval(
    rows: list[dict], systems: list[str], references: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict, dict[str, float], list[str]]:
    """alpaca_eval's own pipeline on the same fixture, its judge call answered by the same raw
    answers: its PairwiseAnnotator, get_winrate, and its LC entry point (length_controlled_minimal,
    served a local stand-in for the hub table that GLM does not use). Returns its metrics, its
    preference per instruction (NaN: dropped) and the prompts it sent."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import utils
        from alpaca_eval.annotators import PairwiseAnnotator
        from alpaca_eval.metrics import get_winrate, glm_winrate

        annotator = PairwiseAnnotator(
            annotators_config=alpaca_judge.ANNOTATOR,
            caching_path=None,
            is_avoid_reannotations=False,
        )
        sent: list[str] = []

        def fake_completions(prompts: list[str], **kwargs) -> dict:
            sent.extend(prompts)
            n = len(prompts)
            return {
                "completions": ["x"] * n,
                "completions_all": [raw_judge_answer(utils.prompt_to_chatml(p)) for p in prompts],
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
        gamed = tmp_path / "df_gamed.csv"
        pd.DataFrame(
            {"model": "x", "index": range(len(rows)), "instruction_difficulty": 0.0}
        ).to_csv(gamed, index=False)
        monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(gamed))
        index = {r["instruction"]: i for i, r in enumerate(rows)}
        lc = glm_winrate.get_length_controlled_winrate(
            [{**a, "index": index[a["instruction"]], "annotator": "judge"} for a in annotations],
            glm_name="length_controlled_minimal",
            save_weights_dir=None,
            is_warn_extreme_changes=False,
        )
    result["length_controlled_winrate"] = lc["length_controlled_winrate"]
    prefs = {a["instruction"]: float("nan") if a["preference"] is None else float(a["preference"])
             for a in annotations}
    return result, prefs, sent


def _xlexp_rows(
    rows: list[dict], systems: list, references: list
) -> tuple[list[dict], list[list[dict]]]:
    """The same raw answers as xlexp's OpenAI backend reads them off the wire."""
    entries = judge.plan("alpaca_eval", rows, systems, references)
    convs = judge.conversations(entries)
    comps = [wire.parse_completion({"choices": [raw_judge_answer(c)]}, want_logprobs=True)
             for c in convs]
    return judge.combine("alpaca_eval", entries, comps), convs


def test_every_number_equals_alpaca_evals_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, systems, references = _fixture()
    verdicts, convs = _xlexp_rows(rows, systems, references)
    theirs, their_prefs, sent = _alpaca_eval(rows, systems, references, tmp_path, monkeypatch)
    # Every case occurs, and each prompt's preference is theirs (on their 1-2 scale).
    assert {_case(c[-1]["content"]) for c in convs} == set(CASES)
    for row, verdict in zip(rows, verdicts, strict=True):
        ours = verdict["preference"]
        their = their_prefs[row["instruction"]]
        assert (ours is None and math.isnan(their)) or ours + 1 == pytest.approx(their, abs=1e-12)
    table = metrics.summarize(
        {"deu": {**metrics.entry_from_rows(verdicts, systems, references),
                 "ref_outputs": references, "lang_fidelity": 1.0}},
        n_boot=20,
    )["deu"]
    assert table["n"] == theirs["n_total"]
    assert table["win_rate"] == pytest.approx(theirs["win_rate"], abs=1e-9)
    assert table["se"] == pytest.approx(theirs["standard_error"], abs=1e-9)
    assert table["lc_win_rate"] == pytest.approx(theirs["length_controlled_winrate"], abs=1e-9)
    # The same calls, the same messages, none for identical outputs.
    assert len(convs) == len(sent) == len(rows) - 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval import utils
    assert sorted(map(str, convs)) == sorted(str(utils.prompt_to_chatml(p)) for p in sent)


def test_each_case_is_read_as_alpaca_eval_reads_it() -> None:
    rows, systems, references = _fixture()
    verdicts, convs = _xlexp_rows(rows, systems, references)
    judged = [v for v in verdicts if v["status"] != "identical"]
    by_case: dict[str, list[dict]] = {}
    for conv, verdict in zip(convs, judged, strict=True):
        by_case.setdefault(_case(conv[-1]["content"]), []).append(verdict)
    for case in ("no m/M listed", "NaN logprob", "sampled m, neither listed"):
        assert {v["status"] for v in by_case[case]} == {"malformed"}
        assert {v["malformed"][0]["reason"] for v in by_case[case]} == {
            "no m/M in the top logprobs"}
    assert {v["malformed"][0]["reason"] for v in by_case["two tokens"]} == {
        "an answer of 2 tokens (alpaca_eval reads one-token answers)"}
    # A token that is not listed has probability 0: a full verdict for the one listed.
    for case in ("sampled m not listed", "only M listed", "only m listed"):
        assert {v["status"] for v in by_case[case]} == {"judged"}
        assert {round(v["preference"], 12) for v in by_case[case]} <= {0.0, 1.0}
    # The listed value of the sampled token counts, not its own: P(m) = e^-0.9 / (e^-0.9 + ...).
    for v in by_case["sampled value differs from listed"]:
        assert min(v["preference"], 1 - v["preference"]) > 0.05
    for v in by_case["near tie"]:
        assert v["preference"] == pytest.approx(0.5, abs=1e-6)


def test_listed_top_logprobs_survive_the_response_cache(tmp_path: Path) -> None:
    choice = raw_judge_answer([{"role": "user", "content": '"model_identifier": "m",\n'
                                '    "output": """good"""'}])
    comp = wire.parse_completion({"choices": [choice]}, want_logprobs=True)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    fields = {k: v for k, v in vars(comp).items() if k in COMPLETION_FIELDS}
    cache.put_many({"new": fields, "old": {"text": "m", "logprobs": comp.logprobs}})
    found = cache.get_many(["new", "old"])
    # An answer stored before the listed alternatives were kept is asked again.
    assert list(found) == ["new"]
    again = Completion(**found["new"])
    assert alpaca_judge.parse(again.top_logprobs, False) == alpaca_judge.parse(
        comp.top_logprobs, False)


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
        ([], "no logprobs"),
        ([[]], "no m/M in the top logprobs"),
        ([[("The", -0.1)]], "no m/M in the top logprobs"),
        ([[("m", float("-inf")), ("M", float("-inf"))]], "no m/M in the top logprobs"),
        ([[("m", float("nan")), ("M", float("nan"))]], "no m/M in the top logprobs"),
        ([[("m", -0.1)], [("m", -0.1)]],
         "an answer of 2 tokens (alpaca_eval reads one-token answers)"),
    ]
    for listed, reason in cases:
        assert alpaca_judge.parse(listed, switched=False) == (None, reason)
    # P(m) = 0.8 unswitched: m is the reference, so P(system better) = 0.2; switched: 0.8.
    top = [[("m", math.log(0.8)), ("M", math.log(0.2))]]
    assert alpaca_judge.parse(top, switched=False)[0] == pytest.approx(0.2)
    assert alpaca_judge.parse(top, switched=True)[0] == pytest.approx(0.8)
