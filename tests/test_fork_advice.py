"""MADV_DONTFORK and MADV_WIPEONFORK, and the RSS counters fork gives the child.

Expected values: research notes device_api §M3 (rss.c on Linux 6.18.44, five runs; the
kernel numbers there carry ~104 kB of the C program's own pages, which a simulated process
does not have).
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import EINVAL, MmError, SegmentationFault


def _three_thps(m: System) -> tuple[object, int, int, int]:
    p = m.spawn()
    out = []
    for _ in range(3):
        a = p.mmap(2 * MiB)
        p.madvise(a, 2 * MiB, "hugepage")
        p.touch(a, 2 * MiB)
        out.append(a)
    return (p, *out)  # type: ignore[return-value]


def test_dontfork_and_wipeonfork_as_measured() -> None:
    # M3: a split and 10 pages dropped (502 pages left), b DONTFORK, c WIPEONFORK; fork:
    # parent 6208 - 104 kB, child 2112 - 104 kB (a's 502 pages only); the child reads c:
    # the huge zero page, RssAnon unchanged; writes c: +2048; touches b: SIGSEGV
    m = System(ram="64M")
    p, a, b, c = _three_thps(m)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    p.madvise(a, 40 * KiB, "dontneed")
    m.drop_caches()
    assert p.status()["RssAnon"] == 2008 + 4096
    p.madvise(b, 2 * MiB, "dontfork")
    p.madvise(c, 2 * MiB, "wipeonfork")
    assert p.vma_at(b).vm_flags & VM.DONTCOPY and p.vma_at(c).vm_flags & VM.WIPEONFORK
    child = p.fork()
    assert p.status()["RssAnon"] == 2008 + 4096
    assert child.status()["RssAnon"] == 2008
    assert child.vma_at(b) is None and child.vma_at(c) is not None
    assert child.vma_at(c).anon_vma is None  # "a clean slate": no anon_vma until a fault
    assert child.read(c) == 0 and child.lookup(c).kind == "zero"  # the huge zero page
    assert child.status()["RssAnon"] == 2008
    child.touch(c, 2 * MiB)
    assert child.status()["RssAnon"] == 2008 + 2048
    assert child.read(a + 8 * KiB) == p.read(a + 8 * KiB)
    with pytest.raises(SegmentationFault):
        child.read(b)
    assert m.check() == []
    child.exit()
    p.munmap(a, 2 * MiB)
    assert p.status()["RssAnon"] == 4096
    p.exit()
    assert m.check() == []


def test_dofork_and_keeponfork_undo() -> None:
    m = System(ram="64M")
    p, a, b, c = _three_thps(m)
    p.madvise(b, 2 * MiB, "dontfork")
    p.madvise(c, 2 * MiB, "wipeonfork")
    p.madvise(b, 2 * MiB, "dofork")
    p.madvise(c, 2 * MiB, "keeponfork")
    child = p.fork()
    assert child.status()["RssAnon"] == 3 * 2048
    assert child.read(c) == p.read(c) != 0
    assert m.check() == []


def test_dontfork_on_part_of_a_thp_splits_the_vma_and_the_pmd() -> None:
    m = System(ram="64M")
    p, a, _, _ = _three_thps(m)
    p.madvise(a + 1 * MiB, 1 * MiB, "dontfork")  # madvise_update_vma(): __split_vma()
    assert m.vmstat()["thp_split_pmd"] == 1 and len(p.mm.vmas_between(a, a + 2 * MiB)) == 2
    child = p.fork()
    assert child.status()["RssAnon"] == 1024 + 2 * 2048
    assert child.vma_at(a + 1 * MiB) is None
    assert m.check() == []


def test_bad_advice_is_einval_and_changes_nothing() -> None:
    m = System(ram="64M")
    p, a, _, _ = _three_thps(m)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        p.madvise(a, 2 * MiB, "dontforkk")
    assert err.value.errno == EINVAL and snapshot(m.machine) == before
