import sys

import numpy as np
import pytest

from bayescellseg import malloc


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(malloc.ENV_VAR, "default")
    assert malloc.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_allocator_still_allocates_and_frees_large_blocks(monkeypatch):
    monkeypatch.delenv(malloc.ENV_VAR, raising=False)
    assert malloc.keep_freed_memory() is True
    for _ in range(3):  # 64 MiB blocks, above glibc's largest mmap threshold
        block = np.ones(16 * 1024 * 1024, dtype=np.float32)
        assert float(block[::4096].sum()) == 4096.0
        del block
