"""The house: no import cycle, small rooms, one registry pattern, stages as data, the CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xlexp.config import ConfigError, register, validate
from xlexp.explain import explain
from xlexp.llm import BACKENDS, Backend, Completion, load
from xlexp.store import Store, write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "xlexp"
CONF = str(ROOT / "conf")
register()


def make(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """xlexp modules a file imports, at module level or inside a function (a deferred import
    still ties the two modules: a circle through one is a circle). Lazy registry targets
    ("module:attr" strings) are not imports: that is how plug-ins stay out of the graph."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xlexp"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("xlexp"))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for m, p in files.items():
        deps = set()
        for i in _imports(p):
            # `from xlexp import report` names a module; `from xlexp.x import name` the module x.
            target = i if i in files else i.rsplit(".", 1)[0]
            if target in files and target != m:
                deps.add(target)
        graph[m] = deps
    return graph


def test_module_map_has_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, m, n]))
            if n not in state:
                visit(n, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_cycle_finder_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "def f():\n    from xlexp.report import write_results\n    import xlexp.view\n"
    )
    assert {"xlexp.report", "xlexp.report.write_results", "xlexp.view"} <= _imports(source)


def test_no_module_over_400_lines():
    big = {
        str(p.relative_to(ROOT)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not big, f"split these rooms: {big}"


class EchoBackend(Backend):
    """A backend defined by a test: answers each chat with its last message reversed."""

    opened = 0

    def __init__(self, card):
        type(self).opened += 1
        self.card = card

    @classmethod
    def check_card(cls, key, card, cuda):
        super().check_card(key, card, cuda)
        if not str(card.model).startswith("echo"):
            raise ConfigError(f"{key}.model", "the echo backend serves model 'echo' only")

    def generate(self, conversations, sampling, sample_index=0, adapter=None):
        return [
            Completion(text=c[-1]["content"][::-1], prompt_tokens=1, completion_tokens=1)
            for c in conversations
        ]


@pytest.fixture
def echo_backend():
    BACKENDS.register("echo", EchoBackend)
    yield EchoBackend
    BACKENDS.unregister("echo")


def test_a_backend_registered_by_a_test_serves_roles_and_is_validated(echo_backend, tmp_path):
    cfg = make("teacher.backend=echo", "teacher.model=echo-1", "stages=[generate]")
    validate(cfg, cuda=False)  # the registry knows it; its check_card accepted the card
    model = load(cfg.teacher, tmp_path)
    assert [c.text for c in model.chat([[{"role": "user", "content": "abc"}]])] == ["cba"]
    assert model.chat([[{"role": "user", "content": "abc"}]])[
        0
    ].cached  # the response cache in front
    assert echo_backend.opened == 1
    with pytest.raises(ConfigError) as err:
        validate(
            make("teacher.backend=echo", "teacher.model=other", "stages=[generate]"), cuda=False
        )
    assert err.value.key == "teacher.model"
    BACKENDS.unregister("echo")
    with pytest.raises(ConfigError) as err:
        validate(
            make("teacher.backend=echo", "teacher.model=echo-1", "stages=[generate]"), cuda=False
        )
    assert err.value.key == "teacher.backend" and "known: hf, openai, vllm" in str(err.value)


def test_qe_scorers_and_splitters_come_from_registries():
    from xlexp.generate.qe import SCORERS
    from xlexp.generate.segment import SPLITTERS

    assert set(SCORERS.names()) >= {"llm", "comet"} and set(SPLITTERS.names()) >= {"pysbd", "sat"}
    for override, key in (("qe.kind=bleu", "qe.kind"), ("splitter.kind=nltk", "splitter.kind")):
        with pytest.raises(ConfigError) as err:
            validate(make(override), cuda=False)
        assert err.value.key == key


def test_empty_stage_list_is_refused():
    with pytest.raises(ConfigError) as err:
        validate(make("stages=[]"), cuda=False)
    assert err.value.key == "stages"


def test_random_seed_is_a_top_level_knob_that_sweeps():
    cfg = make("seed=2")
    assert cfg.seed == 2 and cfg.seed_data.source == "demo"
    validate(cfg, cuda=False)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_console_script_takes_the_sweep_command_verbatim(tmp_path):
    """`xlexp` (the console script) with `-m` between overrides, as the README writes sweeps;
    only the report stage runs, so each job validates its config and writes results.json."""
    script = Path(sys.executable).with_name("xlexp")
    out = _cli(
        str(script),
        "+exp=scaling",
        "profile=tiny",
        "-m",
        "data_size=2,4",
        "seed=1,2",
        "stages=[report]",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"store_dir={tmp_path / 'store'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    jobs = sorted((tmp_path / "sweep").glob("*/.hydra/overrides.yaml"))
    assert len(jobs) == 4 and all((j.parent.parent / "results.json").exists() for j in jobs)
    made = sorted(
        tuple(sorted(o for o in OmegaConf.load(j) if o.startswith(("data_size", "seed="))))
        for j in jobs
    )
    assert made == [
        ("data_size=2", "seed=1"),
        ("data_size=2", "seed=2"),
        ("data_size=4", "seed=1"),
        ("data_size=4", "seed=2"),
    ]


def test_translator_group_key_is_refused_naming_the_per_translator_key(tmp_path):
    out = _cli(sys.executable, "-m", "xlexp", "translator.max_concurrency=16", cwd=tmp_path)
    assert out.returncode != 0
    assert "translators.<name>.max_concurrency" in out.stderr, out.stderr
    ok = _cli(
        sys.executable,
        "-m",
        "xlexp",
        "translators.smollm2-greedy.max_concurrency=16",
        "--cfg",
        "job",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert OmegaConf.create(ok.stdout).translators["smollm2-greedy"].max_concurrency == 16


def test_store_explain_names_the_field_that_made_a_new_key(tmp_path, capsys):
    from xlexp.explain import main

    store = Store(tmp_path)
    for temperature in (0.0, 0.7):
        key = store.key(
            "respond", {"model": {"sampling": {"temperature": temperature}}, "limit": 5}, ["abc"]
        )
        store.build("respond", key, lambda work, parts: {})
    assert "model.sampling.temperature: 0.7  (there: 0.0)" in explain(tmp_path, key)
    assert main(["explain", str(store.path("respond", key))]) == 0
    assert "1 field(s) differ" in capsys.readouterr().out


def test_a_new_metric_is_computed_from_stored_verdicts(tmp_path):
    from xlexp.evaluate import metrics
    from xlexp.evaluate.stage import run_metrics

    cfg = OmegaConf.create(
        {
            "eval": {"langs": ["deu"], "benchmark": "demo", "english": False, "bootstrap": 10,
                     "lc_bootstrap": 0},
            "langs": {"codes": ["deu"]},
            "seed": 1,
        }
    )
    store = Store(tmp_path)

    def respond(name: str, outputs: list[str]):
        def produce(work, parts):
            write_json(
                work / "deu.json",
                [{"id": i, "output": o, "lang": "deu"} for i, o in enumerate(outputs)],
            )
            return {}

        return store.build("respond", store.key("respond", name), produce)[0]

    system, reference = (
        respond("sys", ["Hallo Welt, wie geht es dir heute?", "Ja"]),
        respond("ref", ["Hallo", "Nein"]),
    )
    verdicts = store.build(
        "judge",
        store.key("judge", "j"),
        lambda work, parts: (
            write_jsonl(
                work / "deu.jsonl", [{"id": 0, "preference": 1.0}, {"id": 1, "preference": 0.5}]
            )
            and {}
        ),
        info={"system": {"model": "m"}},
    )[0]
    first = run_metrics(cfg, store, verdicts, system, reference)
    assert json.loads(first.file("metrics.json").read_text())["deu"]["win_rate"] == 75.0
    metrics.METRICS.register(
        "max_len",
        metrics.Metric(
            (("max_len", "max len"),),
            lambda d, *_: {"max_len": max(map(len, d.outputs))},
            lambda rows, *_: {},
        ),
    )
    try:
        second = run_metrics(cfg, store, verdicts, system, reference)
    finally:
        metrics.METRICS.unregister("max_len")
    assert second.key != first.key
    assert json.loads(second.file("metrics.json").read_text())["deu"]["max_len"] == 34
    assert ["max_len", "max len"] in json.loads(second.file("columns.json").read_text())
    assert second.meta["system"] == {"model": "m", "judge_key": verdicts.key}
