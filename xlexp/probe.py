"""What of a job the store already holds, without building, loading or calling anything
(`python -m xlexp.plan`): the stage shells run against a read-only store that returns finished
artifacts and stops a shell at the first missing one, so the keys are the shells' own; and the
ratios measured in finished artifacts (refine yield, sentences per response, tokens per call)
that the plan's estimates use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def measured(store_dir: Path) -> dict[str, float]:
    """Ratios from finished artifacts: refine rows per reverse row, sentences per translated item,
    SFT tokens per row, and tokens per call by stage and role (from the ledger in DONE)."""
    out: dict[str, float] = {}
    totals: dict[str, list[float]] = {}

    def counts(stage: str) -> list[dict]:
        found = []
        for done in sorted(Path(store_dir, stage).glob("*/DONE")):
            try:
                found.append(json.loads(done.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return found

    for meta in counts("refine"):
        c = meta.get("counts", {})
        if c.get("in"):
            totals.setdefault("refine_yield", [0, 0])
            totals["refine_yield"][0] += c.get("out", 0)
            totals["refine_yield"][1] += c["in"]
    for meta in counts("reverse"):
        c = meta.get("counts", {})
        if c.get("in"):
            totals.setdefault("reverse_yield", [0, 0])
            totals["reverse_yield"][0] += c.get("out", 0)
            totals["reverse_yield"][1] += c["in"]
    for meta in counts("translate"):
        c = meta.get("counts", {})
        if c.get("items") and c.get("sentence_jobs"):
            totals.setdefault("sentences_per_item", [0, 0])
            totals["sentences_per_item"][0] += c["sentence_jobs"]
            totals["sentences_per_item"][1] += c["items"]
    for meta in counts("sft"):
        c = meta.get("counts", {})
        if c.get("rows") and c.get("tokens_seen"):
            totals.setdefault("sft_tokens_per_row", [0, 0])
            totals["sft_tokens_per_row"][0] += c["tokens_seen"] / max(float(c.get("epochs") or 1), 1e-9)
            totals["sft_tokens_per_row"][1] += c["rows"]
    for stage in ("reverse", "refine", "translate", "qe", "respond", "judge", "rubric", "mtranslate", "rtt"):
        for meta in counts(stage):
            for role, row in (meta.get("cost", {}).get("roles") or {}).items():
                if row.get("calls"):
                    for kind in ("prompt_tokens", "completion_tokens"):
                        totals.setdefault(f"{stage}/{role}/{kind}", [0, 0])
                        totals[f"{stage}/{role}/{kind}"][0] += row[kind]
                        totals[f"{stage}/{role}/{kind}"][1] += row["calls"]
    for name, (num, den) in totals.items():
        if den:
            out[name] = num / den
    return out


class _Missing(Exception):
    def __init__(self, stage: str, key: str):
        super().__init__(f"{stage} {key}")
        self.stage, self.key = stage, key


class _ProbeStore:
    """The stage shells' store, read-only: a finished artifact is returned, a missing one stops
    the shell before it produces anything. So the shells compute the real keys (no copy of their
    key logic here) and nothing is built, loaded or called."""

    def __init__(self, root: Path):
        from xlexp.store import Store

        self._store = Store.__new__(Store)
        self._store.root = Path(root).resolve()  # Store() would create the directory
        self.root = self._store.root
        self.found: dict[tuple[str, str], bool] = {}

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._store.key(*args, **kwargs)

    def get(self, stage: str, key: str) -> Any:
        return self._store.get(stage, key) if self.root.is_dir() else None

    def build(self, stage: str, key: str, produce: Any, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
        found = self.get(stage, key)
        self.found[(stage, key)] = found is not None
        if found is None:
            raise _Missing(stage, key)
        return found, False


class _Unused:
    """A role as a shell sees it outside `produce`: it may ask for a sampling, nothing else."""

    def sampling(self, **kwargs: Any) -> None:
        return None


class _ProbeModels:
    """Roles are asked for by name; the shells call them only inside produce, which never runs."""

    def role(self, role: str, card: Any) -> _Unused:
        return _Unused()


def present_stages(cfg: Any) -> tuple[set[str], dict[str, str]]:
    """Stages (reverse, ..., respond:model, respond:reference, judge) whose artifact this job
    would reuse from the store, and for the rest, why they would be built ("missing KEY" or
    "after STAGE"). Runs the real shells against a read-only store."""
    from xlexp.evaluate import prompt_sets
    from xlexp.evaluate import stage as evaluate
    from xlexp.generate.stage import run_generate
    from xlexp.sft.stage import run_sft, sft_dataset

    store, models = _ProbeStore(Path(str(cfg.store_dir))), _ProbeModels()
    present: set[str] = set()
    built: dict[str, str] = {}
    chain = ["seed", "reverse", "refine", "translate", "qe", "select"]
    arts: dict[str, Any] = {}
    generated = "generate" in cfg.stages or ("sft" in cfg.stages and cfg.sft.source == "generated")

    def attempt(name: str, call: Any) -> Any:
        try:
            art = call()
        except _Missing as e:
            built[name] = f"missing {e.key[:12]}"
            return None
        present.add(name)
        return art

    if generated:
        try:
            arts.update(run_generate(cfg, store, models))
            present.update(chain)
        except _Missing as e:
            i = chain.index(e.stage) if e.stage in chain else 0
            present.update(chain[:i])
            built[chain[i]] = f"missing {e.key[:12]}"
            built.update({later: f"after {chain[i]}" for later in chain[i + 1 :]})
    adapter = None
    if "sft" in cfg.stages:
        if cfg.sft.source == "generated" and "select" not in arts:
            built["sft"] = "after select"
        else:
            data = attempt("external_data", lambda: sft_dataset(cfg, store, arts)) if cfg.sft.source != "generated" else arts["select"]
            if data is not None:
                adapter = attempt("sft", lambda: run_sft(cfg, store, data))
            else:
                built["sft"] = "after external_data"
    if "evaluate" in cfg.stages:
        bench = None
        if cfg.eval.benchmark in ("m_alpacaeval", "xl_alpacaeval_release"):
            bench = attempt("prompt_set", lambda: prompt_sets.run_prompt_set(cfg, store, models))
        if bench is None and "prompt_set" in built:
            built.update({s: "after prompt_set" for s in ("respond:model", "respond:reference", "judge")})
            return present, built
        if "sft" in cfg.stages and adapter is None:
            system = None
            built["respond:model"] = "after sft"
        elif cfg.eval.rtt:
            system = attempt("respond:model", lambda: evaluate.run_respond_rtt(cfg, store, models, cfg.model, adapter, bench))
        else:
            system = attempt("respond:model", lambda: evaluate.run_respond(cfg, store, models, "model", cfg.model, adapter, bench))
        reference = attempt("respond:reference", lambda: evaluate.run_respond(cfg, store, models, "reference", cfg.reference, None, bench))
        if system is not None and reference is not None:
            labels = evaluate.system_labels(cfg, adapter)
            verdicts = attempt("judge", lambda: evaluate.run_judge(cfg, store, models, system, reference, labels))
            if verdicts is not None:  # metrics: computed from stored verdicts, no model call
                attempt("metrics", lambda: evaluate.run_metrics(cfg, store, verdicts, system, reference))
        else:
            built["judge"] = "after respond"
    return present, built
