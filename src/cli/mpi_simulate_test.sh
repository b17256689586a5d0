#!/usr/bin/env bash
# `ftte simulate` under mpirun (ctest mpi_simulate): 3 ranks, oversubscribed on any machine,
# write results.json byte for byte as one process does; ranks started with different flags
# end with a clear error on rank 0, not a hang.
# usage: mpi_simulate_test.sh FTTE MPIEXEC
set -euo pipefail
ftte=$1
mpiexec=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Root may run mpirun (CI machines run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Containers often forbid the cross-process copies (CMA) Open MPI's shared memory uses for large
# messages; copy through the shared segment instead (slower, works everywhere).
export OMPI_MCA_btl_vader_single_copy_mechanism=none
tiny=(--seeds 0,1 --set model=mlp --set train_limit=800 --set test_limit=300
      --set duration_s=20 --set eval_every_s=10 --set devices.count=8
      --set client.local_steps=2 --set method.*.concurrency=3 --set method.*.buffer=2
      --methods ftte,fedavg)

"$ftte" simulate "${tiny[@]}" --threads 2 --out "$work/one" >"$work/one.log" 2>&1 ||
  { cat "$work/one.log"; exit 1; }
timeout 300 "$mpiexec" --oversubscribe -np 3 "$ftte" simulate "${tiny[@]}" --threads 1 \
  --out "$work/three" >"$work/three.log" 2>&1 || { cat "$work/three.log"; exit 1; }
cmp "$work/one/results.json" "$work/three/results.json" ||
  { echo "FAIL: results.json of 3 ranks differs from one process's"; exit 1; }
grep -q "on each of 3 MPI ranks" "$work/three.log" ||
  { cat "$work/three.log"; echo "FAIL: the run does not say it used 3 ranks"; exit 1; }
# Rank 0 alone prints: one summary.
[ "$(grep -c '^results:' "$work/three.log")" = 1 ] ||
  { cat "$work/three.log"; echo "FAIL: more than one rank printed results"; exit 1; }
for f in runs/ftte-seed1.json models/fedavg-seed0.safetensors; do
  [ -f "$work/three/$f" ] || { echo "FAIL: no $f"; exit 1; }
done

# Whole runs spread over the ranks (--split runs): the same results and models.
timeout 300 "$mpiexec" --oversubscribe -np 3 "$ftte" simulate "${tiny[@]}" --threads 1 \
  --split runs --out "$work/runs" >"$work/runs.log" 2>&1 || { cat "$work/runs.log"; exit 1; }
cmp "$work/one/results.json" "$work/runs/results.json" ||
  { echo "FAIL: results.json of --split runs differs from one process's"; exit 1; }
for f in "$work"/one/models/*; do
  cmp "$f" "$work/runs/models/$(basename "$f")" ||
    { echo "FAIL: model $(basename "$f") of --split runs differs"; exit 1; }
done

# Tuning trials spread whole too: the same choice, the same results.
tuned=(--set tune.server_step=[0.5,1] --set tune.validation=100 --set target_accuracy=0.2)
"$ftte" simulate "${tiny[@]}" "${tuned[@]}" --threads 2 --out "$work/tuned1" \
  >"$work/tuned1.log" 2>&1 || { cat "$work/tuned1.log"; exit 1; }
timeout 300 "$mpiexec" --oversubscribe -np 3 "$ftte" simulate "${tiny[@]}" "${tuned[@]}" \
  --threads 1 --split runs --out "$work/tuned3" >"$work/tuned3.log" 2>&1 ||
  { cat "$work/tuned3.log"; exit 1; }
for f in results.json tuning.json; do
  cmp "$work/tuned1/$f" "$work/tuned3/$f" || { echo "FAIL: tuned --split runs: $f differs"; exit 1; }
done

# Ranks that disagree on the configuration: a clear error, exit non-zero, no hang.
if timeout 120 "$mpiexec" --oversubscribe -np 1 "$ftte" simulate "${tiny[@]}" --seed 0 \
     --out "$work/bad" : -np 1 "$ftte" simulate "${tiny[@]}" --seed 1 --out "$work/bad" \
     >"$work/bad.log" 2>&1; then
  cat "$work/bad.log"; echo "FAIL: ranks with different seeds ran"; exit 1
fi
grep -q "disagree on the configuration" "$work/bad.log" ||
  { cat "$work/bad.log"; echo "FAIL: no error naming the disagreement"; exit 1; }
[ ! -f "$work/bad/results.json" ] || { echo "FAIL: results written"; exit 1; }
echo "mpi_simulate: 3 ranks = 1 process (results.json identical, --split jobs and runs);" \
  "mismatched ranks refused"
