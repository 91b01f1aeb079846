"""scripts/run_notebooks.py: its reply wait polls, so a missed wake-up costs a poll, not the
cell timeout (jupyter/nbclient#312)."""

import asyncio
import importlib.util
import inspect
import time
import types
from pathlib import Path
from queue import Empty

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "run_notebooks", ROOT / "scripts" / "run_notebooks.py"
)
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)


class Channel:
    """A channel whose message is there from `ready` seconds on, but whose wait, like the
    stalled poll, wakes only at its own timeout; records every timeout asked for."""

    def __init__(self, ready: float):
        self.start, self.ready, self.asked = time.monotonic(), ready, []

    async def get_msg(self, timeout=None):
        self.asked.append(timeout)
        if time.monotonic() - self.start >= self.ready:
            return {"msg": "reply"}
        await asyncio.sleep(timeout)
        raise Empty


def test_a_reply_is_picked_up_at_the_next_poll_not_at_the_timeout():
    channel = Channel(ready=0.05)
    get = run_notebooks.polled(channel.get_msg, poll=0.02)
    start = time.monotonic()
    assert asyncio.run(get(timeout=30)) == {"msg": "reply"}
    assert time.monotonic() - start < 5  # one long wait would have taken the full 30 s
    assert max(channel.asked) <= 0.02 and len(channel.asked) >= 3


def test_no_reply_raises_empty_at_the_callers_timeout():
    channel = Channel(ready=60)
    get = run_notebooks.polled(channel.get_msg, poll=0.02)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get(timeout=0.1))
    assert 0.1 <= time.monotonic() - start < 2
    assert all(t <= 0.02 for t in channel.asked)


def test_the_executor_wraps_the_client_it_starts():
    """nbclient's sync `start_new_kernel_client`, which `preprocess` calls, wraps nbclient's own
    coroutine: the override must be wrapped again, or the polling never runs (as at first)."""

    class Client:
        def __init__(self):
            self.shell_channel = types.SimpleNamespace(get_msg=lambda timeout=None: {"m": 1})

        def start_channels(self):
            pass

        def wait_for_ready(self, timeout=None):
            pass

    client = Client()
    executor = run_notebooks.Executor()
    executor.nb = nbformat.v4.new_notebook()
    executor.km = types.SimpleNamespace(client=lambda: client)
    assert executor.start_new_kernel_client() is client
    assert inspect.iscoroutinefunction(client.shell_channel.get_msg)
    assert asyncio.run(client.shell_channel.get_msg(timeout=1)) == {"m": 1}
