#!/usr/bin/env bash
# The long suites and every bench, in one command (issue 8). About 30 minutes on two
# cores. Figures go to bench/out/*.json (and PNGs from energy_day.py when matplotlib is
# installed: pip install -e '.[bench]'). Each bench exits 0 whatever it measures; the
# exit code says only whether the long test suites passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
out=bench/out
mkdir -p "$out"

pytest -q -m slow tests/reliability
suites=$?

for bench in footprint tap_to_contactor fault_to_contactor plug_out_to_contactor \
    local_list_apply throughput recovery scale energy_day; do
    echo "== bench/$bench.py"
    python "bench/$bench.py" --json "$out/$bench.json" || echo "bench/$bench.py failed"
done
exit $suites
