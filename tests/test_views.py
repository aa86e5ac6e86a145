"""Views: each returns the right object and shows what the model state says; none mutates it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pyfolio import KiB, MiB, System  # noqa: E402
from pyfolio.views import region_cells, region_strip  # noqa: E402
from pyfolio.views._style import STATE_COLORS, folio_color  # noqa: E402

MEM_FIELDS = ("flags", "_refcount", "_mapcount", "compound_head", "order", "_entire_mapcount",
              "_large_mapcount", "_nr_pages_mapped", "_pincount", "mapping", "stamp")


def memstate(m: System) -> dict[str, np.ndarray]:
    """A copy of every memmap array and page table, to prove a view changed nothing."""
    mm = m.machine
    out = {f: getattr(mm.mem, f).copy() for f in MEM_FIELDS}
    out.update({f"pt{k}": v.copy() for k, v in mm.pgtables.items()})
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@pytest.fixture
def thp() -> tuple[System, object, int]:
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    return m, p, a


def image(fig: Figure) -> np.ndarray:
    return np.asarray(fig.axes[0].images[0].get_array())


def test_region_strip_pmd_thp_is_one_folio_colour(thp):
    m, p, a = thp
    fig = region_strip(p, a, 2 * MiB)
    img = image(fig)
    assert img.shape == (16, 32, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours == {folio_color(0, 9)}
    assert "PMD leaf" in " ".join(t.get_text() for t in fig.axes[0].texts)
    assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0) and fig.get_facecolor()[3] == 1.0
    c = region_cells(p, a, 2 * MiB)
    assert c.states() == ["pmd"] * 512 and set(c.head) == {p.folio_at(a).pfn}
    fig.clf()


def test_region_strip_after_mprotect_split(thp):
    m, p, a = thp
    p.touch(a + 2 * MiB + 8 * KiB, 12 * KiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    c = region_cells(p, a, 4 * MiB)
    assert c.pmd_kind == ("table", "table")
    s = c.states()
    assert s[:512] == ["pte"] * 512
    assert s[512:514] == ["none"] * 2 and s[514:517] == ["pte"] * 3 and s[517:] == ["none"] * 507
    fig = region_strip(p, a, 4 * MiB)
    img = image(fig)
    assert img.shape == (16, 65, 3)  # two blocks side by side, one blank column between
    assert tuple(img[0, 33 + 2]) == folio_color(0, 0)
    assert tuple(img[0, 33 + 0]) == STATE_COLORS["none"]
    assert len(fig.axes[0].collections) >= 1  # the PTE grid


def test_region_strip_unaligned_and_holes(thp):
    m, p, a = thp
    p.munmap(a + 3 * MiB, 1 * MiB)
    c = region_cells(p, a + 1 * MiB, 3 * MiB)
    assert c.start == a and len(c.pmd_kind) == 2
    assert c.states()[:256] == ["pmd"] * 256
    assert c.states()[-256:] == ["novma"] * 256


def test_region_strip_aggregated_1gib():
    m = System(ram="1G", thp="always", seed=0)
    p = m.spawn()
    a = p.mmap(1024 * MiB)
    p.touch(a, 64 * MiB)
    before = memstate(m)
    fig = region_strip(p, a, 1024 * MiB)
    img = image(fig)
    assert img.shape == (16, 32, 3)
    flat = img.reshape(-1, 3)
    assert all(tuple(x) == STATE_COLORS["pmd"] for x in flat[:32])
    assert all(tuple(x) == STATE_COLORS["none"] for x in flat[32:])
    assert_same(before, memstate(m))
