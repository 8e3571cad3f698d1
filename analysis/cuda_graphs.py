"""The engine's forward pass replayed from CUDA graphs, one per batch shape.

On an H200 the bf16 forward pass of a 200 s batch launches about 10,000
kernels, and the GPU sat idle for 39 % of the pass waiting on the host to
launch them (``bench.engine_gpu --profile``). A CUDA graph records the
kernels of one pass once and replays them with a single launch. A graph is
fixed to the shapes it was recorded with, so the engine pads each batch to a
shape bucket (``bucket_rows``, ``bucket_samples``): a bounded set of shapes,
each recorded on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]

# Rows grow by 1.5x or 1.33x per bucket (1, 2, 3, 4, 6, 8, 12, 16, 24, ...):
# a batch pads at most a third of its rows, and a 200 s budget of 2-15 s
# clips meets about ten row counts.
# Samples round up to half a second: 3 % of a 2-15 s clip on average, and 28
# sample buckets up to 15 s.
BUCKET_SECONDS = 0.5


def bucket_rows(rows: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, ... that holds ``rows``."""
    power = 1
    while True:
        for bucket in (power, power + power // 2):
            if bucket >= rows:
                return bucket
        power *= 2


def bucket_samples(samples: int, sample_rate: int) -> int:
    """``samples`` rounded up to a whole number of BUCKET_SECONDS."""
    quantum = round(BUCKET_SECONDS * sample_rate)
    return -(-samples // quantum) * quantum


@dataclass
class _Recorded:
    graph: torch.cuda.CUDAGraph
    source: torch.Tensor
    frame_padding: torch.Tensor | None
    output: torch.Tensor


class GraphedForward:
    """``forward(source, frame_padding)`` recorded as a CUDA graph per input
    shape and replayed after that.

    All graphs share one memory pool, and the inputs of each are views of one
    shared buffer per input, as are the outputs: only one pass runs at a
    time (a worker process scores one batch after another), so a graph's
    memory between replays is the largest pass's, not the sum of all. The
    tensor returned is that shared output, valid until the next call: the
    caller copies what it keeps first."""

    def __init__(self, forward: Forward) -> None:
        self._forward = forward
        self._recorded: dict[tuple, _Recorded] = {}
        self._eager: set[tuple] = set()  # shapes whose recording failed: run as they are
        self._pool = torch.cuda.graph_pool_handle()
        self._buffers: dict[str, torch.Tensor] = {}

    def __call__(self, source: torch.Tensor, frame_padding: torch.Tensor | None) -> torch.Tensor:
        key = (tuple(source.shape), None if frame_padding is None else tuple(frame_padding.shape))
        if key in self._eager:
            return self._forward(source, frame_padding)
        # The streams, the pool and the graph belong to the current device: make it the input's.
        with torch.cuda.device(source.device):
            recorded = self._recorded.get(key)
            if recorded is None:
                try:
                    recorded = self._record(key, source, frame_padding)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                    # Not again on every batch of this shape: it runs eagerly from now on.
                    log.warning("CUDA graph for batch shape %s not recorded (%s); running it eagerly", key, exc)
                    self._eager.add(key)
                    return self._forward(source, frame_padding)
            recorded.source.copy_(source)
            if frame_padding is not None and recorded.frame_padding is not None:
                recorded.frame_padding.copy_(frame_padding)
            recorded.graph.replay()
            return recorded.output

    def _record(self, key: tuple, source: torch.Tensor, frame_padding: torch.Tensor | None) -> _Recorded:
        static_source = self._view("source", source)
        static_source.copy_(source)
        static_padding = None
        if frame_padding is not None:
            static_padding = self._view("frame_padding", frame_padding)
            static_padding.copy_(frame_padding)
        # A first pass outside the graph, on a side stream as recording
        # requires: it makes the lazy per-shape state (cuBLAS workspaces,
        # attention kernel choice, the ALiBi slopes) and tells the output's shape.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            warm = self._forward(static_source, static_padding)
        torch.cuda.current_stream().wait_stream(side)
        output = self._view("output", warm)
        del warm
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output.copy_(self._forward(static_source, static_padding))
        recorded = _Recorded(graph, static_source, static_padding, output)
        self._recorded[key] = recorded
        return recorded

    def _view(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A view shaped like ``like`` at the start of the shared buffer
        ``name``. A buffer that must grow is replaced, and the graphs
        recorded on the old one are dropped (the first batches only: the
        buffers soon reach the largest shape)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < like.numel() or buffer.dtype != like.dtype:
            if buffer is not None:
                self._recorded.clear()
            self._buffers[name] = buffer = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return buffer[: like.numel()].view(like.shape)
