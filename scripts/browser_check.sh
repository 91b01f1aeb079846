#!/usr/bin/env bash
# Every notebook in JupyterLab, in headless Chromium (tests/test_browser.py with CTX_BROWSER_ALL=1):
# opened, Run All on a fresh kernel (FAST), then checked for error outputs, widgets that failed to
# show and console errors. CI runs only a subset; run this before a release or a notebook change.
#
#   bash scripts/browser_check.sh                 # all of notebooks/*.ipynb, two at a time
#   JOBS=1 bash scripts/browser_check.sh -k 05    # one at a time, only 05 (more pytest arguments)
#
# Leaves screenshots and artifacts/browser/<notebook>.json behind, and ends with a table: per
# notebook the seconds to open it and to run it, widget outputs, explorers moved, problems (each
# listed under it).
# Needs chromium (apt-get install chromium) and playwright (in the dev extra).
set -uo pipefail
cd "$(dirname "$0")/.."

command -v chromium >/dev/null || { echo "no chromium: apt-get install chromium"; exit 1; }
python -c "import playwright" || { echo "no playwright: pip install -e '.[dev]'"; exit 1; }

mkdir -p artifacts/browser
rm -f artifacts/browser/*.json
CTX_BROWSER_ALL=1 python -m pytest -q -rs -p no:cacheprovider -n "${JOBS:-2}" --dist load \
  -m browser tests/test_browser.py "$@"
rc=$?

python - <<'PY' || rc=1
import json
import sys
from pathlib import Path

rows = {Path(p).stem: json.loads(p.read_text()) for p in Path("artifacts/browser").glob("*.json")}
cols = (("open_s", "open s"), ("run_s", "run s"), ("widgets", "widgets"), ("explorers_moved", "moved"))
print(f"\n{'notebook':<40}" + "".join(f"{h:>9}" for _, h in cols) + f"{'problems':>9}")
for path in sorted(Path("notebooks").glob("*.ipynb")):
    r = rows.get(path.stem)
    if r is None:
        print(f"{path.name:<40} not run (deselected or skipped)")
        continue
    row = "".join(f"{r.get(k, '-')!s:>9}" for k, _ in cols)
    print(f"{path.name:<40}{row}{len(r['problems']):>9}")
    if "failure" in r:
        print("    failed: " + r["failure"].splitlines()[0])
    for problem in r["problems"]:
        print("    " + problem.replace("\n", "\n    "))
print("screenshots and details: artifacts/browser/")
sys.exit(any("failure" in r or r["problems"] for r in rows.values()))
PY
exit "$rc"
