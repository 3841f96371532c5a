"""numpy's BLAS on one thread while extracting.

OpenBLAS (numpy's BLAS) keeps a thread per core and lets them spin for a while after every
call. Extraction's matrix products are small (mel filterbanks, Whisper's log-mel, pooling), so
those threads mostly spin: ~4 % of a 20-clip backfill's CPU (perf), taken from the recogniser
and the landmarker running beside them. One thread gives the same numbers (OpenBLAS splits a
product by output blocks, never a sum), so the features are unchanged, bit for bit.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> None:
    """Limit every BLAS library loaded so far to one thread (cheap: call it per video, so a BLAS
    loaded since the last call is limited too)."""
    threadpool_limits(limits=1, user_api="blas")
