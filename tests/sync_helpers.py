"""Count the operations that make the host wait for a GPU, on the CPU, so CI guards them.

On a GPU, a device-to-host synchronisation is an `aten::_local_scalar_dense` (`.item()`,
`bool()`, `int()`, `float()` of a tensor, Python control flow on one) or an op whose output size
depends on the data (`nonzero`, `masked_select`, `unique`, boolean-mask indexing, `bincount`,
`repeat_interleave` with tensor repeats, ...), or a copy between host and device: to the host
(`.tolist()`, `.numpy()`, `.cpu()`), or from it (`lift_fresh`: a tensor made from host data,
as `torch.tensor(...)` or `t[i] = 0` do, which a GPU receives through a synchronous copy). On the CPU none of these waits, but all of them are visible: the first two kinds to a
`TorchDispatchMode`, the last kind by wrapping the Tensor methods while counting.
"""

from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "masked_select",
        "masked_scatter",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "histc",
        "repeat_interleave",
        "equal",
        "is_nonzero",
        "lift_fresh",
    }
)
INDEX_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})
HOST_METHODS = ("tolist", "numpy", "cpu")


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as c: ...` then `c.counts`: op name -> how often it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self._saved: dict[str, object] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNC_OPS:
            self.counts[name] += 1
        elif name in INDEX_OPS and any(
            t is not None and t.dtype in (torch.bool, torch.uint8) for t in args[1]
        ):
            self.counts[f"{name}[bool mask]"] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        for name in HOST_METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(t, *a, _name=name, _original=original, **kw):
                self.counts[f"Tensor.{_name}"] += 1
                return _original(t, *a, **kw)

            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)
