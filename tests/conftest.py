"""Fixtures for the tests that assert a measured magnitude of a real run (docs/reliability.md,
"Measured magnitudes"): they pin what cnnbench does not decide, so the figure is cnnbench's.

Two inputs of a worker's memory figures are not cnnbench's and used to vary between runs:

- the count cache (`$CNNBENCH_CACHE_DIR`, by default `~/.cache/cnnbench`, shared with every other
  cnnbench run on the machine). A worker that misses it traces the model with fvcore *before*
  the memory baseline: the library code the first call needs is then already mapped, and the
  allocator holds what the trace freed. `tiny` grew 4.14 MiB with a warm cache and 0 with a cold
  one; which one a test got depended on what other runs had left there.
- the allocator. glibc's malloc decides from its allocation history whether an activation is
  served from the heap or from fresh pages (docs/processes.md); jemalloc purges freed pages on a
  timer, so its RSS depends on how long the run took.
"""

from __future__ import annotations

import pytest

# jemalloc without its time-based purging: the resident set is then a function of the allocation
# sequence alone, not of how fast the machine ran it.
JEMALLOC_NO_DECAY = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


@pytest.fixture(scope="session")
def _session_count_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("count-cache")


@pytest.fixture
def warm_counts(_session_count_cache, monkeypatch):
    """This pytest session's own count cache, filled before any worker starts: `warm_counts(spec,
    ...)` counts each case's model there, so every worker the test starts finds its counts cached
    and does the same work before its memory baseline, whatever other runs do to the shared
    ~/.cache/cnnbench meanwhile (a model counted by an earlier test is a cache hit)."""
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(_session_count_cache))

    def warm(*specs, paths=()):
        from cnnbench.measure.counting import counts_for

        for p in paths:
            monkeypatch.syspath_prepend(str(p))
        for spec in specs:
            counts_for(spec)

    return warm


@pytest.fixture
def jemalloc_workers(monkeypatch):
    """Workers (and worker servers) started in this test preload jemalloc with decay off, the way
    `--allocator jemalloc` does (so the worker refuses to measure if it did not load), plus
    MALLOC_CONF. Skipped where libjemalloc2 is missing (.ci/run installs it)."""
    from cnnbench.core import allocator

    if allocator.find_library("jemalloc") is None:
        pytest.skip("libjemalloc2 is not installed (.ci/run installs it)")
    for key, value in allocator.worker_env("jemalloc").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MALLOC_CONF", JEMALLOC_NO_DECAY)
