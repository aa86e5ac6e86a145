"""The claims of chapters/13-large-folios-in-the-page-cache.md, checked through the same
pyfolio calls (and, for the orders, against what Linux 6.18.44 recorded)."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.exercises.ch13_large_folios_in_the_page_cache import thp_file
from pyfolio.include.linux.mm import folio_expected_ref_count
from pyfolio.kernel_lab.compare import RECORDED_FILES, load_recorded, simulate_all, summary
from pyfolio.kernel_lab.file_scenarios import FILE_SCENARIOS
from pyfolio.mm.debug_vm import snapshot
from pyfolio.views.page_cache import (
    cache_notation,
    draw_page_cache,
    page_cache_cells,
    record_page_cache,
)
from pyfolio.widgets.page_cache_explorer import page_cache_explorer

CHAPTER = ROOT / "chapters/13-large-folios-in-the-page-cache.md"


def one_write(policy: str, size: int) -> str:
    s = System(ram="64M", seed=0)
    q = s.spawn()
    if policy == "ext4":
        f = q.open("/data/w")
    else:
        s.set_shmem_thp(policy)
        f = q.memfd_create("w")
    q.pwrite(f, 0, size, 1)
    assert s.check() == []
    return cache_notation(q.page_cache(f), -(-size // (4 * KiB)))


def test_the_page_cache_holds_one_reference_per_page() -> None:
    m, p, fd = thp_file("shmem")
    a = p.mmap(2 * MiB, "r", shared=True, fd=fd)
    p.read(a)
    folio = p.folio_at(a)
    assert folio is not None and p.lookup(a).level == "pmd"
    assert (folio.refcount, folio.mapcount, folio_expected_ref_count(folio)) == (513, 1, 513)
    assert m.vmstat()["thp_file_alloc"] == 1 and m.vmstat()["nr_shmem_hugepages"] == 1
    assert m.check() == []


@pytest.mark.parametrize(("policy", "sizes", "measured"), [
    ("never", (8, 12, 64, 1024, 2048, 3072), ["0x2", "0x3", "0x16", "0x256", "0x512", "0x768"]),
    ("always", (8, 12, 64, 1024, 2048, 3072), ["9", "9", "9", "9", "9", "9x2"]),
    ("within_size", (8, 12, 64, 1024, 2048, 3072), ["1", "1 0", "4", "8", "9", "9 8"]),
    ("ext4", (4, 16, 64, 1024, 2048, 8192), ["0", "2", "4", "8", "9", "9x4"]),
])
def test_write_orders_are_the_measured_ones(policy: str, sizes: tuple[int, ...],
                                            measured: list[str]) -> None:
    assert [one_write(policy, k * KiB) for k in sizes] == measured


def test_fork_gives_a_shared_file_mapping_no_page_tables_and_a_pmd_split_clears() -> None:
    m, p, fd = thp_file("shmem")
    a = p.mmap(2 * MiB, "r", shared=True, fd=fd)
    p.read(a)
    folio = p.folio_at(a)
    c = p.fork()
    assert c.lookup(a).kind == "none" and c.status()["RssShmem"] == 0
    c.read(a + 40 * KiB)
    assert c.lookup(a).level == "pmd" and (folio.refcount, folio.mapcount) == (514, 2)
    assert m.kpagecount([folio.pfn]) == [2] and m.vmstat()["thp_file_mapped"] == 2
    c.munmap(a + 4 * KiB, 4 * KiB)
    assert c.lookup(a).kind == "none" and (folio.refcount, folio.mapcount) == (513, 1)
    assert m.vmstat()["thp_split_pmd"] == 1 and not m.machine.deferred_split_queue
    assert p.page_cache(fd) == [(0, 9)] and m.check() == []


def test_a_private_write_copies_one_page_and_leaves_the_file() -> None:
    m, q, fd = thp_file("clean")
    b = q.mmap(2 * MiB, "rw", fd=fd)
    q.read(b)
    assert q.lookup(b).level == "pmd"
    q.write(b + 12 * KiB, 9)
    assert q.lookup(b).kind == "none" and q.lookup(b + 12 * KiB).kind == "page"
    assert q.status()["RssAnon"] == 4 and q.status()["RssFile"] == 0
    assert q.pread(fd, 12 * KiB) == 0x5A and q.page_cache(fd) == [(0, 9)]
    assert m.check() == []


def test_a_hole_at_page_200_is_a_buddy_split_keeping_order_1() -> None:
    m, p, fd = thp_file("shmem")
    mark = m.trace.mark()
    p.fallocate(fd, "punch_hole", 800 * KiB, 4 * KiB)
    events = m.trace.since(mark)
    split = next(e for e in events if e.name == "__split_unmapped_folio")
    assert split.change("orders") == (9, [7, 6, 3, 0, 0, 1, 2, 4, 5, 8])
    assert [e.arg("index") for e in events if e.name == "mm_filemap_delete_from_page_cache"] \
        == [200]
    assert cache_notation(p.page_cache(fd), 512) == "7 6 3 (hole:1) 0 1 2 4 5 8"
    assert m.mthp_stats("2048kB")["split"] == 1 and m.check() == []


def test_the_recorded_kernel_leaves_the_orders_the_simulator_leaves() -> None:
    rec = load_recorded(RECORDED_FILES)
    sim = simulate_all(None, FILE_SCENARIOS)
    counts = summary(sim, rec["observations"])
    assert sum(c["agree"] for c in counts.values()) == sum(
        len(sc.steps) for sc in FILE_SCENARIOS.values()) == 157
    holes = [n for n in FILE_SCENARIOS if "_hole_" in n or "_truncate_" in n]
    assert len(holes) == 17

    def notation(obs: list[dict[str, object]]) -> str:
        cache = obs[-1]["cache"]
        assert isinstance(cache, list)
        return cache_notation([(i, o) for i, o, *_ in cache], 512)

    for n in holes:
        assert notation(rec["observations"][n]) == notation(sim[n]), n
    assert notation(rec["observations"]["clean_hole_257"]) == "8 0 (hole:1) 0x2 2 3 4 5 6 7"
    assert notation(rec["observations"]["shmem_truncate_261"]) == "8 2 0 (hole:251)"


def test_a_dirty_ext4_folio_does_not_split_until_written_back() -> None:
    m, p, fd = thp_file("dirty")
    p.fallocate(fd, "punch_hole", 64 * KiB, 64 * KiB)
    assert p.page_cache(fd) == [(0, 9)] and m.vmstat()["thp_split_page_failed"] == 1
    assert p.pread(fd, 64 * KiB) == 0  # zeroed all the same
    p.fsync(fd)
    p.fallocate(fd, "punch_hole", 64 * KiB, 64 * KiB)
    assert cache_notation(p.page_cache(fd), 512) == "4 (hole:16) 0x2 1 2 3 4 6 7 8"
    assert m.check() == []


def test_the_player_records_each_step() -> None:
    m, p, fd = thp_file("shmem")
    frames = record_page_cache(p, fd, [
        ("punch page 200", lambda: p.fallocate(fd, "punch_hole", 800 * KiB, 4 * KiB)),
        ("truncate to 261 pages", lambda: p.ftruncate(fd, 261 * 4 * KiB)),
    ])
    assert [f.label for f in frames] == [
        "start: 9", "punch page 200: 7 6 3 (hole:1) 0 1 2 4 5 8",
        "truncate to 261 pages: 7 6 3 (hole:1) 0 1 2 4 5 2 0 (hole:251)"]
    assert frames[-1].eof == 261 and frames[0].folios() == [(0, 9)]
    fig = draw_page_cache(frames[-1])
    assert fig.get_figwidth() <= 6.6
    cells = page_cache_cells(p, fd)
    assert (cells.order[261:] == -1).all() and cells.order[200] == -1
    assert m.check() == []


def test_explorer_splits_refuses_bad_values_and_changes_nothing() -> None:
    w = page_cache_explorer()
    w.page.value, w.length.value = "200", "1"
    w.apply_button.click()
    assert w.proc.page_cache(w.fd)[:3] == [(0, 7), (128, 6), (192, 3)]
    before = snapshot(w.system.machine)
    for page, length in (("600", "1"), ("x", "1"), ("500", "20"), ("", "1")):
        w.page.value, w.length.value = page, length
        w.apply_button.click()
        assert snapshot(w.system.machine) == before, (page, length)
        assert "0 to" in w.message.text or "1.." in w.message.text, w.message.text
    w.op.value = "truncate"
    w.page.value = "513"  # growing the file: refused, not clamped
    w.apply_button.click()
    assert "outside" in w.message.text and snapshot(w.system.machine) == before
    w.page.value = "261"
    w.apply_button.click()
    assert w.message.text.startswith("truncate to 261 pages") and w.image.value
    assert w.system.check() == []
    dirty = page_cache_explorer("ext4, dirty")
    dirty.apply_button.click()
    assert "split failed" in dirty.message.text
    assert dirty.proc.page_cache(dirty.fd) == [(0, 9)]
    dirty.fs.value = "ext4, clean"  # a new file of that kind
    dirty.apply_button.click()
    assert len(dirty.proc.page_cache(dirty.fd)) == 9 and dirty.static_figure()


def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    assert (g["ch13_pc_order"], g["ch13_pc_ref"], g["ch13_pc_map"]) == (9, 513, 1)
    assert g["ch13_pc_cache_refs"] == 512 and g["ch13_pc_expected"] == 513
    assert g["ch13_w_always_8k"] == "9" and g["ch13_w_within_12k"] == "1 0"
    assert g["ch13_w_within_3m"] == "9 8" and g["ch13_w_ext4_8m"] == "9x4"
    assert g["ch13_w_never_1m"] == "0x256" and g["ch13_w_ext4_16k"] == "2"
    assert (g["ch13_fork_kind"], g["ch13_fork_ref"], g["ch13_fork_map"]) == ("none", 514, 2)
    assert g["ch13_unmap_ref"] == 513 and g["ch13_fork_mapped"] == 2
    assert (g["ch13_cow_anon"], g["ch13_cow_file"]) == (4, 0)
    assert g["ch13_h200"] == "7 6 3 (hole:1) 0 1 2 4 5 8" and g["ch13_h200_n"] == 9
    assert g["ch13_lab_agree"] == g["ch13_lab_steps"] == 157 and g["ch13_lab_holes"] == 17
    assert str(g["ch13_lab_release"]).startswith("6.18")
    assert g["ch13_h257"] == "8 0 (hole:1) 0x2 2 3 4 5 6 7"
    assert g["ch13_t261"] == "8 2 0 (hole:251)"
    assert str(g["ch13_exp_msg"]).startswith("truncate to 261 pages:") and g["ch13_exp_n"] == 16
    assert g["ch13_nframes"] == 5
    assert (g["ch13_fix_files"], g["ch13_new_added"]) == (1, 0)
    assert g["ch13_dbg"] == "1x2 2 3 4 5 6 7 8 1x2 2 3 4 5 6 7 8"
    assert (g["ch13_knob_linked"], g["ch13_knob_unlinked"]) == (0, 4)


def test_debugfs_file_form_splits_both_folios_and_unmaps() -> None:
    m, p, fd = thp_file("clean", 4 * MiB)
    a = p.mmap(4 * MiB, "r", shared=True, fd=fd)
    p.read(a)
    assert m.split_huge_pages("/data/ch13,0x0,0x400,1,3") == 24
    assert cache_notation(p.page_cache(fd), 1024) == "1x2 2 3 4 5 6 7 8 1x2 2 3 4 5 6 7 8"
    assert p.lookup(a).kind == "none" and m.vmstat()["thp_split_page"] == 2
    assert m.check() == []
