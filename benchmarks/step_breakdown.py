"""Where Contextrast's extra step time goes on the default CPU model (the profile behind the
opt-in cheaper steps of benchmarks/overhead.py).

    python benchmarks/step_breakdown.py --threads 1 --repeats 15

Times, interleaved on the trained default model and one batch (CPU clock of this process), the
training step of: CE; Contextrast; Contextrast whose loss is CE + 0 x the embeddings (the
projection heads alone); Contextrast with random negatives (no BANE); and the opt-in
`embed_pixels="sampled"` step. Differences of medians split the extra into heads, BANE and the
rest of the loss (anchors, sampling, PA terms). Last line: JSON of the medians in ms.
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from overhead import make_step, setup

from ctx.validation import OneLineParser


class HeadsOnly(torch.nn.Module):
    """CE + 0 x the embeddings: the heads run forward and backward, no PA loss."""

    def forward(self, logits, embeddings, labels):
        ce = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)
        zero = sum(e.sum() for e in embeddings) * 0.0
        return ce + zero, {"ce": ce.detach(), "pa": zero.detach()}


def main() -> None:
    p = OneLineParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, images, labels = setup("default", torch.device("cpu"), trained=True)
    steps = {
        "ce": make_step(model, "ce"),
        "contextrast": make_step(model, "contextrast"),
        "heads_only": make_step(model, "contextrast", loss_fn=HeadsOnly()),
        "random_negatives": make_step(model, "contextrast", negatives="random"),
        "sampled": make_step(model, "contextrast", embed_pixels="sampled"),
    }
    times = {k: [] for k in steps}
    for r in range(args.repeats + 2):
        for k in list(steps) if r % 2 == 0 else list(steps)[::-1]:
            t = time.process_time()
            steps[k](images, labels)
            if r >= 2:
                times[k].append(time.process_time() - t)
    ms = {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()}
    extra = ms["contextrast"] - ms["ce"]
    print(f"CE step {ms['ce']} ms, Contextrast {ms['contextrast']} ms: extra {extra:.1f} ms")
    print(f"  projection heads (all pixels, fwd + bwd)   {ms['heads_only'] - ms['ce']:6.1f} ms")
    print(
        f"  BANE (vs random negatives)                 {ms['contextrast'] - ms['random_negatives']:6.1f} ms"
    )
    print(
        f"  rest of the loss (anchors, sampling, PA)   {ms['random_negatives'] - ms['heads_only']:6.1f} ms"
    )
    print(f"  sampled step: extra {ms['sampled'] - ms['ce']:.1f} ms")
    print(json.dumps(ms))


if __name__ == "__main__":
    main()
