"""Views: each returns the right object and shows what the model state says; none mutates it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pyfolio import KiB, MiB, System  # noqa: E402
from pyfolio.views import (  # noqa: E402
    animate,
    before_after,
    count_panel,
    count_timeline,
    draw_cells,
    draw_frames,
    draw_pagetable,
    draw_rmap,
    draw_step,
    entry_bits,
    entry_fields,
    folio_strip,
    frame_cells,
    pagetable_graph,
    record,
    record_events,
    region_cells,
    region_strip,
    rmap_graph,
    stack,
)
from pyfolio.views._style import STATE_COLORS, order_color  # noqa: E402

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
    p, a = m.spawn_with_thp(4 * MiB)
    return m, p, a


def image(fig: Figure) -> np.ndarray:
    return np.asarray(fig.axes[0].images[0].get_array())


def test_region_strip_pmd_thp_is_one_folio_colour(thp):
    m, p, a = thp
    fig = region_strip(p, a, 2 * MiB)
    img = image(fig)
    assert img.shape == (16, 32, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours == {order_color(9)}
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
    assert np.flatnonzero(c.readonly).tolist() == [1]  # the mprotected page
    s = c.states()
    assert s[:512] == ["pte"] * 512
    assert s[512:514] == ["none"] * 2 and s[514:517] == ["pte"] * 3 and s[517:] == ["none"] * 507
    fig = region_strip(p, a, 4 * MiB)
    img = image(fig)
    assert img.shape == (16, 65, 3)  # two blocks side by side, one blank column between
    assert tuple(img[0, 33 + 2]) == order_color(0)
    assert tuple(img[0, 33 + 0]) == STATE_COLORS["none"]
    # the PTE grid: 15 + 31 white lines inside each of the two PTE-table blocks
    assert len(fig.axes[0].collections[0].get_segments()) == 2 * (15 + 31)


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


def texts(fig: Figure) -> str:
    out = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    out.append(fig.get_suptitle())
    return "\n".join(out)


def test_folio_strip_after_non_uniform_split(thp):
    from pyfolio.mm.huge_memory_split import split_mapped_folio

    m, p, a = thp
    f = p.folio_at(a)
    fig = folio_strip(f)
    assert {tuple(c) for c in image(fig).reshape(-1, 3)} == {tuple(image(fig)[0, 0])}
    split_mapped_folio(m.machine, f.pfn, 0, uniform=False, at=300)
    c = frame_cells(m.machine, range(f.pfn, f.pfn + 512))
    heads = sorted(set(int(h) for h in c.head))
    assert heads[0] == f.pfn and f.pfn + 300 in heads and len(heads) > 2
    assert [int(c.order[h - f.pfn]) for h in heads] == [p.folio_at(a + (h - f.pfn) * 4 * KiB).order
                                                        for h in heads]
    fig = folio_strip(m, range(f.pfn, f.pfn + 512))
    assert len({tuple(x) for x in image(fig).reshape(-1, 3)}) == len(set(c.order.tolist()))
    assert len(fig.axes[0].lines[0].get_xdata()) == len(heads)  # one head mark per folio


def test_folio_strip_free_and_tables():
    m = System(ram="64M", seed=0)
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 8 * KiB)
    c = frame_cells(m.machine, range(0, 64))
    assert "table" in c.kind and "free" in c.kind and "folio" in c.kind
    assert c.kind[p.pfn_at(a)] == "folio" and c.mapcount[p.pfn_at(a)] == 1


def test_pagetable_graph_pmd_leaf_vs_pte_table(thp):
    m, p, a = thp
    g = pagetable_graph(p, a + 5 * 4 * KiB)
    assert list(g.edges) == [("pgd", "pud"), ("pud", "pmd"), ("pmd", "folio")]
    assert g.nodes["pmd"]["kind"] == "huge" and g.nodes["folio"]["pfn"] == p.folio_at(a).pfn + 5
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    g = pagetable_graph(p, a + 5 * 4 * KiB)
    assert list(g.edges) == [("pgd", "pud"), ("pud", "pmd"), ("pmd", "pte"), ("pte", "folio")]
    assert g.nodes["pmd"]["kind"] == "table" and g.nodes["pte"]["index"] == 5
    assert g.edges["pte", "folio"]["index"] == 5
    fig = draw_pagetable(p, a + 5 * 4 * KiB)
    t = texts(fig)
    assert "PTE table" in t and "PTE index (20..12)\n= 5" in t


def test_pagetable_graph_unmapped_has_no_folio(thp):
    m, p, a = thp
    g = pagetable_graph(p, a + 2 * MiB)
    assert "folio" not in g and g.nodes["pmd"]["kind"] == "none"


def test_entry_bits_pfn_and_flags(thp):
    m, p, a = thp
    e = p.lookup(a)
    t = texts(entry_bits(e))
    assert f"{p.folio_at(a).pfn:#x}" in t
    bits = {name: val for name, _, _, val in entry_fields(e)}
    # a written PMD leaf: present, writable, user, young, dirty (with soft-dirty), huge, NX
    assert [bits[k] for k in ("P", "RW", "U", "A", "D", "SD", "PSE", "NX", "SV")] == \
        ["1", "1", "1", "1", "1", "1", "1", "1", "0"]
    p.write(a + 2 * MiB, 1)  # a 4 KiB PTE: bit 7 is PAT there, not PSE
    names = [name for name, *_ in entry_fields(p.lookup(a + 2 * MiB))]
    assert "PAT" in names and "PSE" not in names


def test_entry_bits_migration_entry():
    from pyfolio.include.linux.swapops import make_writable_migration_entry

    t = texts(entry_bits(make_writable_migration_entry(0x1234)))
    assert "SWP_MIGRATION_WRITE" in t and "PFN 0x1234" in t and "PFN\n" not in t


def scenario(m, p, a):
    box = {}
    return [("touch", lambda: p.touch(a, 2 * MiB)),
            ("fork", lambda: box.setdefault("c", p.fork())),
            ("mprotect", lambda: p.mprotect(a + 4 * KiB, 4 * KiB, "r")),
            ("bad munmap", lambda: p.munmap(a + 1, 4 * KiB)),
            ("child exit", lambda: box["c"].exit())]


def test_record_and_count_timeline():
    m = System(ram="64M", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    frames = record(m, scenario(m, p, a), proc=p, addr=a)
    assert [f.label for f in frames] == ["start", "touch", "fork", "mprotect", "bad munmap",
                                         "child exit"]
    c = [f.counts for f in frames]
    assert c[0] is None and (c[1].refcount, c[1].mapcount, c[1].entire_mapcount) == (1, 1, 1)
    assert (c[2].refcount, c[2].entire_mapcount) == (2, 2)
    assert (c[3].mapcount, c[3].entire_mapcount) == (513, 1)
    assert frames[4].error and "EINVAL" in frames[4].error and c[4] == c[3]
    assert (c[5].refcount, c[5].mapcount, c[5].entire_mapcount) == (512, 512, 0)
    assert "split_huge_pmd" in frames[3].why() and frames[3].pmd_kind == "table"
    fig = count_timeline(frames)
    t = texts(fig)
    assert "3 mprotect: " in t and "split_huge_pmd" in t and "4 bad munmap" not in t
    assert m.check() == []


def test_count_panel_shows_counts(thp):
    m, p, a = thp
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    fig = count_panel(p.folio_at(a))
    bars = [r.get_width() for r in fig.axes[0].patches]
    assert bars == [512, 512, 0, 512, 0]
    assert "512x1" in fig.axes[1].get_title()


def test_rmap_graph_after_fork_and_split(thp):
    m, p, a = thp
    c = p.fork()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    g = rmap_graph(p.folio_at(a))
    maps = {n: d for n, d in g.nodes(data=True) if d["role"] == "mapping"}
    assert {d["level"] for d in maps.values() if d["mm_id"] == c.mm.id} == {"pmd"}
    assert sum(d["nr"] for d in maps.values() if d["mm_id"] == p.mm.id) == 512
    assert g.degree["folio"] == len(maps)
    assert "PMD (whole folio)" in texts(draw_rmap(p.folio_at(a)))


def test_animate_and_before_after():
    m = System(ram="64M", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    frames = record(m, scenario(m, p, a)[:3], proc=p, addr=a)
    html = animate(frames, lambda f: draw_cells(f.cells, title=f.label))
    assert "<script" in html.data and "anim" in html.data.lower()
    assert html.data.count("data:image/png;base64") == len(frames)
    fig = before_after(frames[1], frames[3], lambda f: draw_cells(f.cells))
    assert len(fig.axes) == 2 and "before: touch" in texts(fig)


def test_views_never_mutate(thp):
    m, p, a = thp
    c = p.fork()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    f = p.folio_at(a)
    before = memstate(m)
    trace_len, vm = len(m.trace), m.vmstat()
    for view in (lambda: region_strip(p, a, 4 * MiB), lambda: folio_strip(f),
                 lambda: draw_pagetable(p, a), lambda: entry_bits(p.lookup(a)),
                 lambda: count_panel(f), lambda: draw_rmap(f), lambda: rmap_graph(f),
                 lambda: pagetable_graph(p, a)):
        view()
        assert_same(before, memstate(m))
    assert len(m.trace) == trace_len and m.vmstat() == vm
    assert c.alive and m.check() == []


SPLIT_STEPS = ("unmap_folio", "folio_ref_freeze", "__split_unmapped_folio",
               "folio_ref_unfreeze", "remap_page")


def test_record_events_inside_a_split(thp):
    from pyfolio.mm.huge_memory_split import split_mapped_folio

    m, p, a = thp
    head = p.folio_at(a).pfn
    frames = record_events(m, lambda: split_mapped_folio(m.machine, head, 0, uniform=False,
                                                         at=257),
                           SPLIT_STEPS, proc=p, addr=a, pfn=head, pfns=range(head, head + 512))
    assert [f.label for f in frames] == ["start", *SPLIT_STEPS, "end"]
    st = {f.label: f for f in frames}
    assert st["start"].counts.order == 9 and st["start"].pmd_kind == "huge"
    assert set(st["unmap_folio"].cells.states()) == {"migration"}
    assert st["unmap_folio"].counts.mapcount == 0
    assert st["folio_ref_freeze"].counts.refcount == 0
    # frozen mid-split: the memmap still shows the folio, not free frames
    assert set(st["folio_ref_freeze"].frames.kind) == {"folio"}
    assert st["folio_ref_freeze"].counts.order == 9
    assert st["__split_unmapped_folio"].counts.order == 8
    assert st["folio_ref_unfreeze"].counts.refcount == 1
    assert set(st["remap_page"].cells.states()) == {"pte"}
    assert [e.name for e in st["end"].events] == ["__folio_split"]
    assert "emit" not in vars(m.trace)  # the observer is gone
    assert m.check() == []


def test_record_events_error_is_recorded(thp):
    m, p, a = thp
    frames = record_events(m, lambda: p.munmap(a + 1, 4 * KiB), ("split_huge_pmd",),
                           proc=p, addr=a)
    assert [f.label for f in frames] == ["start", "end"] and "EINVAL" in frames[-1].error
    assert "emit" not in vars(m.trace)


def test_draw_frames_and_stack(thp):
    m, p, a = thp
    f = p.folio_at(a)
    c = frame_cells(m.machine, range(f.pfn, f.pfn + 512))
    fig = draw_frames(c, title="x")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["order 9 (1 folio)"]
    assert fig.get_suptitle() == "x"
    both = stack(draw_cells(region_cells(p, a, 2 * MiB)), draw_frames(c))
    img = np.asarray(both.axes[0].images[0].get_array())
    # both pictures, one above the other, blank margins cut: shorter than the two figures
    assert img.shape[0] < 100 * (draw_cells(region_cells(p, a, 2 * MiB)).get_size_inches()[1]
                                 + draw_frames(c).get_size_inches()[1])
    assert img.shape[1] <= 700  # as wide as the wider of the two, within the page


def test_draw_step_titles_counts_and_errors(thp):
    from pyfolio.mm.huge_memory_split import split_mapped_folio

    m, p, a = thp
    head = p.folio_at(a).pfn
    frames = record_events(m, lambda: split_mapped_folio(m.machine, head, 0),
                           ("folio_ref_freeze",), proc=p, addr=a, pfn=head,
                           pfns=range(head, head + 512))
    fig = draw_step(frames[1])
    assert len(fig.axes) == 1 and fig.axes[0].images  # region above memmap, one picture
    only_cells = record(m, [("bad", lambda: p.munmap(a + 1, 4 * KiB))], proc=p, addr=a)
    t = texts(draw_step(only_cells[1]))
    assert "page tables after bad" in t and "error:" in t and "EINVAL" in t


def test_folio_strip_free_buddy_blocks():
    from pyfolio.mm.page_alloc import alloc_pages

    m = System(ram="16M", seed=0)
    x, y = alloc_pages(m.machine, 0), alloc_pages(m.machine, 0)
    c = frame_cells(m.machine, range(0, 64))
    assert (x, y) == (1, 2) and c.kind[3] == "free"
    assert (c.free_head[3], c.free_order[3]) == (3, 0)
    assert set(c.free_order[4:8]) == {2} and set(c.free_head[32:64]) == {32}
    assert c.free_head[1] == -1
    mid = frame_cells(m.machine, range(40, 48))  # inside the order-5 block at 32
    assert set(mid.free_head) == {32} and set(mid.free_order) == {5}
    fig = folio_strip(m, range(0, 64))
    assert {"o0", "o2", "o5"} <= set(texts(fig).split())


def test_folio_strip_key_names_free_device_frames():
    from pyfolio.views.folio_strip import frame_cells, legend_entries

    m = System(ram="16M", device="4M")
    base = m.machine.device_base
    labels = [lbl for _, lbl in legend_entries(frame_cells(m.machine, range(base, base + 512)))]
    assert labels == ["device-private, free (the driver's)"]
