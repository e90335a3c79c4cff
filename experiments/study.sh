#!/usr/bin/env bash
# The reference study of TRPO's knobs (docs/results.md): its eight grids (the new ablations
# first, the 10-seed benchmark, the longest, last) in one run store, so that a run shared
# between grids (the same settings and seed) is trained once, by the code of the checkout
# this script is in. Every grid resumes where it stopped: rerun the same command to continue.
#
#   experiments/study.sh [OUT [grid options...]]     # OUT defaults to ~/trpo-study
#
# About 485 distinct runs of 1M steps: some 9-15 hours on two cores.
set -uo pipefail
case "${1:-}" in
  -*) echo "study.sh: the first argument is the run store (OUT); grid options follow it" >&2; exit 2 ;;
esac
out=$(realpath -m -- "${1:-$HOME/trpo-study}")   # before the cd below: relative to where it was called
shift || true
cd "$(dirname "$0")/.."
failed=0
for grid in ablation_fisher ablation_kl_bound ablation_fvp_fraction ablation_cg_damping \
            ablation_delta ablation_cg_iters value_backend mujoco; do
  python -m trpo_bench.cli grid "experiments/$grid.yaml" --out "$out" --wandb disabled "$@"
  code=$?
  if [ "$code" -eq 130 ]; then exit 130; fi   # interrupted: stop here, rerun to resume
  if [ "$code" -ne 0 ]; then failed=$code; fi
done
exit "$failed"
