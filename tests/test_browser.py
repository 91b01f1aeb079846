"""End to end in JupyterLab: notebook 03 runs in headless Chromium without an error, its BANE
explorer renders as real widgets (sliders, dropdowns, a figure inside an Output widget), and moving
the K slider redraws the figure. Screenshots are left in artifacts/browser/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from browser_helpers import (
    CHROMIUM,
    chromium_page,
    error_outputs,
    figure_src,
    jupyter_lab,
    nudge,
    open_notebook,
    run_all_cells,
    slider_handle,
    unrun_cells,
    wait_idle,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/03_bane_negatives.ipynb"
SHOTS = ROOT / "artifacts" / "browser"
K_LABEL = r"\bK\b"  # the K slider's description mentions K


def require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install playwright)")


@pytest.mark.browser
def test_bane_explorer_in_jupyterlab(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import expect

    assert (ROOT / NOTEBOOK).is_file(), f"{NOTEBOOK} is missing"
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("03_*.png"):  # no stale screenshot from an earlier run
        old.unlink()
    with jupyter_lab(ROOT, tmp_path) as (base, token), chromium_page() as page:
        try:
            open_notebook(page, base, token, NOTEBOOK)
            run_all_cells(page)
            handle = slider_handle(page, K_LABEL)
            explorer = page.locator(".jp-Cell-outputArea").filter(has=handle)
            figure = explorer.locator(".widget-output img").first
            if handle.count():
                handle.scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / "03_run_all.png")

            errors = error_outputs(page)
            assert not errors, "a cell shows an error:\n" + "\n\n".join(errors)
            assert unrun_cells(page) == 0, "Run All stopped before the last cell"
            expect(handle).to_have_count(1)
            expect(explorer.locator(".widget-dropdown").first).to_be_visible()
            expect(figure).to_be_visible()

            before = figure_src(figure)
            nudge(handle, figure)
            assert figure_src(figure) != before
            wait_idle(page)
            page.screenshot(path=SHOTS / "03_k_slider_moved.png")
            assert not error_outputs(page), "the redraw failed: " + "\n".join(error_outputs(page))
        except Exception:
            page.screenshot(path=SHOTS / "03_failure.png")
            raise
