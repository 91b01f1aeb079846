"""Driving JupyterLab in headless Chromium (tests/test_browser.py).

A private JupyterLab server (`jupyter_lab`), a fresh headless Chromium page (`chromium_page`) and
the few page actions the test needs. Facts behind the selectors: ../shared/JUPYTERLAB.md (beside the checkout).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
WAIT_MS = 60_000  # one wait on a loaded 2-core machine
RUN_MS = 120_000  # running every cell of a notebook
SERVER_S = 60.0  # the server answering /api/status

# User settings: no "Jupyter news?" pop-up over the page, no autosave (the test must not write the
# executed notebook back into the repo), and every cell kept in the DOM (no windowing), so the
# error check sees every output.
USER_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

# JupyterLab 4 renders an error output as stderr text (measured: no class or mime type of its
# own), so an error is a stderr output holding a traceback or an "...Error:" line (a SyntaxError
# shows no "Traceback").
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
ERROR_TEXT = r"Traceback|\b\w*(Error|Exception)\b:"
IDLE = re.compile(r"\|\s*Idle$")  # the status bar's kernel item: "Python 3 (ipykernel) | Idle"
# A widget's output is a bare text node (no element inside) while the widget manager looks for its
# model ("Loading widget...") and after it gave up ("Error displaying widget: model not found" and
# the like); the patterns are JS and Python regexes, `BARE` lists those texts under `root`. A widget
# shown as its Python repr (`VBox(children=(...`) in a text/plain output means the widget
# extension is missing.
WIDGET_ERROR = r"^Error displaying widget"
PENDING = r"^(Loading widget\.\.\.)?$"
BARE = (
    "[...root.querySelectorAll('.jp-OutputArea-output:not(.lm-mod-hidden)')]"
    ".filter(e => !e.childElementCount).map(e => e.textContent.trim())"
)
TEXT = ".jp-OutputArea-output[data-mime-type='text/plain']"
WIDGET_REPR = r"^\s*\w+\((children|value|description|options|layout)="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(tmp: Path) -> dict[str, str]:
    """The server's environment: Jupyter's folders in `tmp`, the user settings above, FAST mode,
    one OpenMP thread, and matplotlib's inline backend (as a user would have it)."""
    dirs = {
        "JUPYTER_CONFIG_DIR": tmp / "config",
        "JUPYTER_DATA_DIR": tmp / "data",
        "JUPYTER_RUNTIME_DIR": tmp / "runtime",
        "JUPYTERLAB_WORKSPACES_DIR": tmp / "workspaces",
        "JUPYTERLAB_SETTINGS_DIR": tmp / "settings",
        "IPYTHONDIR": tmp / "ipython",
    }
    for plugin, values in USER_SETTINGS.items():
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    env.pop("MPLBACKEND", None)
    return {**env, "CTX_FAST": "1", "OMP_NUM_THREADS": "1"}


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab not up after {SERVER_S:.0f} s:\n{log.read_text()[-3000:]}")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server (it shuts its kernels down), then SIGKILL to its process group as a
    backstop, and to its kernels' (each runs in a session of its own) if it did not exit."""
    kernels = _children(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=20)
        groups = [proc.pid]
    except subprocess.TimeoutExpired:
        groups = [proc.pid, *kernels]
    for group in groups:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    proc.wait(timeout=15)


@contextmanager
def jupyter_lab(root: Path, tmp: Path) -> Iterator[tuple[str, str]]:
    """Serve `root` on a free localhost port with a random token; yields (base URL, token)."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1"]
    cmd += [f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"]
    # An absolute checkpoint folder keeps the checkpoint of an opened notebook out of `root`.
    cmd += [
        f"--ServerApp.root_dir={root}",
        f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    log = tmp / "jupyter-lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=lab_env(tmp), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_up(proc, f"{base}/api/status?token={token}", log)
        yield base, token
    finally:
        _stop(proc)


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page of a fresh headless Chromium (Playwright's own temporary profile)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def wait_idle(page: Page) -> None:
    """Wait for the status bar's kernel item to read "... | Idle" (the toolbar's indicator says
    idle while the kernel is still starting)."""
    page.locator("#jp-main-statusbar").get_by_text(IDLE).wait_for()


def open_notebook(page: Page, base: str, token: str, path: str) -> None:
    """Open `path` (relative to the server's root) in a reset workspace; wait for an idle kernel."""
    page.goto(f"{base}/lab/tree/{path}?reset&token={token}")
    page.locator(".jp-Notebook").first.wait_for()
    wait_idle(page)


def _menu(page: Page, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=menu).first.click()
    page.locator(f"li.lm-Menu-item[data-command='{command}']").click()


def run_all_cells(page: Page, timeout_ms: float = RUN_MS) -> None:
    """Clear all outputs (a committed execution count would look like a finished run), Run menu
    -> Run All Cells, then wait until no cell is queued or running and either the last code cell
    has run or an error stopped the run; then for an idle kernel."""
    _menu(page, "Edit", "editmenu:clear-all")
    _menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(
        """([stderr, errorText]) => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            if (prompts.some(p => p.textContent.includes('*'))) return false;
            const error = [...document.querySelectorAll(stderr)]
                .some(e => new RegExp(errorText).test(e.textContent));
            return error || /\\d/.test(prompts.at(-1)?.textContent ?? '');
        }""",
        arg=[STDERR, ERROR_TEXT],
        timeout=timeout_ms,
    )
    wait_idle(page)


def unrun_cells(page: Page) -> int:
    """How many code cells have no execution count."""
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    return sum(not re.search(r"\d", p) for p in prompts)


def console_errors(page: Page) -> list[str]:
    """A list that collects, from now on, the page's console errors (the widget manager logs
    each widget it fails to show there) and its uncaught exceptions."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught exception: {e}"))
    return errors


def wait_for_widgets(page: Page) -> None:
    """Wait (at most WAIT_MS) until no widget is still loading (see PENDING): its model found,
    or "Error displaying widget..." in its place."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pending = (
        f"(p) => {{ const root = document; return !{BARE}.some(t => new RegExp(p).test(t)); }}"
    )
    with suppress(PlaywrightTimeout):
        page.wait_for_function(pending, arg=PENDING, timeout=WAIT_MS)


def _cells(page: Page) -> list[dict]:
    """Per cell, in notebook order: its prompt ("[3]:"), the texts of its stderr outputs, of its
    text/plain outputs and of its bare outputs (see BARE)."""
    return page.evaluate(
        f"""([stderr, text]) => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(
            root => ({{
                prompt: root.querySelector('.jp-InputArea-prompt')?.textContent ?? '',
                stderr: [...root.querySelectorAll(stderr)].map(e => e.innerText),
                text: [...root.querySelectorAll(text)].map(e => e.innerText),
                bare: {BARE},
            }}))""",
        [STDERR, TEXT],
    )


def _cell_problems(cell: dict) -> list[str]:
    errors = [t for t in cell["stderr"] if re.search(ERROR_TEXT, t)]
    errors += [t for t in cell["bare"] if re.search(WIDGET_ERROR, t)]
    errors += [
        f"a widget never shown ({t or 'empty'})" for t in cell["bare"] if re.search(PENDING, t)
    ]
    texts = cell["text"]
    errors += [f"a widget shown as text: {t[:300]}" for t in texts if re.search(WIDGET_REPR, t)]
    return errors


def _prompt(cell: dict) -> str:
    return cell["prompt"].strip().rstrip(":")


def page_problems(page: Page, console: list[str]) -> list[str]:
    """Every error the page shows, each headed by its cell ("cell <index in the notebook>
    [<prompt>]"): error outputs (cells' and widgets'), widgets that failed to show or show as
    text, outputs that never rendered; then what `console` (from `console_errors`) collected."""
    return [
        f"cell {i} {_prompt(cell)}: {error}"
        for i, cell in enumerate(_cells(page))
        for error in _cell_problems(cell)
    ] + console


def stderr_notes(page: Page) -> list[str]:
    """The stderr outputs that are not errors (warnings, progress), each headed by its cell."""
    return [
        f"cell {i} {_prompt(cell)}: {t}"
        for i, cell in enumerate(_cells(page))
        for t in cell["stderr"]
        if not re.search(ERROR_TEXT, t)
    ]


def shoot_widgets(page: Page, prefix: Path) -> int:
    """Screenshot each cell output that holds a widget, to `prefix`_widget_<n>.png; how many."""
    outputs = page.locator(".jp-Cell-outputArea > .jp-OutputArea-child:has(.jupyter-widgets)")
    for n, output in enumerate(outputs.all(), 1):
        output.screenshot(path=f"{prefix}_widget_{n}.png")
    return outputs.count()


def slider_handle(page: Page, label: str) -> Locator:
    """The handle of the slider whose description matches the regex `label`."""
    has_label = page.locator(".widget-label", has_text=re.compile(label))
    return page.locator(".widget-slider").filter(has=has_label).locator(".noUi-handle[role=slider]")


def figure_src(figure: Locator) -> str:
    """The `src` of an image (a data or blob URL), once it is there."""
    figure.wait_for()
    return figure.get_attribute("src") or ""


def nudge(handle: Locator, figure: Locator, steps: int = 3) -> None:
    """Move a slider `steps` steps with the keyboard (right, or left from its maximum), waiting
    after each step for `figure` to be redrawn (each key press is one change of the value)."""
    key = _step_key(handle)
    for _ in range(steps):
        before = figure_src(figure)
        handle.press(key)  # focuses the handle first
        _wait_for_change(figure, before)


def _step_key(handle: Locator) -> str:
    """The arrow key that moves a slider's handle one step: right, or left from its maximum."""
    value, top = (float(handle.get_attribute(a) or 0) for a in ("aria-valuenow", "aria-valuemax"))
    return "ArrowLeft" if value >= top else "ArrowRight"


def poke_explorers(page: Page) -> int:
    """Move the first slider of each explorer (a cell's output holding a slider and a figure
    inside an Output widget) one step, and wait for a new figure (a new image element: a redraw
    may give the same pixels) or stderr in the Output widget; then for an idle kernel. Returns
    how many explorers it moved."""
    handles, figures = ".noUi-handle[role=slider]", ".widget-output img"
    # Explorers are found by their cell's index: a failed redraw removes the figure.
    cells = page.locator(".jp-Notebook .jp-Cell")
    explorers = cells.evaluate_all(
        "(cells, [h, f]) => cells.flatMap((c, i) => "
        "c.querySelector(h) && c.querySelector(f) ? [i] : [])",
        [handles, figures],
    )
    for i in explorers:
        cell = cells.nth(i)
        handle = cell.locator(handles).first
        cell.locator(figures).evaluate_all("images => images.forEach(i => i.dataset.old = 1)")
        handle.press(_step_key(handle))
        cell.locator(f"{figures}:not([data-old]), .widget-output {STDERR}").first.wait_for()
        wait_idle(page)
    return len(explorers)


def _wait_for_change(figure: Locator, before: str) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while figure_src(figure) == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the figure was not redrawn within {WAIT_MS / 1000:.0f} s")
        figure.page.wait_for_timeout(200)
