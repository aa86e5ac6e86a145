"""The widgets of chapters 2, 3 and 5 driven headlessly: set values, click, assert the model.

A failing action (ENOMEM, bad input, SIGSEGV) must be a message and leave the machine as it
was (compared with pyfolio.mm.debug_vm.snapshot).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from pyfolio import KiB, MiB  # noqa: E402
from pyfolio.mm.debug_vm import snapshot  # noqa: E402
from pyfolio.mm.page_alloc import buddyinfo, nr_free_pages  # noqa: E402
from pyfolio.sim.units import PMD_SIZE  # noqa: E402
from pyfolio.widgets import buddy_explorer, fault_explorer, folio_inspector  # noqa: E402

# -- chapter 2: the buddy allocator explorer -----------------------------------------------


def test_buddy_explorer_allocates_splits_and_frees_with_merge() -> None:
    w = buddy_explorer()
    M = w.system.machine
    boot = buddyinfo(M)
    assert boot == [1] * 10 + [0] and "0</td>" in w.info.value
    png0 = w.image.value
    w.order.value = 0
    w.alloc_button.click()
    w.alloc_button.click()  # the order-0 list is empty now: the order-1 block at 2 splits
    assert w.blocks == [(1, 0), (2, 0)] and w.block.value == (2, 0)
    assert "PFN 0x2" in w.message.text
    assert buddyinfo(M)[:2] == [1, 0] and w.image.value != png0
    assert "free frames: 1021 of 1024" in w.info.value
    assert w.system.check() == []  # the held blocks are accounted for (extra_refs)
    w.free_button.click()  # the last one: merges with its buddy 0x3 into order 1 at 0x2
    assert "merged" in w.message.text and "order 1 at 0x2" in w.message.text
    assert w.blocks == [(1, 0)] and buddyinfo(M)[:2] == [0, 1]
    w.free_button.click()  # frame 1: its buddy is frame 0, the zero page
    assert "no merge" in w.message.text and buddyinfo(M) == boot
    assert w.block.value is None and w.system.check() == []
    w.free_button.click()  # nothing left to free: a message
    assert "allocate one first" in w.message.text


def test_buddy_explorer_frees_a_chosen_block() -> None:
    w = buddy_explorer()
    for order in (2, 3):
        w.order.value = order
        w.alloc_button.click()
    assert w.blocks == [(4, 2), (8, 3)]
    w.block.value = (4, 2)
    w.free_button.click()
    assert w.blocks == [(8, 3)] and "__free_pages(0x4, order 2)" in w.message.text
    assert w.system.machine.mem.page_type[4] != 0  # back on a free list
    w.block.value = (8, 3)
    w.free_button.click()
    assert buddyinfo(w.system.machine) == [1] * 10 + [0] and w.system.check() == []


def test_buddy_explorer_enomem_changes_nothing_and_defragment_recovers() -> None:
    w = buddy_explorer()
    M = w.system.machine
    w.fragment_button.click()
    assert "2 more frames held" in w.message.text and buddyinfo(M)[9:] == [0, 0]
    before, png = snapshot(M), w.image.value
    w.order.value = 9
    w.alloc_button.click()
    assert "ENOMEM" in w.message.text and w.message.value.startswith("<span style='color:#b00020'")
    assert snapshot(M) == before and w.blocks == [] and w.image.value == png
    w.order.value = 10  # a 4 MiB machine never has an order-10 block
    w.alloc_button.click()
    assert "ENOMEM" in w.message.text and snapshot(M) == before
    w.defragment_button.click()
    assert "2 frames given back" in w.message.text
    w.order.value = 9
    w.alloc_button.click()
    assert w.blocks == [(512, 9)] and nr_free_pages(M) == 1024 - 1 - 512
    w.reset_button.click()
    assert w.blocks == [] and buddyinfo(w.system.machine) == [1] * 10 + [0]
    fig = w.static_figure()
    assert isinstance(fig, Figure) and len(fig.legends) == 1
    assert "buddyinfo" in fig.texts[0].get_text()


# -- chapter 3: the folio inspector --------------------------------------------------------


def test_folio_inspector_shows_the_folio_of_the_chosen_page() -> None:
    w = folio_inspector()
    thp = w.proc.pfn_at(w.starts["THP"])
    assert w.pfn == thp and "page 0 of the order-9 folio" in w.message.text
    assert "COMPOUND_HEAD" in w.flags() and "THP" in w.flags()
    png0 = w.image.value
    w.page.value = 7
    assert w.pfn == thp + 7 and w.folio().pfn == thp  # type: ignore[union-attr]
    assert "COMPOUND_TAIL" in w.flags() and "COMPOUND_HEAD" not in w.flags()
    assert "<td>7 of 512</td>" in w.info.value and w.image.value != png0
    w.mapping.value = "split THP"
    w.page.value = 5
    f = w.folio()
    assert f is not None and (f.order, w.pfn - f.pfn) == (2, 1)
    assert "page 1 of the order-2 folio" in w.message.text
    assert "<td>4</td>" in w.info.value  # nr_pages
    w.mapping.value = "4 KiB pages"
    assert w.page.max == 15
    w.page.value = 15
    f = w.folio()
    assert f is not None and f.order == 0 and f.pfn == w.proc.pfn_at(w.starts["4 KiB pages"]
                                                                     + 15 * 4 * KiB)
    assert not {"THP", "COMPOUND_HEAD", "COMPOUND_TAIL"} & set(w.flags())
    assert "ANON" in w.flags() and w.system.check() == []


def test_folio_inspector_pfn_box_and_bad_input() -> None:
    w = folio_inspector()
    w.pfn_box.value = "0"
    assert w.pfn == 0 and {"ZERO_PAGE", "RESERVED"} <= set(w.flags())
    free = w.system.machine.nr_ram - 1  # the last frame: free
    w.pfn_box.value = hex(free)
    assert w.folio() is None and "holds no folio" in w.message.text
    before, pfn, png = snapshot(w.system.machine), w.pfn, w.image.value
    for bad in ("0x1000000", "page five", "-1"):
        w.pfn_box.value = bad
        assert w.message.value.startswith("<span style='color:#b00020'"), bad
        assert w.pfn == pfn and w.image.value == png
    assert snapshot(w.system.machine) == before
    w.mapping.value = "split THP"
    w.page.value = 300
    w.reset_button.click()
    assert (w.mapping.value, w.page.value, w.pfn_box.value) == ("THP", 0, "")
    assert w.pfn == w.proc.pfn_at(w.starts["THP"])
    fig = w.static_figure()
    assert isinstance(fig, Figure) and any(p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)
                                           for p in fig.axes[0].patches)


# -- chapter 5: the fault explorer ---------------------------------------------------------


def run(w, **controls) -> None:  # type: ignore[no-untyped-def]
    for name, value in controls.items():
        getattr(w, name).value = value
    w.run_button.click()


def test_fault_explorer_policies_and_advice() -> None:
    w = fault_explorer()
    assert w.counters()["thp_fault_alloc"] == 0 and "nothing touched" in w.message.text
    run(w, policy="always", access="write")
    e = w.entry()
    assert (e.level, e.kind) == ("pmd", "huge") and "PMD entry, huge" in w.message.text
    assert w.counters() == {"thp_fault_alloc": 1, "thp_fault_fallback": 0,
                            "thp_zero_page_alloc": 0, "AnonHugePages": 2048}
    assert "do_huge_pmd_anonymous_page" in w.info.value
    run(w, policy="madvise", advise=False)
    assert w.entry().level == "pte" and w.counters()["thp_fault_alloc"] == 0
    run(w, advise=True)
    assert w.entry().level == "pmd" and w.system.thp == "madvise"
    run(w, policy="never")
    assert w.entry().level == "pte" and w.counters()["AnonHugePages"] == 0
    run(w, policy="always", access="read")
    e = w.entry()
    assert (e.level, e.kind) == ("pmd", "zero") and w.counters()["thp_zero_page_alloc"] == 1
    assert w.system.check() == []


def test_fault_explorer_fragmented_and_unaligned() -> None:
    w = fault_explorer()
    run(w, policy="always", fragmented=True, access="write")
    assert w.entry().level == "pte"
    assert (w.counters()["thp_fault_fallback"], w.counters()["thp_fault_alloc"]) == (1, 0)
    assert "thp_fault_fallback" in w.info.value
    run(w, fragmented=False, length="3 MiB")
    assert w.addr % PMD_SIZE and w.size == 3 * MiB and w.entry().level == "pte"
    boundary = (-(-w.addr // PMD_SIZE) * PMD_SIZE - w.addr) // KiB
    run(w, offset=boundary)
    assert w.entry().level == "pmd" and w.counters()["AnonHugePages"] == 2048
    assert "not 2 MiB-aligned" in w.static_figure().texts[0].get_text()
    w.reset_button.click()
    assert (w.policy.value, w.length.value, w.offset.value) == ("madvise", "2 MiB", 0)
    assert w.counters()["thp_fault_alloc"] == 0 and w.system.check() == []


def test_fault_explorer_sigsegv_keeps_the_previous_run() -> None:
    w = fault_explorer()
    run(w, policy="always")
    kept, before, png = w.system, snapshot(w.system.machine), w.image.value
    run(w, offset=2 * MiB // KiB + 4)  # past the end of the 2 MiB mapping
    assert "SIGSEGV" in w.message.text and w.message.value.startswith(
        "<span style='color:#b00020'")
    assert w.system is kept and snapshot(w.system.machine) == before and w.image.value == png
    assert w.counters()["thp_fault_alloc"] == 1
