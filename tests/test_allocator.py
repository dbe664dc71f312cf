"""The allocator setting takes effect: a large freed block is reused from the heap instead of re-mapped."""
import subprocess
import sys
import textwrap

import pytest

from cpt_utils import allocator

LIBC = allocator._glibc()
needs_glibc = pytest.mark.skipif(LIBC is None or not hasattr(LIBC, "mallinfo2"),
                                 reason="glibc's malloc only (mallinfo2: glibc ≥ 2.33)")

# in a fresh interpreter: where a 64 MiB tensor's memory comes from, before and after keep_freed_memory()
PROBE = textwrap.dedent("""
    import ctypes, json, torch
    from cpt_utils import allocator

    class Info(ctypes.Structure):  # glibc's struct mallinfo2
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = allocator._glibc()
    libc.mallinfo2.restype = Info

    def mapped_while_alive() -> int:
        t = torch.empty(64 << 20, dtype=torch.uint8)
        mapped = libc.mallinfo2().hblkhd  # bytes in mmapped blocks, this tensor's included if mmapped
        del t
        return mapped

    before = mapped_while_alive()
    applied = allocator.keep_freed_memory()
    after = mapped_while_alive()
    print(json.dumps({"before": before, "after": after, "applied": applied}))
""")


def _probe(env_extra: dict) -> dict:
    import json
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_large_blocks_come_from_the_heap_once_tuned():
    seen = _probe({allocator.OPT_OUT: ""})
    assert seen["applied"] is True
    assert seen["before"] >= 64 << 20  # glibc's default: a 64 MiB block is its own mmap
    assert seen["after"] < 64 << 20  # tuned: it lives in the heap, whose freed pages are kept


@needs_glibc
def test_opt_out_leaves_glibc_alone():
    seen = _probe({allocator.OPT_OUT: "off"})
    assert seen["applied"] is False
    assert seen["after"] >= 64 << 20


def test_applied_once_per_process(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.OPT_OUT, "off")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv(allocator.OPT_OUT)
    assert allocator.keep_freed_memory() is False  # decided once: the process's first call holds
