#!/usr/bin/env bash
# Reproduce one of the paper's tables: every row's preset with all of its seeds, then the table beside the paper.
#   bash scripts/reproduce.sh table1 [extra overrides, e.g. task.data_dir=data hydra/launcher=slurm]
# Needs the paper's models (hub) and data (python scripts/prepare_data.py) and a GPU per run. Finished runs are
# skipped when relaunched; interrupted ones resume from their checkpoint.
set -euo pipefail
table=${1:?usage: reproduce.sh table1|table2|table3|table4|table17 [overrides]}
shift
case $table in
  table1) presets='glob(t1_*)'; seeds=42,43,44 ;;        # commonsense, 3 seeds
  table2) presets='glob(t2_*)'; seeds=42,43,44 ;;        # arithmetic, 3 seeds
  table3) presets='glob(t3_*)'; seeds=42,43 ;;           # instruction following, 2 seeds (then run alpaca_eval)
  table4) presets='glob(t4_*)'; seeds=42,43,44,45,46 ;;  # GLUE, 5 seeds
  table17) presets='glob(t17_*)'; seeds=42,43,44 ;;      # ablations on arithmetic
  *) echo "unknown table $table; valid: table1 table2 table3 table4 table17" >&2; exit 2 ;;
esac
reftrun train -m "experiment=$presets" "seed=$seeds" "$@"
reftrun table runs=runs compare=paper figure="$table.png"
