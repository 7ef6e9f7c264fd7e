"""Stage 3, response translation (paper 4.3): target languages, sentence prompts, parsing."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator

from xlexp import langs
from xlexp.generate import prompt
from xlexp.generate.segment import Splitter, segment, sentences
from xlexp.llm import Completion, Conversation

_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:translation|[A-Z][a-z]+ translation|[A-Z][a-z]+)\s*[:：]\s*(?:\*\*)?\s*"
)


def assign_languages(
    pairs: list[dict],
    codes: list[str],
    mode: str,
    templates: list[str],
    seed: int,
    order_of: dict[str, int] | None = None,
) -> list[dict]:
    """Items to translate: each pair gets one language (balanced) or every language.

    One language: the one at the position of the pair's seed passage in the seeded seed stream
    (`order_of[seed_id]`, from the seed stage; without it, the pair's place in `pairs`) modulo
    the language count. Balanced over the seed set, and a pair gets the same language whatever
    generation shard or top-up round makes it (it does not depend on the other pairs).

    The instruction gets a cross-lingual suffix such as "Respond in German." (paper 4.1),
    a template drawn per item from a generator seeded with `seed` and the item's id.
    """
    targets = []
    for i, pair in enumerate(pairs):
        seed_id = pair.get("seed_id", pair["id"])
        if mode == "all":
            targets += [(pair, seed_id, code) for code in codes]
        else:
            position = i if order_of is None else order_of[seed_id]
            targets.append((pair, seed_id, codes[position % len(codes)]))
    items = []
    for pair, seed_id, code in targets:
        item_id = f"{pair['id']}-{code}"
        template = random.Random(f"{seed}:{item_id}").choice(templates)
        suffix = template.format(language=langs.name(code))
        items.append(
            {
                "id": item_id,
                "seed_id": seed_id,
                "lang": code,
                "question": pair["question"],
                "instruction": f"{pair['question']} {suffix}",
                "response": pair["response"],
            }
        )
    return items


def _segmented(items: Iterable[dict], splitter: Splitter) -> Iterator[dict]:
    """Each item with `segments` added, one at a time (a response shared by items is split once)."""
    cache: dict[str, list[dict]] = {}
    for item in items:
        if item["response"] not in cache:
            cache[item["response"]] = segment(item["response"], splitter)
        item["segments"] = cache[item["response"]]
        yield item


def _unique_jobs(items: Iterable[dict]) -> Iterator[tuple[str, str]]:
    """Unique (sentence, lang) pairs of segmented items, in first-seen order, as they come."""
    seen: set[tuple[str, str]] = set()
    for item in items:
        for s in sentences(item["segments"]):
            job = (s, item["lang"])
            if job not in seen:
                seen.add(job)
                yield job


def add_segments(items: list[dict], splitter: Splitter) -> list[dict]:
    for _ in _segmented(items, splitter):
        pass
    return items


def stream_jobs(items: list[dict], splitter: Splitter) -> Iterator[tuple[str, str]]:
    """Segment each item (adds `segments`, as `add_segments`) and yield its new unique
    (sentence, lang) pairs at once, in the order of `jobs`: translation of the first sentences
    can start while later items are still being split."""
    return _unique_jobs(_segmented(items, splitter))


def jobs(items: list[dict]) -> list[tuple[str, str]]:
    """Unique (sentence, lang) pairs to translate, in first-seen order."""
    return list(_unique_jobs(items))


def build_prompts(job_list: list[tuple[str, str]]) -> list[Conversation]:
    template = prompt("translate")
    return [
        [{"role": "user", "content": template.format(language=langs.name(code), sentence=s)}]
        for s, code in job_list
    ]


def parse_one(source: str, completion: Completion) -> tuple[str | None, str | None]:
    """(translation, None) or (None, reject reason)."""
    if not completion.ok:
        return None, f"backend error: {completion.error}"
    text = _LABEL.sub("", completion.text.strip(), count=1).strip().strip('"“”„').strip()
    if not text:
        return None, "empty translation"
    if len(text) > 4 * len(source) + 40:
        return None, "translation far longer than the source"
    if source.count("\n") == 0 and "\n\n" in text:
        text = text.split("\n\n")[0].strip()  # small models append notes after a blank line
    return text, None
