#!/usr/bin/env bash
# Mutation run (mutmut) over the code that makes xlexp's numbers and datasets: does a small bug
# planted in it (a flipped comparison, an off-by-one, a dropped argument) fail a fast test?
# Not part of CI: each target takes minutes. Its scores are quoted in the notes.
#
#   benchmarks/mutation.sh                 # every target
#   benchmarks/mutation.sh metrics judge   # some targets
#   MUTATION_DIR=/tmp/m benchmarks/mutation.sh select
#   MUTANTS='xlexp.llm.wire.x_status_error*' benchmarks/mutation.sh failures   # only those mutants
#
# Each target mutates a few modules and runs only the fast tests that exercise them (mutmut
# runs, per mutant, those of them that reach the mutated function). Every target works in its own
# copy of the tracked tree under $MUTATION_DIR (default outputs/mutation/, git-ignored), so
# mutmut's mutants/ folder and its cache never land in the checkout; a rerun starts afresh.
# One worker (--max-children 1): the machine's cores are shared.
#
# Not mutated: lines that only build an error or log message or a docstring-like text (a mutant
# there changes what a person reads, never a number or a row), the do_not_mutate_patterns below.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# mutmut forks each mutant's run from a process that has run torch/numpy already: OpenMP's
# thread pool does not survive a fork (a hang, counted as a "timeout" kill) and one thread per
# run is what a 2-core machine has anyway.
export OMP_NUM_THREADS=1
work=${MUTATION_DIR:-$root/outputs/mutation}

declare -A MODULES TESTS
# judge protocols and their verdict parsers
MODULES[judge]="xlexp/evaluate/judge.py xlexp/evaluate/alpaca_judge.py xlexp/evaluate/rubric.py"
TESTS[judge]="tests/test_judge.py tests/test_judge_alpaca_eval.py tests/test_rubric_rtt.py
  tests/test_mutation_judge.py"
# win rate, s.e., CI, LC, language fidelity
MODULES[metrics]="xlexp/evaluate/metrics.py xlexp/evaluate/lc.py xlexp/evaluate/langid.py"
TESTS[metrics]="tests/test_metrics.py tests/test_lc.py tests/test_langid.py
  tests/test_metric_columns.py tests/test_mutation_metrics.py tests/test_pairing.py
  tests/test_mutation_langid.py tests/test_line_fidelity.py"
# generation's pure cores: segment + reassemble, QE triples and passage means, best-of-k + cut
MODULES[generate]="xlexp/generate/select.py xlexp/generate/segment.py xlexp/generate/qe.py"
# (test_sat.py and test_comet_qe.py: SaT and CometKiwi through tiny models built in seconds)
TESTS[generate]="tests/test_generate_cores.py tests/test_segment.py tests/test_gen_stats.py
  tests/test_topup.py tests/test_mutation_generate.py tests/test_sat.py tests/test_comet_qe.py"
# SFT data selection and defaults
MODULES[sft]="xlexp/sft/data.py xlexp/sft/config.py"
# (not test_config_errors.py: its subprocess runs would import mutmut's trampolines outside it)
TESTS[sft]="tests/test_sft.py tests/test_config.py tests/test_mutation_sft.py"
# artifact keys
MODULES[store]="xlexp/store.py"
TESTS[store]="tests/test_store.py tests/test_store_heal.py tests/test_mutation_store.py"
# failure vs content reject, in every backend's answer path (openai_sdk: the Batch API's
# exception -> failure kind)
MODULES[failures]="xlexp/failures.py xlexp/llm/wire.py xlexp/llm/openai_batch.py
  xlexp/llm/openai_sdk.py"
TESTS[failures]="tests/test_transport.py tests/test_openai_batch.py tests/test_openai_backend.py
  tests/test_mutation_failures.py"
# the evaluation stage: system, reference and verdicts paired by id
MODULES[pairing]="xlexp/evaluate/pairing.py"
TESTS[pairing]="tests/test_pairing.py"

order="judge metrics generate sft store failures pairing"
targets=${*:-$order}

for t in $targets; do
  [[ -n "${MODULES[$t]:-}" ]] || { echo "unknown target $t (known: $order)" >&2; exit 2; }
  dir=$work/$t
  rm -rf "$dir"
  mkdir -p "$dir"
  # The tracked tree plus new files not yet committed (a test being written), not outputs/.
  (cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dir")
  tests=()
  for f in ${TESTS[$t]}; do [[ -e "$dir/$f" ]] && tests+=("$f"); done
  python - "$dir/pyproject.toml" "${MODULES[$t]}" "${tests[@]}" <<'EOF'
import json, sys
path, modules, tests = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
text = open(path).read()
text += f"""
[tool.mutmut]
source_paths = ["xlexp"]
also_copy = ["conf", "launchers", "docs", "README.md"]
only_mutate = {json.dumps(modules)}
pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-m", "not slow"]
pytest_add_cli_args_test_selection = {json.dumps(tests)}
do_not_mutate_patterns = [
  "raise [A-Za-z]*(Error|Exception)\\\\(",
  "log\\\\.(debug|info|warning|error)\\\\(",
  "warnings\\\\.warn\\\\(",
]
"""
open(path, "w").write(text)
EOF
  echo "== $t: ${MODULES[$t]}"
  # PYTHONPATH would put the unmutated checkout ahead of mutmut's mutants/ copy.
  # MUTANTS: space-separated mutmut name globs; reruns only those (e.g. the survivors of a run).
  # shellcheck disable=SC2086
  (cd "$dir" && env -u PYTHONPATH python -m mutmut run --max-children 1 ${MUTANTS:-} \
     >run.log 2>&1 || true
   env -u PYTHONPATH python -m mutmut export-cicd-stats >/dev/null 2>&1 || true
   env -u PYTHONPATH python -m mutmut results >survivors.txt 2>&1 || true)
  python - "$dir" "${MUTANTS:-}" <<'EOF'
import json, sys
d, only = sys.argv[1], sys.argv[2]
if only:  # a rerun of some mutants: the others are "not checked", so no score
    lines = open(f"{d}/survivors.txt").read().splitlines()
    left = [x.strip() for x in lines if x.rstrip().endswith((": survived", ": no tests"))]
    print(f"  rerun of {len(only.split())} names: {len(left)} not killed"
          + "".join(f"\n    {x}" for x in left))
    sys.exit(0)
try:
    s = json.load(open(f"{d}/mutants/mutmut-cicd-stats.json"))
except OSError:
    sys.exit(f"  no stats: see {d}/run.log")
tested = s["total"] - s.get("skipped", 0)
if not tested:
    sys.exit(f"  no mutant ran (the tests failed unmutated?): see {d}/run.log")
dead = s["killed"] + s.get("timeout", 0)
print(f"  killed {dead}/{tested}, survived {s['survived']}, no tests {s.get('no_tests', 0)}"
      f"  (survivors: {d}/survivors.txt)")
EOF
done
