"""A synthetic store shaped like a real run's: every artifact the view reads, made through the
real store API and the stages' own pure cores (language assignment, segmentation, selection
and the QE cut, the judge's plan and verdict parser, the metrics), with seeded stand-ins for
the models. Big enough to time the view (32K dataset rows) in seconds, no model involved.

`python tests/viewstore.py OUT_DIR [N_ITEMS]` builds one and prints its keys.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from xlexp.evaluate import build_xl, judge, metrics
from xlexp.generate import segment, select, translate
from xlexp.generate import stats as gen_stats
from xlexp.generate.qe import triple_key
from xlexp.store import Store, write_json, write_jsonl

TRANSLATORS = ("eurollm-9b-instruct", "gemma-2-27b-it", "mistral-small-24b")
TOPICS = [
    "Honey",
    "Tomato plants",
    "Solar panels",
    "The Danube",
    "Sourdough bread",
    "Night trains",
    "Wind turbines",
    "Coral reefs",
    "Public libraries",
    "Bicycle lanes",
    "Compost heaps",
    "Lighthouses",
]
VERBS = ["needs", "keeps", "changes", "protects", "feeds", "shapes", "saves", "warms"]
OBJECTS = [
    "the soil in spring",
    "small towns along the river",
    "energy through the winter",
    "the local economy",
    "birds and insects",
    "the water table",
    "the people who live nearby",
    "old traditions",
]
TAILS = [
    "more than most people expect",
    "when it is looked after well",
    "in quiet but lasting ways",
    "according to several recent studies",
    "unless the weather turns",
    "for many years to come",
]
# A few words per language, so candidates read like (bad) translations rather than copies.
WORDS = {
    "deu": {
        "the": "die",
        "and": "und",
        "in": "im",
        "of": "der",
        "for": "für",
        "when": "wenn",
        "more": "mehr",
    },
    "fra": {
        "the": "le",
        "and": "et",
        "in": "dans",
        "of": "de",
        "for": "pour",
        "when": "quand",
        "more": "plus",
    },
    "por": {
        "the": "o",
        "and": "e",
        "in": "em",
        "of": "de",
        "for": "para",
        "when": "quando",
        "more": "mais",
    },
    "hun": {
        "the": "a",
        "and": "és",
        "in": "-ban",
        "of": "-nak",
        "for": "-ért",
        "when": "amikor",
        "more": "több",
    },
}
TEMPLATES = [
    "Respond in {language}.",
    "Answer in {language}.",
    "Please write your answer in {language}.",
]


class SentenceSplitter:
    """Splits after . ! ? (the real splitters are slower than the whole synthetic store)."""

    def split(self, text: str) -> list[str]:
        return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def passage(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    sentences = [f"{topic} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."]
    for _ in range(rng.randint(3, 6)):
        sentences.append(
            f"{rng.choice(['It', 'This', 'That'])} {rng.choice(VERBS)} "
            f"{rng.choice(OBJECTS)}, {rng.choice(TAILS)}."
        )
    return " ".join(sentences)


def pseudo_translate(sentence: str, lang: str, t: int) -> str:
    words = WORDS.get(lang, {})
    out = [words.get(w, w) for w in sentence.split()]
    if t == 1:
        out = out[:-1] + [out[-1].rstrip(".") + "!"]
    elif t == 2 and len(out) > 4:
        out = out[:2] + out[3:]
    return f"{' '.join(out)}"


def build_generation(
    store: Store,
    n_items: int,
    codes: list[str],
    seed: int = 1,
    kept_rows: int | None = None,
    record_inputs: bool = True,
) -> dict[str, str]:
    """seed -> reverse -> refine -> translate -> qe -> select artifacts; returns their keys.

    The QE cut keeps the paper's 80% of the selected rows, or exactly `kept_rows` of them.
    `record_inputs`: each key made from its inputs' keys, so DONE records them (`made_of`) as
    the real stages' do; False: a store from before DONE recorded them."""
    upstream = {
        "reverse": ["seed"],
        "refine": ["reverse"],
        "translate": ["refine"],
        "qe": ["translate"],
        "select": ["translate", "qe"],
    }

    def inputs(stage: str) -> list[str]:
        return [keys[s] for s in upstream.get(stage, [])] if record_inputs else []

    rng = random.Random(seed)
    keys: dict[str, str] = {}
    # Passages until `n_items` survive reverse and refine (a few of each are rejected, with
    # reasons).
    seeds, pairs, reverse_rejects, refined, refine_rejects = [], [], [], [], []
    while len(refined) < n_items:
        s = {"id": f"cx-{len(seeds):06d}", "text": passage(rng)}
        seeds.append(s)
        if len(seeds) % 97 == 5:
            reverse_rejects.append({"id": s["id"], "reject": "empty instruction", "raw": ""})
            continue
        topic = " ".join(s["text"].split(" ", 2)[:2]).lower()
        pair = {
            "id": s["id"],
            "seed_id": s["id"],
            "question": f"What should I know about {topic}?",
            "response": s["text"],
        }
        pairs.append(pair)
        if len(pairs) % 151 == 7:
            refine_rejects.append(
                {
                    "id": pair["id"],
                    "reject": "no 'Question:' / 'Response:' fields",
                    "raw": "Sure! Here is a better version.",
                }
            )
        else:
            refined.append(
                {
                    **pair,
                    "question": f"What is worth knowing about {topic}?",
                    "original_question": pair["question"],
                }
            )

    def made(stage: str, produce, counts_of) -> None:  # noqa: ANN001
        key = store.key(stage, {"synthetic": n_items, "seed": seed, "codes": codes}, inputs(stage))

        def work(path: Path, parts) -> dict:  # noqa: ANN001
            return counts_of(path, produce())

        store.build(stage, key, work)
        keys[stage] = key

    made(
        "seed",
        lambda: seeds,
        lambda p, rows: {
            "read": len(rows) + 3,
            "too_short": 2,
            "too_long": 1,
            "duplicate": 0,
            "out": write_jsonl(p / "rows.jsonl", rows),
        },
    )

    def chat_counts(path: Path, rows_rejects: tuple[list, list]) -> dict:
        ok, rejects = rows_rejects
        write_jsonl(path / "rows.jsonl", ok)
        write_jsonl(path / "rejects.jsonl", rejects)
        reasons: dict[str, int] = {}
        for r in rejects:
            reasons[r["reject"]] = reasons.get(r["reject"], 0) + 1
        return {
            "in": len(ok) + len(rejects),
            "out": len(ok),
            "rejects": len(rejects),
            **({"reject_reasons": reasons} if reasons else {}),
        }

    made("reverse", lambda: (pairs, reverse_rejects), chat_counts)
    made("refine", lambda: (refined, refine_rejects), chat_counts)

    items = translate.assign_languages(refined, codes, "balanced", TEMPLATES, seed)
    translate.add_segments(items, SentenceSplitter())
    rejected: dict[str, int] = {}
    for n, item in enumerate(items):
        sents = segment.sentences(item["segments"])
        cands = [
            [pseudo_translate(s, item["lang"], t) for t in range(len(TRANSLATORS))] for s in sents
        ]
        if n % 211 == 3:  # every translator failed on the first sentence: select rejects the item
            cands[0] = [None] * len(TRANSLATORS)
            for name in TRANSLATORS:
                rejected[f"{name}: empty translation"] = (
                    rejected.get(f"{name}: empty translation", 0) + 1
                )
        item["sentences"], item["candidates"] = sents, cands
    jobs = {(s, it["lang"]) for it in items for s in it["sentences"]}
    made(
        "translate",
        lambda: items,
        lambda p, rows: {
            "items": write_jsonl(p / "rows.jsonl", rows),
            "sentence_jobs": len(jobs),
            "translations": len(jobs) * len(TRANSLATORS),
            "rejected_translations": rejected,
        },
    )
    score_rng = random.Random(seed + 1)
    qe_rows, seen = [], set()
    for it in items:
        for s, cands in zip(it["sentences"], it["candidates"], strict=True):
            for mt in cands:
                key = triple_key(s, mt, it["lang"]) if mt is not None else None
                if key is None or key in seen:
                    continue
                seen.add(key)
                failed = score_rng.random() < 0.002
                qe_rows.append(
                    {
                        "key": key,
                        "source": s,
                        "translation": mt,
                        "lang": it["lang"],
                        "score": None
                        if failed
                        else round(min(1.0, max(0.0, score_rng.gauss(0.78, 0.09))), 4),
                        "reject": "no digit in the rating" if failed else None,
                    }
                )
    failed = [r for r in qe_rows if r["score"] is None]
    made(
        "qe",
        lambda: qe_rows,
        lambda p, rows: {
            "scored_pairs": write_jsonl(p / "rows.jsonl", rows),
            "failed": len(failed),
            **({"reject_reasons": {"no digit in the rating": len(failed)}} if failed else {}),
        },
    )

    scores = {r["key"]: r["score"] for r in qe_rows}
    chosen = [select.choose(it, scores, list(TRANSLATORS), "best_of_k") for it in items]
    ok = [r for r in chosen if "reject" not in r]
    kept = select.filter_rows(ok, kept_rows / len(ok) if kept_rows else 0.8, "best_of_k", seed)
    stage_counts = {
        s: store.get(s, keys[s]).meta["counts"]
        for s in ("seed", "reverse", "refine", "translate", "qe")
    }

    def select_produce(path: Path, parts) -> dict:  # noqa: ANN001
        write_jsonl(path / "dataset.jsonl", kept)
        write_jsonl(path / "rejects.jsonl", [r for r in chosen if "reject" in r])
        write_json(
            path / "stats.json",
            gen_stats.generation_stats(
                stage_counts, items, scores, chosen, kept, list(TRANSLATORS)
            ),
        )
        return {"rows": len(kept), "before_filter": len(ok), "rejects": len(chosen) - len(ok)}

    key = store.key(
        "select", {"synthetic": n_items, "seed": seed, "codes": codes}, inputs("select")
    )
    store.build("select", key, select_produce)
    keys["select"] = key
    return keys


def build_evaluation(
    store: Store, n_prompts: int, codes: list[str], seed: int = 1, data_size: int | None = 32000
) -> dict[str, str]:
    """respond (system, reference) -> judge artifacts, the judge's verdicts parsed by the real
    parser from seeded answers: mostly labels with logprobs, some text only, some malformed."""
    rng = random.Random(seed + 2)
    prompts = [
        {
            "id": i + 1,
            "instruction": (
                f"Give {i % 5 + 2} tips about {TOPICS[i % len(TOPICS)].lower()} for a beginner."
            ),
        }
        for i in range(n_prompts)
    ]
    bench = build_xl.build_xl(
        prompts,
        codes,
        ["Answer in {language}.", "Please write your answer in {language}."],
        seed=seed,
    )
    system_name, reference_name = "EuroLLM 9B", "gpt-4o-mini"
    generator = system_name + (f"+adapter{data_size}" if data_size else "")
    outputs: dict[str, dict[str, list[str]]] = {"system": {}, "reference": {}}
    keys: dict[str, str] = {}
    for role, gen in (("system", generator), ("reference", reference_name)):
        def produce(path: Path, parts, role: str = role, gen: str = gen) -> dict:  # noqa: ANN001
            counts = {}
            for code, rows in bench.items():
                outs = []
                for _ in rows:
                    if role == "system" and rng.random() < 0.01:
                        outs.append(None)  # a failed call, stored as null as run_respond does
                    else:
                        n = rng.randint(2, 6)
                        outs.append(
                            "\n".join(
                                f"{k + 1}. "
                                f"{pseudo_translate(passage(rng).split('. ')[0], code, 0)}."
                                for k in range(n)
                            )
                        )
                outputs[role][code] = outs
                write_json(path / f"{code}.json", build_xl.to_alpaca_eval(rows, outs, gen))
                counts[code] = {"rows": len(rows), "errors": sum(o is None for o in outs)}
            return {"langs": counts, "generator": gen}

        key = store.key(
            "respond", {"synthetic": role, "n": n_prompts, "codes": codes, "size": data_size}
        )
        store.build("respond", key, produce)
        keys["respond" if role == "system" else "reference"] = key

    per_lang: dict[str, dict] = {}

    def judge_produce(path: Path, parts) -> dict:  # noqa: ANN001
        for code, rows in bench.items():
            plan = judge.plan(
                "both_orders", rows, outputs["system"][code], outputs["reference"][code]
            )
            comps = []
            for _ in judge.conversations(plan):
                u = rng.random()
                if u < 0.015:
                    comps.append({"text": "Both outputs are equally helpful.", "logprobs": None})
                elif u < 0.03:
                    comps.append({"text": "B", "logprobs": None})
                else:
                    p_b = rng.betavariate(2, 2)
                    lp = {"B": _log(p_b), "A": _log(1 - p_b)}
                    comps.append({"text": max(lp, key=lp.get), "logprobs": [lp]})
            combined = judge.combine("both_orders", plan, comps)
            write_jsonl(path / f"{code}.jsonl", combined)
            per_lang[code] = metrics.entry_from_rows(
                combined, outputs["system"][code], outputs["reference"][code]
            )
        return {"langs": len(per_lang), "rows": sum(len(v["prefs"]) for v in per_lang.values())}

    labels = {
        "model": system_name,
        "model_id": "utter-project/EuroLLM-9B-Instruct",
        "adapter": f"adapter{data_size}" if data_size else None,
        "data_size": data_size,
        "selection": "best_of_k" if data_size else None,
        "reference": reference_name,
        "judge": "gpt-4o",
        "benchmark": "xl_alpacaeval",
        "langs": codes,
    }
    responses = [keys["respond"], keys["reference"]]
    key = store.key("judge", {"synthetic": n_prompts, "codes": codes, "size": data_size}, responses)
    store.build("judge", key, judge_produce, info={"system": labels})
    keys["judge"] = key

    def metrics_produce(path: Path, parts) -> dict:  # noqa: ANN001 (as run_metrics: its own artifact)
        data = [
            metrics.lang_data(code, i, entry) for i, (code, entry) in enumerate(per_lang.items())
        ]
        write_json(path / "metrics.json", metrics.summarize_langs(data, n_boot=50, seed=seed))
        write_json(path / "columns.json", metrics.stored_columns())
        return {"langs": len(per_lang)}

    key = store.key("metrics", {"synthetic": n_prompts}, [keys["judge"], *responses])
    store.build(
        "metrics", key, metrics_produce, info={"system": {**labels, "judge_key": keys["judge"]}}
    )
    keys["metrics"] = key
    return keys


def _log(p: float) -> float:
    import math

    return math.log(max(p, 1e-9))


def build_store(
    root: Path,
    n_items: int,
    codes: list[str] | None = None,
    n_prompts: int = 40,
    kept_rows: int | None = None,
    record_inputs: bool = True,
) -> dict[str, dict[str, str]]:
    codes = codes or ["deu", "fra"]
    store = Store(root)
    return {
        "generation": build_generation(
            store, n_items, codes, kept_rows=kept_rows, record_inputs=record_inputs
        ),
        "evaluation": build_evaluation(store, n_prompts, codes),
    }


def build_large(root: Path) -> dict[str, dict[str, str]]:
    """The paper's scale: 40K translated passages, 32,000 kept; 797 prompts in 4 languages."""
    return build_store(root, 40_000, ["deu", "fra", "por", "hun"], n_prompts=797, kept_rows=32_000)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    print(build_large(out) if n >= 32_000 else build_store(out, n))
