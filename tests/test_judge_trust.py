"""How far to trust the judge: extra judges (eval.judges), their agreement with the main judge,
position consistency and human labels, with fake judges of known behaviour on the fake OpenAI
server, through a real `stages=[evaluate,report]` run.

The truth: the system's answer is better on prompts whose question number is a multiple of 3.
- `judge-main` says so, in both slot orders;
- `judge-flip` says so except on `FLIPPED` prompts in German, where it says the opposite;
- `judge-biased` says so except on `BIASED` prompts, where it always answers "A" (position bias);
- the human labels say so except on `HUMAN_WRONG` (German only, 8 prompts labelled).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from hydra import compose, initialize_config_dir
from test_view import chromium, needs_browser

from xlexp.__main__ import run
from xlexp.config import register
from xlexp.errors import ConfigError
from xlexp.evaluate import agreement, human_labels

ROOT = Path(__file__).resolve().parents[1]
register()
N = 12  # prompts per language, question numbers 0..11 (prompt ids 1..12)
FLIPPED = {0, 1}  # judge-flip's disagreements with judge-main, German only
BIASED = {2, 5, 7}  # judge-biased answers "A" whatever the order
HUMAN = [0, 1, 2, 3, 4, 5, 6, 7]  # question numbers with a human label (German)
HUMAN_WRONG = {4, 6}  # where the human label is not the truth


def system_better(q: int) -> bool:
    return q % 3 == 0


def answer(body: dict) -> str:
    user = body["messages"][-1]["content"]
    q = int(re.search(r"Question (\d+)", user).group(1))
    if body["model"] == "fake-sys":
        return f"SYS {q}: Eine Antwort mit Inhalt."
    if body["model"] == "fake-ref":
        return f"REF {q}: Eine Referenzantwort."
    slot_a = user.split("[Output A]\n", 1)[1].split("\n[End of Output A]", 1)[0]
    german = "German" in user
    if body["model"] == "judge-biased" and q in BIASED:
        return "A"
    better = system_better(q) != (body["model"] == "judge-flip" and german and q in FLIPPED)
    return "A" if better == slot_a.startswith("SYS") else "B"


def prompts_file(path: Path) -> Path:
    rows = [{"instruction": f"Question {i}: explain topic {i}.", "dataset": "x"} for i in range(N)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def labels_file(path: Path) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "lang", "preferred", "annotator"])
        for q in HUMAN:
            truth = system_better(q) != (q in HUMAN_WRONG)
            out.writerow([q + 1, "deu", "system" if truth else "reference", "ann-1"])
    return path


def fake_card(name: str, model: str, url: str) -> str:
    return (f"{{name:{name},backend:openai,model:{model},base_url:'{url}',gguf_file:null,"
            "max_retries:0}")


def compose_cfg(url: str, tmp_path: Path, *extra: str):
    args = [
        "stages=[evaluate,report]",
        f"store_dir={tmp_path / 'store'}",
        "eval=xl_alpacaeval",
        f"eval.path={prompts_file(tmp_path / 'prompts.jsonl')}",
        "eval.prompts=null",
        "eval.rewrites=null",
        f"eval.limit={N}",
        "eval.langs=[deu,fra]",
        "eval.bootstrap=200",
        "eval.lc_bootstrap=0",
        "eval.judge_protocol=both_orders",
        *extra,
    ]
    for role, name in (("model", "fake-sys"), ("reference", "fake-ref"), ("judge", "judge-main")):
        args += [f"{role}.backend=openai", f"{role}.model={name}", f"{role}.base_url={url}",
                 f"{role}.gguf_file=null", f"{role}.max_retries=0", f"{role}.name={name}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args)


def rows_of(summary: dict) -> dict[tuple[str, str], dict]:
    return {(r["lang"], r["judge"]): r for r in summary["agreement"]["rows"]}


def hand_kappa(a: list[int], b: list[int]) -> float:
    """Cohen's kappa from its definition: (p_o - p_e) / (1 - p_e)."""
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_e = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    return (p_o - p_e) / (1 - p_e)


@pytest.fixture(scope="module")
def trust_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The run with the three fake judges and the human labels; its rerun makes no call."""
    tmp_path = tmp_path_factory.mktemp("trust")
    with FakeOpenAI(answer) as srv:
        cfg = compose_cfg(
            srv.base_url, tmp_path,
            f"eval.judges=[{fake_card('flip', 'judge-flip', srv.base_url)},"
            f"{fake_card('biased', 'judge-biased', srv.base_url)}]",
            f"eval.human_labels={labels_file(tmp_path / 'labels.csv')}",
        )
        summary = run(cfg, tmp_path / "run")
        served = srv.calls
        again = run(cfg, tmp_path / "run2")
    # Responses: 2 languages x 12 prompts, system and reference; each of the 3 judges: 2 orders.
    assert served == 2 * 24 + 3 * 2 * 24
    assert again["backend_calls"] == 0 and srv.calls == served  # the rerun: all from the store
    return tmp_path, summary


def test_fake_judges_give_the_kappa_flip_rate_and_human_agreement_they_were_built_with(
    trust_run: tuple[Path, dict],
) -> None:
    tmp_path, summary = trust_run
    rows = rows_of(summary)

    # Kappa of judge-flip against judge-main, by hand: main says system on 0, 3, 6, 9 (4 of 12),
    # flip on 1, 3, 6, 9 (the two FLIPPED prompts swap sides): p_o = 10/12, p_e = (4*4 + 8*8)/144
    # = 80/144, kappa = (120 - 80) / (144 - 80) = 0.625.
    main = [agreement.SYSTEM if system_better(q) else agreement.REFERENCE for q in range(N)]
    flip = [(-x if q in FLIPPED else x) for q, x in enumerate(main)]
    assert hand_kappa(main, flip) == pytest.approx(0.625)
    assert rows["deu", "flip"]["kappa"] == pytest.approx(0.625)
    assert rows["deu", "flip"]["n_paired"] == N
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sklearn.metrics import cohen_kappa_score

        assert cohen_kappa_score(main, flip) == pytest.approx(0.625)
    assert rows["fra", "flip"]["kappa"] == pytest.approx(1.0)  # agrees everywhere in French
    assert rows["fra", "flip"]["pearson"] == pytest.approx(1.0)
    lo, hi = rows["deu", "flip"]["kappa_low"], rows["deu", "flip"]["kappa_high"]
    assert lo is not None and lo <= 0.625 <= hi
    # Win rates: main 4/12 system wins in both languages; flip in German 4/12 too (two swaps).
    assert rows["deu", "judge-main"]["win_rate"] == pytest.approx(100 * 4 / 12)
    assert rows["deu", "judge-main"]["win_rate"] == summary["metrics"]["deu"]["win_rate"]
    assert rows["deu", "judge-main"]["ci_low"] == summary["metrics"]["deu"]["ci_low"]

    # Position consistency: judge-biased flips on exactly its 3 biased prompts of 12; the others
    # never do. Its verdict there is a tie (A in both orders averages to 0.5).
    for lang in ("deu", "fra"):
        assert rows[lang, "biased"]["flip_rate"] == pytest.approx(len(BIASED) / N)
        assert rows[lang, "judge-main"]["flip_rate"] == 0.0
        assert rows[lang, "flip"]["flip_rate"] == 0.0

    # The panel: per prompt the mean of the three judges' preferences.
    panel = rows["deu", agreement.PANEL]
    prefs = [[1.0 if system_better(q) else 0.0 for q in range(N)],
             [float(x == agreement.SYSTEM) for x in flip],
             [0.5 if q in BIASED else float(system_better(q)) for q in range(N)]]
    assert panel["win_rate"] == pytest.approx(100 * sum(map(sum, prefs)) / (3 * N))

    # Human labels: 8 German prompts, the truth but on 2: judge-main agrees on 6 of 8.
    assert rows["deu", "judge-main"]["n_human"] == len(HUMAN)
    assert rows["deu", "judge-main"]["human_agreement"] == pytest.approx(6 / 8)
    assert rows["fra", "judge-main"]["n_human"] == 0
    assert rows["fra", "judge-main"]["human_agreement"] is None
    # judge-flip is wrong on 0 and 1 too: agrees on 4 of 8 (2, 3, 5, 7).
    assert rows["deu", "flip"]["human_agreement"] == pytest.approx(4 / 8)

    md = (tmp_path / "run" / "results.md").read_text()
    assert "### How far to trust the judge" in md
    line = next(x for x in md.splitlines() if x.startswith("| deu | flip |"))
    assert "| 0.625 |" in line
    assert "| deu | judge-main (main) |" in md and "| deu | panel (3 judges) |" in md
    # The main table stays the main judge's.
    assert summary["metrics"]["deu"]["n"] == N
    assert set(summary["stages"]["evaluate"]) >= {"judge", "judges", "agreement"}


def test_the_view_shows_the_agreement_table_and_every_judges_verdict_per_prompt(
    trust_run: tuple[Path, dict],
) -> None:
    from xlexp.view.read import read_path

    tmp_path, summary = trust_run
    (system,) = read_path(tmp_path / "run")["evaluation"]
    assert system["agreement"]["rows"] == summary["agreement"]["rows"]
    assert [c["key"] for c in system["agreement"]["columns"]] == [
        c.key for c in agreement.COLUMNS]
    by_prompt = {(r["lang"], r["id"]): r for r in system["rows"]}
    biased = by_prompt["deu", str(min(BIASED) + 1)]
    judges = {j["judge"]: j for j in biased["judges"]}
    assert list(judges) == ["judge-main", "flip", "biased"] and judges["judge-main"]["main"]
    assert judges["biased"]["pref"] == 0.5  # "A" in both orders
    assert {v["order"]: v["preference"] for v in judges["biased"]["verdicts"]} == {
        "sr": 1.0, "rs": 0.0}
    assert by_prompt["deu", "1"]["judges"][1]["pref"] == 0.0  # flip disagrees on question 0
    # A bare store (no results.json) finds the table and the extra judges by recorded inputs.
    (bare,) = read_path(tmp_path / "store")["evaluation"]
    assert bare["agreement"]["rows"] == summary["agreement"]["rows"]
    assert [j["judge"] for j in bare["rows"][0]["judges"]] == ["judge-main", "flip", "biased"]


@needs_browser
def test_the_page_renders_the_agreement_table_and_the_judges_of_a_prompt(
    trust_run: tuple[Path, dict], tmp_path: Path,
) -> None:
    from lxml import html as lxml_html

    run_dir = trust_run[0] / "run"
    dom = lxml_html.fromstring(chromium(run_dir / "view.html", tmp_path / "profile"))
    (cell,) = dom.xpath('//td[@data-agreement="deu:flip:kappa"]')
    assert cell.text_content() == "0.625"
    opened = dom.xpath('//section[@id="evaluation"]//div[@class="row"]')[0]
    names = [td.text_content() for td in opened.xpath('.//td[@data-judge]')]
    assert names == ["judge-main (main)", "flip", "biased"]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH")
def test_the_pages_script_draws_the_agreement_table_and_the_judges_of_a_prompt_under_node(
    trust_run: tuple[Path, dict],
) -> None:
    """view.js run by node over a minimal DOM (tests/minidom.js) with the page's own data."""
    html = (trust_run[0] / "run" / "view.html").read_text()
    page = {
        "data": re.search(r'<script type="application/gzip" id="xlexp-data">([^<]*)</script>',
                          html)[1],
        "chunks": re.findall(r'<script type="application/gzip" data-chunk="\d+">([^<]*)</script>',
                             html),
        "js": re.findall(r"<script>(.*?)</script>", html, re.S)[-1],
    }
    proc = subprocess.run(
        ["node", str(Path(__file__).with_name("minidom.js")), "data-agreement", "data-judge"],
        input=json.dumps(page), capture_output=True, text=True, timeout=120, check=True,
    )
    drawn = json.loads(proc.stdout)
    assert drawn["data-script-ms"] is not None  # the script ran to its end
    cells = dict(drawn["data-agreement"])
    assert cells["deu:flip:kappa"] == "0.625" and cells["fra:flip:kappa"] == "1.000"
    assert cells["deu:biased:flip_rate"] == "0.250" and cells["deu:judge-main:kappa"] == "–"
    assert cells["deu:judge-main:human_agreement"] == "0.750"
    # The first judged prompt is opened as the page is drawn: every judge's verdict on it.
    assert [text for _, text in drawn["data-judge"]] == ["judge-main (main)", "flip", "biased"]


def test_without_extra_judges_nothing_is_added(tmp_path: Path) -> None:
    """The default (no eval.judges, no human labels, alpaca_eval's one order): no judges or
    agreement artifact, no agreement table."""
    from xlexp.evaluate.config import wants_agreement
    from xlexp.evaluate.declaration import STAGE

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["stages=[evaluate,report]"])
    assert not wants_agreement(cfg)
    assert [s.name for s in STAGE.artifacts if s.built_by(cfg)] == [
        "respond", "reference", "judge", "metrics"]


# ---------------------------------------------------------------- human label files


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "line", "why"),
    [
        ("a.csv", "id,lang,preferred\n1,deu,system\n2,deu,better\n", 3, "preferred 'better'"),
        ("b.csv", "id,lang,preferred\n1,deu,system\n\n2,klingon,tie\n", 4, "'klingon' is not"),
        ("c.csv", "id,lang,preferred\n1,spa,tie\n", 2, "'spa' is not evaluated"),
        ("d.csv", "id,lang,preferred\n1,deu,tie\n1,German,system\n", 3, "labelled twice"),
        ("e.jsonl", '{"id": 1, "lang": "deu", "preferred": "tie"}\n{"id": 2, "lang": "de"\n',
         2, "not JSON"),
        ("f.jsonl", '{"id": 1, "lang": "deu", "preferred": "tie"}\n\n{"lang": "deu", '
         '"preferred": "tie"}\n', 3, "no prompt id"),
    ],
)
def test_a_bad_label_row_fails_with_its_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, why: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as err:
        human_labels.read(path, ["deu", "fra"])
    assert err.value.key == "eval.human_labels"
    assert f"{path}:{line}:" in str(err.value) and why in str(err.value)


def test_an_unknown_prompt_id_fails_with_its_file_and_line_before_any_call(
    tmp_path: Path,
) -> None:
    labels = write(tmp_path / "l.jsonl", '{"id": 1, "lang": "deu", "preferred": "system"}\n'
                                         '{"id": 99, "lang": "fra", "preferred": "tie"}\n')
    rows = human_labels.read(labels, ["deu", "fra"])
    assert [(r.id, r.lang, r.preferred) for r in rows] == [("1", "deu", 1), ("99", "fra", 0)]
    from xlexp.config import validate

    # The demo benchmark builds its prompts from the config: ids are checked in validation.
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["stages=[evaluate,report]",
                                           f"eval.human_labels={labels}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert f"{labels}:2: unknown prompt id '99' for fra" in str(err.value)


def test_labels_are_alpaca_evals_zero_one_classes() -> None:
    """A preference of exactly 0.5 is a tie, as alpaca_eval's ZeroOneScoringRule reads its
    1-2 scale (1.5 -> 0, else rounded); ours is that scale minus 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics.helpers import ZeroOneScoringRule

    prefs = [0.0, 0.2, 0.49, 0.5, 0.51, 0.8, 1.0]
    theirs = list(ZeroOneScoringRule().preprocess_predictions([1 + p for p in prefs]))
    to_ours = {0: agreement.TIE, 1: agreement.REFERENCE, 2: agreement.SYSTEM}
    assert [agreement.label(p) for p in prefs] == [to_ours[int(x)] for x in theirs]
    assert agreement.label(None) is None and agreement.label(float("nan")) is None


def test_bootstrap_kappa_replicates_are_scikit_learns() -> None:
    """The vectorised kappa the intervals use is scikit-learn's, replicate by replicate, and
    undefined (one class for both raters) is absent, not NaN."""
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    a = rng.choice(agreement.CLASSES, size=(20, 15))
    b = np.where(rng.random((20, 15)) < 0.7, a, rng.choice(agreement.CLASSES, size=(20, 15)))
    mine = agreement._kappa_rows(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = [cohen_kappa_score(x, y, labels=list(agreement.CLASSES))
                for x, y in zip(a, b, strict=True)]
    assert mine == pytest.approx(want)
    assert agreement.kappa([1, 1, 1], [1, 1, 1]) is None
    assert agreement.pearson([0.2, 0.2], [0.1, 0.9]) is None


def test_the_plan_has_a_cost_line_per_extra_judge(tmp_path: Path) -> None:
    """`python -m xlexp.plan ... eval.judges=[gpt-4o]`: the extra judge's calls and dollars,
    as many calls as the main judge's; a card that is the main judge's costs nothing (cache)."""
    from xlexp import plan
    from xlexp.stage import Measured

    def job(*overrides: str) -> plan.JobPlan:
        args = ["stages=[evaluate,report]", f"store_dir={tmp_path}", *overrides]
        return plan.plan_job(plan.compose_job(args), args, Measured(tmp_path), probe_store=False)

    default = job()
    assert not [r for r in default.counts if r.artifact == "judges"]
    extra = job("eval.judges=[gpt-4o,smollm2]")
    rows = {(r.artifact, r.role): r for r in extra.counts}
    gpt = rows["judges", "judge:gpt-4o"]
    assert gpt.calls == rows["judge", "judge"].calls == 12  # 6 prompts x 2 languages, 1 order
    assert gpt.usd(False) > 0 and gpt.usd(True) == pytest.approx(gpt.usd(False) / 2)
    assert rows["judges", "judge:smollm2"].calls == 0
    assert any("smollm2 is the main judge's card" in n for n in extra.notes)
    # The rest of the plan is the default's.
    assert [(r.artifact, r.role, r.calls) for r in default.counts] == [
        (r.artifact, r.role, r.calls) for r in extra.counts if r.artifact != "judges"]
    text = plan.render([extra], 3000.0, 2500.0, 2.0)
    assert "| judges | judge:gpt-4o | gpt-4o | 12 |" in text


def test_the_agreement_table_reaches_wandb_under_stable_names(
    trust_run: tuple[Path, dict],
) -> None:
    values = agreement.wandb_values(trust_run[1]["agreement"])
    assert values["agreement/both_orders/deu/flip/kappa"] == pytest.approx(0.625)
    assert values["agreement/both_orders/deu/biased/flip_rate"] == pytest.approx(0.25)
    assert "agreement/both_orders/avg/panel/win_rate" in values
    assert all(isinstance(v, int | float) for v in values.values())  # absent values left out


@pytest.mark.parametrize(
    ("judges", "key", "why"),
    [
        ("[nope]", "eval.judges[0]", "unknown judge card 'nope' (known: gpt-4o, smollm2"),
        ("[smollm2,smollm2]", "eval.judges[1]", "listed twice"),
        ("[{name:smollm2-135m,model:x}]", "eval.judges[0]", "is the main judge's name"),
        ("[{name:x}]", "eval.judges[0].model", "must be set"),
        ("[{name:x,model:m,bogus:1}]", "eval.judges[0]", "not a model card"),
        ("[{name:x,model:m,backend:nope}]", "eval.judges[0].backend", "unknown backend"),
    ],
)
def test_a_bad_extra_judge_is_refused_naming_its_entry(judges: str, key: str, why: str) -> None:
    from xlexp.config import validate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["stages=[evaluate,report]", f"eval.judges={judges}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert err.value.key == key and why in str(err.value)
