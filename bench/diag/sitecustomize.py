"""Diagnostics for ``bench.run --diag`` only: logs every cyclic-GC pause above a threshold to stderr.

Put on the servers' PYTHONPATH by the benchmark; it changes nothing else in the process.
"""

import gc
import os
import sys
import time

_THRESHOLD = float(os.environ.get("BENCH_GC_LOG_MS", "5")) / 1000
_started = [0.0]


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    pause = time.perf_counter() - _started[0]
    if pause >= _THRESHOLD:
        sys.stderr.write(
            f"BENCH-GC pid={os.getpid()} gen={info.get('generation')} ms={pause * 1000:.1f} "
            f"collected={info.get('collected')} at={time.time():.3f}\n"
        )


gc.callbacks.append(_on_gc)
