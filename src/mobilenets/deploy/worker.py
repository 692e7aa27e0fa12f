"""A runtime in a process of its own, timed on request: what ``--runtime auto`` measures
(:func:`mobilenets.deploy.runtime_choice.measure_isolated`). Not a user command.

    python -m mobilenets.deploy.worker RUNTIME SOURCE THREADS

reads JSON requests from stdin, one per line, and answers each with one JSON line on stdout:
``{"cmd": "ready"}`` once the session is open; ``{"cmd": "time", "shape": [N, C, H, W], "seconds": s}``
with the median latency (ms) of ``session.run`` on a batch bound to the runtime (``session.bind``), or
with ``"raw": true`` of the runtime's own call (``session.raw``), sent after this process's threads have
gone idle (so that the next runtime is timed alone); ``{"cmd": "pairs", "shape": ..., "seconds": s}``
with ``pairs_ms``, ``[session, raw]`` medians of short alternating blocks of both
(:func:`~mobilenets.utils.timing.time_pairs`: what ``benchmarks/runtime_overhead.py`` compares).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from functools import partial

import numpy as np

from ..utils.quiet import quiet_native_output
from ..utils.timing import time_fn, time_pairs
from .runtime_choice import open_session, wait_idle


def main(argv: list[str]) -> None:
    runtime, source, threads = argv[0], argv[1], int(argv[2])
    replies = os.fdopen(os.dup(1), "w")  # the answers' own channel: a native library may print on fd 1
    os.dup2(2, 1)
    with quiet_native_output():
        session = open_session(source, runtime, threads=threads)
    for line in sys.stdin:
        request = json.loads(line)
        reply: dict[str, object] = {"runtime": session.name}
        if request["cmd"] in ("time", "pairs"):
            x = np.random.default_rng(0).standard_normal(request["shape"]).astype(np.float32)
            run = partial(session.run, session.bind(x), session.layout)
            if request["cmd"] == "pairs":
                pairs = time_pairs(run, session.raw(x), float(request["seconds"]))
                reply["pairs_ms"] = [[s * 1e3, r * 1e3] for s, r in pairs]
            else:
                times = time_fn(session.raw(x) if request.get("raw") else run, warmup=3, iters=5,
                                min_seconds=float(request["seconds"]))
                reply["median_ms"] = statistics.median(times) * 1e3
            reply["idle"] = wait_idle()
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
