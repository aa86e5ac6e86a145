"""debugfs split_huge_pages, file form (mm/huge_memory.c:split_huge_pages_write() and
split_huge_pages_in_file(), v6.18): read in the source; this machine's kernel refuses
debugfs (lockdown), so these are the source's rules, not measurements."""

from __future__ import annotations

import pytest

from pyfolio import MiB, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError
from pyfolio.views.page_cache import cache_notation


def disk_file(size: int = 4 * MiB, clean: bool = True) -> tuple[System, object, int]:
    m = System(ram="64M", seed=0)
    p = m.spawn()
    fd = p.open("/data/s")
    p.pwrite(fd, 0, size, 1)
    if clean:
        p.fsync(fd)
    return m, p, fd


@pytest.mark.parametrize(("text", "after"), [
    ("/data/s,0x0,0x400", "0x1024"),  # uniform to order 0, both folios
    ("/data/s,0x0,0x200", "0x512 9"),  # only the folio holding pages of [0, 0x200)
    ("/data/s,0x0,0x400,3", "3x128"),
    ("/data/s,0x0,0x400,0,200", "7 6 3 0x2 1 2 4 5 8 7 6 3 0x2 1 2 4 5 8"),
    ("/data/s,0x200,0x201,1,3", "9 1x2 2 3 4 5 6 7 8"),  # order 1: a file folio may be
    ("/data/s,0x1ff,0x200", "0x512 9"),  # the folio holding page 0x1ff: the one at 0
    ("/data/s,0x0,0x400,9", "9x2"),  # nothing above the target: skipped
    ("/data/s,0x0,0x400,0,512\n", "0x1024"),  # offset outside the folio: uniform
])
def test_the_file_form_splits_the_folios_of_the_range(text: str, after: str) -> None:
    m, p, fd = disk_file()
    assert m.split_huge_pages(text) == len(text)
    assert cache_notation(p.page_cache(fd), 1024) == after
    assert m.check() == []


def test_counters_and_a_dirty_folio_that_refuses() -> None:
    m, p, fd = disk_file(2 * MiB, clean=False)
    assert m.split_huge_pages("/data/s,0x0,0x200") == 17  # the write succeeds...
    assert p.page_cache(fd) == [(0, 9)]  # ... the split did not
    assert m.vmstat()["thp_split_page_failed"] == 1
    p.fsync(fd)
    m.split_huge_pages("/data/s,0x0,0x200")
    assert m.vmstat()["thp_split_page"] == 1 and m.mthp_stats("2048kB")["split"] == 1
    assert m.check() == []


def test_a_mapped_folio_is_unmapped_and_refaults_small() -> None:
    m, p, fd = disk_file(2 * MiB)
    a = p.mmap(2 * MiB, "r", shared=True, fd=fd)
    p.read(a)
    assert p.lookup(a).level == "pmd"
    m.split_huge_pages("/data/s,0x0,0x200")
    assert p.lookup(a).kind == "none"  # file folios are not remapped
    assert p.read(a) == 1 and p.lookup(a).level == "pte" and m.check() == []


@pytest.mark.parametrize("text", [
    "/data/s", "/data/s,0x0", "/data/s,10,20", "/nope,0x0,0x10", "1,0x0,0x200,0",
    "data/s,0x0,0x200",
])
def test_bad_input_is_einval_and_changes_nothing(text: str) -> None:
    m, _, _ = disk_file(2 * MiB)
    before = snapshot(m.machine)
    with pytest.raises(MmError, match="EINVAL"):
        m.split_huge_pages(text)
    assert snapshot(m.machine) == before
    with pytest.raises(TypeError):
        m.split_huge_pages(b"/data/s,0x0,0x200")  # type: ignore[arg-type]
