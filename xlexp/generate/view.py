"""A generated dataset as the view shows it: every translated item with its sentences,
candidates, QE scores and chosen translations, the funnel, the QE cut and the rejects."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from xlexp.generate import select
from xlexp.generate import stats as gen_stats
from xlexp.generate.qe import triple_key
from xlexp.store import Artifact, Store
from xlexp.view.read_common import (
    _artifact,
    _finished,
    _json,
    _jsonl,
    _meta,
    _recorded_inputs,
    _rows,
    clean,
)

EXAMPLES_PER_REASON = 5

# The generate chain in build order (as the declaration lists its artifacts).
GENERATE_STAGES = ("seed", "reverse", "refine", "translate", "qe", "select")


def _translator_names(stats: dict, k: int) -> list[str]:
    # stats.json lists the translators in their config order (the order of `candidates`).
    for field in ("translator_wins", "mean_qe_by_translator"):
        names = list((stats.get(field) or {}).keys())
        if len(names) == k:
            return names
    return [f"translator {i + 1}" for i in range(k)]


def _reproduces(
    strategy: str, kept: list[dict], items: dict[str, dict], scores: dict, names: list[str]
) -> bool:
    for row in kept[:50]:
        item = items.get(row.get("id"))
        if item is None:
            return False
        got = select.choose(item, scores, names, strategy)
        if "reject" in got or got["translators"] != row.get("translators"):
            return False
        if not math.isclose(
            got["qe_score"], row.get("qe_score", math.nan), rel_tol=1e-9, abs_tol=1e-12
        ):
            return False
    return True


def _strategy(
    meta: dict, kept: list[dict], items: dict[str, dict], scores: dict, names: list[str]
) -> str | None:
    """The selection that made the dataset: as recorded, else the one whose choices reproduce the
    stored rows (`random` picks like best_of_k; only its kept subset differs)."""
    if meta.get("selection"):
        return str(meta["selection"])
    for strategy in ("best_of_k", "naive"):
        if _reproduces(strategy, kept, items, scores, names):
            return strategy
    return None


def _sentences(
    item: dict, score_of: Any, names: list[str], winners: list[str] | None
) -> list[dict]:
    out = []
    for i, (src, cands) in enumerate(
        zip(item.get("sentences") or [], item.get("candidates") or [], strict=False)
    ):
        chosen = None
        if winners and i < len(winners) and winners[i] in names:
            chosen = names.index(winners[i])
        out.append({
            "src": src,
            "cands": list(cands),
            "scores": [score_of(src, mt, item["lang"]) if mt is not None else None for mt in cands],
            "chosen": chosen,
        })
    return out


def _reject_examples(stage: str, rows: list[dict], text_of: Any) -> list[dict]:
    by_reason: dict[str, list[dict]] = {}
    for row in rows:
        reason = gen_stats._reason(str(row.get("reject") or row.get("reason") or "?"))
        by_reason.setdefault(reason, []).append(row)
    return [
        {
            "stage": stage,
            "reason": reason,
            "count": len(group),
            "examples": [
                {"id": str(r.get("id", "")), "text": text_of(r)}
                for r in group[:EXAMPLES_PER_REASON]
            ],
        }
        for reason, group in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    ]


def read_generation(store: Store, keys: dict[str, str | None]) -> dict:
    """One generated dataset: every translated item with its sentences, candidates, QE scores
    and the chosen translations, its status (kept, dropped by the QE cut, rejected), the funnel
    and the rejects of each stage with examples."""
    notes: list[str] = []
    arts = {stage: _artifact(store, stage, keys.get(stage), notes) for stage in GENERATE_STAGES}
    lost = [stage for stage in GENERATE_STAGES if not keys.get(stage)]
    if lost:
        notes.append(
            f"not found: the {', '.join(lost)} artifact(s) this dataset was made from; "
            "what they hold is not shown"
        )
    sel = arts["select"]
    out: dict[str, Any] = {
        "key": keys.get("select"),
        "keys": dict(keys),
        "notes": notes,
        "rows": [],
        "rejects": [],
        "funnel": [],
        "translators": [],
        "strategy": None,
        "cut": None,
        "langs": [],
    }
    stats: dict = {}
    if sel is not None and sel.file("stats.json").exists():
        try:
            stats = _json(sel.file("stats.json"))
        except (OSError, ValueError) as e:
            notes.append(f"{sel.file('stats.json')} could not be read: {e}")
    elif sel is not None:
        notes.append(
            f"select/{sel.key} has no stats.json: the funnel comes from the stages' DONE counts"
        )
    funnel = stats.get("stages") or gen_stats.stage_funnel(
        {s: _meta(a).get("counts", {}) for s, a in arts.items() if a and s != "select"}
    )
    out["funnel"] = [{"stage": stage, **clean(row)} for stage, row in funnel.items()]

    kept = _rows(sel, "dataset.jsonl", notes) or []
    select_rejects = _rows(sel, "rejects.jsonl", notes) or []
    translations = _rows(arts["translate"], "rows.jsonl", notes) or []
    qe_rows = _rows(arts["qe"], "rows.jsonl", notes) or []
    scores = {r["key"]: r.get("score") for r in qe_rows if "key" in r}
    # The same scores by (source, translation, lang), the fields a QE row stores beside its key:
    # one dict lookup per candidate instead of a hash of each.
    by_triple = {
        (r.get("source"), r.get("translation"), r.get("lang")): r.get("score") for r in qe_rows
    }

    def score_of(src: str, mt: str, lang: str) -> float | None:
        found = by_triple.get((src, mt, lang), by_triple)  # by_triple itself: not there
        return scores.get(triple_key(src, mt, lang)) if found is by_triple else found

    k = max((len(c) for t in translations for c in (t.get("candidates") or [])), default=0)
    names = _translator_names(stats, k)
    items = {t["id"]: t for t in translations if "id" in t}
    strategy = _strategy(_meta(sel), kept, items, scores, names) if kept and items else None
    if kept and items and strategy is None:
        notes.append(
            "the translate and QE rows do not reproduce the dataset's choices: "
            "chosen translations of dropped rows are not marked"
        )
    out.update(translators=names, strategy=strategy)

    kept_by_id = {r["id"]: r for r in kept if "id" in r}
    rejected_by_id = {r["id"]: r for r in select_rejects if "id" in r}
    if strategy not in (None, "random") and kept:
        out["cut"] = min(r["qe_score"] for r in kept if r.get("qe_score") is not None)
    rows = []
    for item_id, item in items.items():
        row: dict[str, Any] = {
            "id": item_id,
            "lang": item.get("lang"),
            "instruction": item.get("instruction", ""),
            "question": item.get("question"),
            "source": item.get("response"),
            "qe": None,
            "status": "dropped",
            "final": None,
            "reason": None,
            "rank": None,
        }
        winners: list[str] | None = None
        if item_id in kept_by_id:
            ds = kept_by_id[item_id]
            messages = ds.get("messages") or []
            row.update(status="kept", qe=ds.get("qe_score"), rank=ds.get("rank"),
                       final=messages[-1].get("content") if messages else None)
            winners = ds.get("translators")
        elif item_id in rejected_by_id:
            row.update(status="rejected", reason=rejected_by_id[item_id].get("reject"))
        elif strategy is not None:
            got = select.choose(item, scores, names, strategy)
            if "reject" in got:  # select recorded no such reject: say so rather than guess
                row.update(status="rejected", reason=got["reject"])
            else:
                row.update(qe=got["qe_score"], final=got["messages"][-1]["content"])
                winners = got["translators"]
        row["sentences"] = _sentences(item, score_of, names, winners)
        rows.append(row)
    if translations and not kept and sel is not None:
        notes.append(f"select/{sel.key} kept no rows")
    out["rows"] = rows
    out["langs"] = sorted({r["lang"] for r in rows if r["lang"]})

    rejects: list[dict] = []
    seed_counts = (funnel.get("seed") or {}).get("reject_reasons") or {}
    rejects += [
        {"stage": "seed", "reason": reason, "count": n, "examples": []}
        for reason, n in seed_counts.items()
        if n
    ]
    for stage in ("reverse", "refine"):
        stage_rejects = _rows(arts[stage], "rejects.jsonl", notes) if arts[stage] else []
        rejects += _reject_examples(stage, stage_rejects or [], lambda r: str(r.get("raw") or ""))
    missing = [
        {
            "id": t["id"],
            "reject": f"{names[j] if j < len(names) else j}: no translation",
            "text": src,
        }
        for t in translations
        for src, cands in zip(t.get("sentences") or [], t.get("candidates") or [], strict=False)
        for j, c in enumerate(cands)
        if c is None
    ]
    if missing:
        rejects += _reject_examples("translate", missing, lambda r: r["text"])
    elif (funnel.get("translate") or {}).get("rejects"):
        rejects += [{"stage": "translate", "reason": r, "count": n, "examples": []}
                    for r, n in ((funnel["translate"] or {}).get("reject_reasons") or {}).items()]
    failed_qe = [r for r in qe_rows if r.get("score") is None]
    rejects += _reject_examples(
        "qe", failed_qe, lambda r: f"{r.get('source', '')} → {r.get('translation', '')}"
    )
    rejects += _reject_examples("select", select_rejects, lambda r: "")
    out["rejects"] = rejects
    out["counts"] = dict(Counter(r["status"] for r in rows))
    return out



def _ids(art: Artifact, name: str) -> set[str]:
    try:
        return (
            {str(r.get("id")) for r in _jsonl(art.file(name))} if art.file(name).exists() else set()
        )
    except (OSError, ValueError):
        return set()


def _generation_inputs(store: Store, sel: Artifact) -> dict[str, str | None]:
    """The keys of the stages that made a select artifact: as its DONE records them, else the
    artifacts whose rows it was made of (ids of each stage's rows and rejects chain up)."""
    keys: dict[str, str | None] = {s: None for s in GENERATE_STAGES}
    keys["select"] = sel.key
    # Each DONE names its inputs (made_of): select <- translate, qe; translate <- refine <- reverse
    # <- seed.
    for stage, upstream in (
        ("select", ("translate", "qe")),
        ("translate", ("refine",)),
        ("refine", ("reverse",)),
        ("reverse", ("seed",)),
    ):
        art = store.get(stage, keys[stage]) if keys[stage] else None
        if art is not None:
            for up, found in _recorded_inputs(store, art, upstream).items():
                keys[up] = keys[up] or found[0]
    if keys["translate"] is None:
        want = _ids(sel, "dataset.jsonl") | _ids(sel, "rejects.jsonl")
        for art in reversed(_finished(store, "translate")):
            if want and want <= _ids(art, "rows.jsonl"):
                keys["translate"] = art.key
                break
    translate = store.get("translate", keys["translate"]) if keys["translate"] else None
    if translate is not None and keys["qe"] is None:
        keys["qe"] = _match_qe(store, sel, translate)
    if translate is not None and keys["refine"] is None:
        seed_ids = {str(r.get("seed_id")) for r in _jsonl(translate.file("rows.jsonl"))}
        keys["refine"] = next(
            (
                a.key
                for a in reversed(_finished(store, "refine"))
                if seed_ids <= _ids(a, "rows.jsonl")
            ),
            None,
        )
    for stage, upstream in (("reverse", "refine"), ("seed", "reverse")):
        up = store.get(upstream, keys[upstream]) if keys[upstream] else None
        if up is not None and keys[stage] is None:
            want = _ids(up, "rows.jsonl") | _ids(up, "rejects.jsonl")
            keys[stage] = next(
                (
                    a.key
                    for a in reversed(_finished(store, stage))
                    if want and want <= _ids(a, "rows.jsonl")
                ),
                None,
            )
    return keys


def _match_qe(store: Store, sel: Artifact, translate: Artifact) -> str | None:
    """The QE artifact whose scores reproduce the select artifact's kept rows."""
    kept = _jsonl(sel.file("dataset.jsonl")) if sel.file("dataset.jsonl").exists() else []
    items = {t["id"]: t for t in _jsonl(translate.file("rows.jsonl"))}
    stats = _json(sel.file("stats.json")) if sel.file("stats.json").exists() else {}
    k = max((len(c) for t in items.values() for c in (t.get("candidates") or [])), default=0)
    names = _translator_names(stats, k)
    for art in reversed(_finished(store, "qe")):
        try:
            scores = {
                r["key"]: r.get("score") for r in _jsonl(art.file("rows.jsonl")) if "key" in r
            }
        except (OSError, ValueError):
            continue
        if any(_reproduces(s, kept, items, scores, names) for s in ("best_of_k", "naive")):
            return art.key
    return None

