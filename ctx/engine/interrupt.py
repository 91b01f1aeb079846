"""Ctrl-C during training: the first one stops the run at the next step boundary, which saves;
a second one stops at once. `Interrupted` says what was saved and how to resume."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says what was saved and how to resume."""


@contextlib.contextmanager
def deferred_interrupt(announce: bool) -> Iterator[threading.Event]:
    """While active, a first Ctrl-C only sets the yielded event (the loop stops at the next step
    boundary and saves); a second one raises KeyboardInterrupt at once. Outside the main thread
    signals can't be caught and Ctrl-C raises as usual."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if announce:
            os.write(
                2, b"\nCtrl-C: stopping after this step to save it (again: stop now, unsaved)\n"
            )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
