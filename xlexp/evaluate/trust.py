"""How far to trust the judge, the shells: the extra judges' verdicts (eval.judges) and the
agreement table made from every judge's stored verdicts and the human labels (agreement.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.evaluate import judge, pairing
from xlexp.evaluate.config import eval_codes, extra_judges
from xlexp.evaluate.verdicts import STATUSES, judge_langs
from xlexp.evaluate.verdicts import outputs as _outputs
from xlexp.roles import Models, card_key
from xlexp.store import Artifact, Store, digest, write_json


def run_judges(
    cfg: Config, store: Store, models: Models, system: Artifact, reference: Artifact
) -> Artifact:
    """The extra judges' verdicts (eval.judges), `<judge>/<lang>.jsonl` as the main judge's,
    under the same protocol and prompts. One artifact for all of them, as `translate` holds
    every translator's candidates: a judge added later re-asks the others from the cache."""
    protocol = cfg.eval.judge_protocol
    cards = extra_judges(cfg)
    key = store.key(
        "judges",
        {"judges": {name: card_key(card) for name, card in cards.items()},
         **judge.key_info(protocol)},
        [system.key, reference.key],
    )

    def produce(work: Path, parts: Any) -> dict:
        per_judge = {}
        for name, card in cards.items():
            (work / name).mkdir()
            found = judge_langs(cfg, models.role(f"judge:{name}", card), system, reference,
                                work / name)
            per_judge[name] = {k: v for k, v in found.items() if k != "per_lang"}
        total = {s: sum(c[s] for c in per_judge.values()) for s in (*STATUSES, "rows")}
        return {"protocol": protocol, "judges": per_judge, **total}

    return store.build("judges", key, produce)[0]


def run_agreement(
    cfg: Config, store: Store, verdicts: Artifact, extra: Artifact | None, system: Artifact
) -> Artifact:
    """The agreement table (agreement.py) from the stored verdicts of the main judge and the
    extra ones, and the human labels (no model call)."""
    from xlexp.evaluate import agreement, human_labels

    names = list(extra_judges(cfg))
    path = cfg.eval.human_labels
    both = judge.judge_protocol(cfg.eval.judge_protocol).judges_both_orders
    key = store.key(
        "agreement",
        {"judges": names, "bootstrap": cfg.eval.bootstrap, "seed": cfg.seed, "both_orders": both,
         "human_labels": digest(Path(path).read_bytes()) if path else None},
        [verdicts.key, system.key] + ([extra.key] if extra else []),
    )

    def produce(work: Path, parts: Any) -> dict:
        codes = eval_codes(cfg)
        labels = human_labels.read(path, codes) if path else []
        ids = {code: [r["id"] for r in _outputs(system, code)] for code in codes}
        if path:
            human_labels.check_ids(path, labels, ids)
        human = human_labels.by_lang(labels)
        data = []
        for code in codes:
            order = [str(i) for i in ids[code]]
            rows = {cfg.judge.name: _aligned(verdicts, f"{code}.jsonl", order)}
            for name in names:
                rows[name] = _aligned(extra, f"{name}/{code}.jsonl", order)
            data.append(agreement.LangVerdicts(code, order, rows, human.get(code, {})))
        table = agreement.table(data, n_boot=cfg.eval.bootstrap, seed=cfg.seed, both_orders=both)
        write_json(work / "agreement.json", {
            "main": cfg.judge.name, "judges": names, "protocol": cfg.eval.judge_protocol,
            "both_orders": both, "rows": table,
        })
        return {"langs": len(codes), "judges": len(names) + 1, "human_labels": len(labels)}

    return store.build("agreement", key, produce)[0]


def _aligned(art: Any, name: str, ids: list[str]) -> list[dict]:
    """A verdict file's rows in prompt order, matched by id; a prompt it lacks is a row without
    a verdict, a prompt it names twice is refused."""
    found = pairing.by_id([{**r, "id": str(r["id"])} for r in art.rows(name)], f"{art.key} {name}")
    return [found.get(i, {"id": i, "preference": None}) for i in ids]
