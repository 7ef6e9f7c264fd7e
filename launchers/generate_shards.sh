#!/usr/bin/env bash
# Generation on a Slurm cluster, one node per shard: submit a job array of N shard tasks and the
# merge as one job that waits for the array (a Slurm dependency), then print both job ids.
#   launchers/generate_shards.sh N [OVERRIDES...]
#   launchers/generate_shards.sh 16 profile=paper seed_data=parquet seed_data.path='cx/*.parquet'
# Task i runs `python -m xlexp stages=[generate] generate.shards=N generate.shard=i OVERRIDES`
# (seed -> reverse -> refine -> translate -> qe for the passages whose id hashes to i); the merge,
# `python -m xlexp stages=[generate] generate.shards=N OVERRIDES`, starts when every task has
# ended however it ended (afterany), builds the dataset from the finished shards, or fails naming
# the shards that are not finished and the command that runs only those. Then train as usual:
# any run with the same generation settings (and generate.shards=N) reuses the dataset.
# A preempted or requeued task resumes from the store's finished batches, as the unsharded job
# does. Every task and the merge share the store (store_dir on a shared filesystem).
# Resources as hydra/launcher=slurm_gen reads them (per task):
#   XLEXP_SLURM_GEN_GPUS (4; "null": no GPU request), XLEXP_SLURM_GEN_CPUS (32),
#   XLEXP_SLURM_GEN_MEM_GB (320), XLEXP_SLURM_GEN_TIMEOUT_MIN (2880), XLEXP_SLURM_PARTITION,
#   XLEXP_SLURM_ACCOUNT, XLEXP_SLURM_QOS; XLEXP_SHARDS_LOGS (log dir, default outputs/shards);
#   XLEXP_PYTHON (python). The same array from Hydra instead (submitit, one array; the submitting
#   process waits, then run the merge yourself):
#   python -m xlexp stages=[generate] generate.shards=N 'generate.shard=range(N)' \
#     hydra/launcher=slurm_gen -m
set -euo pipefail
N=${1:?usage: generate_shards.sh N [OVERRIDES...]}
shift
if ! [[ $N =~ ^[1-9][0-9]*$ ]]; then
  echo "generate_shards.sh: N must be a positive number of shards, not '$N'" >&2
  exit 2
fi
PYTHON=${XLEXP_PYTHON:-python}
LOGS=${XLEXP_SHARDS_LOGS:-outputs/shards}
mkdir -p "$LOGS"
opts=(--parsable --chdir="$PWD" --job-name=xlexp-gen --requeue
      --cpus-per-task="${XLEXP_SLURM_GEN_CPUS:-32}"
      --mem="${XLEXP_SLURM_GEN_MEM_GB:-320}G"
      --time="${XLEXP_SLURM_GEN_TIMEOUT_MIN:-2880}")
gpus=${XLEXP_SLURM_GEN_GPUS:-4}
[[ $gpus != null && $gpus != 0 ]] && opts+=(--gpus-per-node="$gpus")
[[ -n ${XLEXP_SLURM_PARTITION:-} ]] && opts+=(--partition="$XLEXP_SLURM_PARTITION")
[[ -n ${XLEXP_SLURM_ACCOUNT:-} ]] && opts+=(--account="$XLEXP_SLURM_ACCOUNT")
[[ -n ${XLEXP_SLURM_QOS:-} ]] && opts+=(--qos="$XLEXP_SLURM_QOS")
# The overrides reach the jobs quoted as typed (a glob or a list stays one argument).
args=$(printf ' %q' stages=[generate] "generate.shards=$N" "$@")
# Each job's Hydra run dir under $LOGS/runs (tasks started in the same second would share one).
runs=$(printf '%q' "$LOGS/runs")
array=$(sbatch "${opts[@]}" --array="0-$((N - 1))" --output="$LOGS/shard-%A_%a.out" \
  --wrap="exec $PYTHON -m xlexp$args generate.shard=\$SLURM_ARRAY_TASK_ID \
hydra.run.dir=$runs/shard-\${SLURM_ARRAY_JOB_ID}_\$SLURM_ARRAY_TASK_ID")
merge=$(sbatch "${opts[@]}" --dependency="afterany:$array" --output="$LOGS/merge-%j.out" \
  --wrap="exec $PYTHON -m xlexp$args hydra.run.dir=$runs/merge-\$SLURM_JOB_ID")
echo "xlexp: shards array $array (tasks 0-$((N - 1)), logs $LOGS/shard-${array}_<i>.out)"
echo "xlexp: merge job $merge after the array (log $LOGS/merge-$merge.out)"
echo "xlexp: status: $PYTHON -m xlexp.store status $runs"
