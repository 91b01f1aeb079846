"""End to end in JupyterLab, in headless Chromium: a notebook opens, Run All on a fresh kernel
runs every cell, and the page then shows no error: no error output (a cell's or a widget's), no
widget that failed to show ("Error displaying widget...", still loading, or shown as its text
repr), no console error and no uncaught exception. Then the first slider of each explorer moves one
step, and the redraws must show no error either. Notebook 03's BANE explorer is also checked as
real widgets (sliders, dropdowns, a figure inside an Output widget) whose K slider redraws it.

CI runs notebook 03 (and the notebooks in CI_NOTEBOOKS); `CTX_BROWSER_ALL=1` runs every
notebooks/*.ipynb (`bash scripts/browser_check.sh`). Each run leaves screenshots and
artifacts/browser/<notebook>.json (times, problems, stderr notes) behind."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_helpers import (
    CHROMIUM,
    RUN_MS,
    chromium_page,
    console_errors,
    figure_src,
    jupyter_lab,
    nudge,
    open_notebook,
    page_problems,
    poke_explorers,
    run_all_cells,
    shoot_widgets,
    slider_handle,
    stderr_notes,
    unrun_cells,
    wait_for_widgets,
    wait_idle,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/03_bane_negatives.ipynb"
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
# Beside 03, CI runs one more notebook: 02, cheap (~70 s here in all) and rich in widgets (four
# explorers with sliders). The others run in scripts/browser_check.sh.
CI_NOTEBOOKS = {"02_anchors_and_pa_loss"}
ALL = os.environ.get("CTX_BROWSER_ALL") == "1"
# Run All's limit in the parametrized test (01 and 04 took 6 min, two at a time on 2 loaded cores)
NOTEBOOK_RUN_MS = 1000 * float(os.environ.get("CTX_BROWSER_RUN_S", "900"))
SHOTS = ROOT / "artifacts" / "browser"
K_LABEL = r"\bK\b"  # the K slider's description mentions K


def require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install playwright)")


def _page_report(page: Page, console: list[str]) -> dict:
    with suppress(Exception):  # the page may be gone after a failure
        return {"problems": page_problems(page, console), "stderr_notes": stderr_notes(page)}
    return {"problems": console}


@contextmanager
def run_in_lab(notebook: str, tmp: Path, run_ms: float) -> Iterator[tuple[Page, list[str], dict]]:
    """Open `notebook` in a private JupyterLab, Run All on a fresh kernel, screenshot the page and
    each widget; yields (page, the page's console errors: a list that grows, the record).
    Writes the record to artifacts/browser/<stem>.json (open and run seconds, widget outputs,
    what the caller adds, problems, stderr notes) and, on an exception in the run or in the
    caller's checks, <stem>_failure.png."""
    require_browser()
    assert (ROOT / notebook).is_file(), f"{notebook} is missing"
    metadata = json.loads((ROOT / notebook).read_text())["metadata"]
    # without one, JupyterLab asks for a kernel in a dialog and never starts one
    assert "kernelspec" in metadata, f"{notebook} has no kernelspec in its metadata"
    stem = Path(notebook).stem
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in [*SHOTS.glob(f"{stem}_*.png"), SHOTS / f"{stem}.json"]:  # nothing stale
        old.unlink(missing_ok=True)
    record: dict = {"notebook": notebook}
    with jupyter_lab(ROOT, tmp) as (base, token), chromium_page() as page:
        console = console_errors(page)
        start = time.monotonic()
        try:
            open_notebook(page, base, token, notebook)
            record["open_s"] = round(time.monotonic() - start, 1)
            run_all_cells(page, run_ms)
            wait_for_widgets(page)
            record["run_s"] = round(time.monotonic() - start - record["open_s"], 1)
            page.screenshot(path=SHOTS / f"{stem}_run_all.png")
            record["widgets"] = shoot_widgets(page, SHOTS / stem)
            yield page, console, record
        except Exception as e:
            record["failure"] = f"{type(e).__name__}: {e}"[:2000]
            page.screenshot(path=SHOTS / f"{stem}_failure.png")
            raise
        finally:
            record.update(_page_report(page, console))
            (SHOTS / f"{stem}.json").write_text(json.dumps(record, indent=1))


def assert_clean(page: Page, console: list[str]) -> None:
    problems = page_problems(page, console)
    assert not problems, "the page shows errors:\n" + "\n\n".join(problems)
    assert unrun_cells(page) == 0, "Run All stopped before the last cell"


@pytest.mark.browser
def test_bane_explorer_in_jupyterlab(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with run_in_lab(NOTEBOOK, tmp_path, RUN_MS) as (page, console, _):
        handle = slider_handle(page, K_LABEL)
        explorer = page.locator(".jp-Cell-outputArea").filter(has=handle)
        figure = explorer.locator(".widget-output img").first
        assert_clean(page, console)
        expect(handle).to_have_count(1)
        expect(explorer.locator(".widget-dropdown").first).to_be_visible()
        expect(figure).to_be_visible()

        before = figure_src(figure)
        nudge(handle, figure)
        assert figure_src(figure) != before
        wait_idle(page)
        page.screenshot(path=SHOTS / "03_bane_negatives_k_slider_moved.png")
        assert_clean(page, console)  # the redraws too


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda n: Path(n).stem)
def test_notebook_runs_in_jupyterlab(notebook: str, tmp_path: Path) -> None:
    stem = Path(notebook).stem
    if notebook == NOTEBOOK:
        pytest.skip("test_bane_explorer_in_jupyterlab runs it, with the same checks")
    if not ALL and stem not in CI_NOTEBOOKS:
        pytest.skip("CI runs a subset: CTX_BROWSER_ALL=1 (scripts/browser_check.sh) runs it")
    with run_in_lab(notebook, tmp_path, NOTEBOOK_RUN_MS) as (page, console, record):
        assert_clean(page, console)
        record["explorers_moved"] = poke_explorers(page)
        assert_clean(page, console)  # the redraws too
