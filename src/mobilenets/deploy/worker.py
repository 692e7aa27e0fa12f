"""A runtime in a process of its own, timed on request: what ``--runtime auto`` measures
(:func:`mobilenets.deploy.runtime_choice.measure_isolated`). Not a user command.

    python -m mobilenets.deploy.worker RUNTIME SOURCE THREADS

reads JSON requests from stdin, one per line, and answers each with one JSON line on stdout:
``{"cmd": "ready"}`` once the session is open; ``{"cmd": "time", "shape": [N, C, H, W], "seconds": s}``
with the median latency (ms) of ``session.run`` on a batch bound to the runtime (``session.bind``), or
with ``"raw": true`` of the runtime's own call (``session.raw``), sent after this process's threads have
gone idle (so that the next runtime is timed alone).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from functools import partial

import numpy as np

from ..utils.quiet import quiet_native_output
from ..utils.timing import time_fn
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
        if request["cmd"] == "time":
            x = np.random.default_rng(0).standard_normal(request["shape"]).astype(np.float32)
            if request.get("raw"):
                call = session.raw(x)
            else:
                call = partial(session.run, session.bind(x), session.layout)
            times = time_fn(call, warmup=3, iters=5, min_seconds=float(request["seconds"]))
            reply["median_ms"] = statistics.median(times) * 1e3
            reply["idle"] = wait_idle()
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
