"""Widgets driven headlessly: set control values, click buttons, assert model and display."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from pyfolio import KiB, MiB, System  # noqa: E402
from pyfolio.mm.debug_vm import snapshot  # noqa: E402
from pyfolio.widgets import (  # noqa: E402
    Scenario,
    device_fault_explorer,
    pmd_remap_viewer,
    refcount_watcher,
    split_explorer,
)


def memstate(w) -> dict[str, np.ndarray]:
    mem = w.system.machine.mem
    out = {f: getattr(mem, f).copy() for f in ("flags", "_refcount", "_mapcount",
                                               "compound_head", "order", "_pincount")}
    out.update({f"pt{k}": v.copy() for k, v in w.system.machine.pgtables.items()})
    return out


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_split_explorer_non_uniform_split():
    w = split_explorer()
    head = w.proc.folio_at(w.addr).pfn
    png0 = w.image.value
    w.kind.value = "non-uniform"
    w.new_order.value = 0
    w.at.value = 257
    w.split_button.click()
    assert "done" in w.message.text
    orders = [w.proc.folio_at(w.addr + i * 4 * KiB).order for i in (0, 256, 257)]
    assert orders == [8, 0, 0]
    assert w.system.folio(head).order == 8
    assert w.image.value != png0
    # the counts panel describes the folio now holding page 257: order 0, one split counted
    assert f"{w.proc.folio_at(w.addr + 257 * 4 * KiB).pfn:#x}, order 0</td>" in w.counts.value
    assert "_failed</th><td>1 / 0</td>" in w.counts.value
    # the key beside the image: one order-8 folio, two of order 0 ... after this split
    assert "order 8 (1 folio)" in w.legend.value and "order 0 (4 folios)" in w.legend.value
    assert "background:rgb(" in w.legend.value
    fig = w.static_figure()
    assert isinstance(fig, Figure) and len(fig.legends) == 1  # print keeps the key
    assert not w.static_figure(legend=False).legends
    assert w.system.check() == []


def test_split_explorer_pinned_split_fails_and_leaves_state():
    w = split_explorer()
    w.pin_page.value = "3"
    w.pin_button.click()
    before = memstate(w)
    w.split_button.click()
    assert "split failed" in w.message.text and "EAGAIN" in w.message.text
    assert same(before, memstate(w))
    assert w.proc.folio_at(w.addr).order == 9
    w.unpin_button.click()
    w.kind.value = "uniform"
    w.new_order.value = 4
    w.split_button.click()
    assert "done" in w.message.text
    assert {w.proc.folio_at(w.addr + i * 4 * KiB).order for i in range(0, 512, 16)} == {4}
    w.reset_button.click()
    assert w.proc.folio_at(w.addr).order == 9 and w.system.check() == []


def test_split_explorer_bad_unpin_is_a_message():
    w = split_explorer()
    before = memstate(w)
    w.unpin_button.click()
    assert "EINVAL" in w.message.text and same(before, memstate(w))


def test_pmd_remap_viewer_triggers():
    w = pmd_remap_viewer()
    assert w.frames[0].pmd_kind == "huge" and w.frames[-1].pmd_kind == "table"
    fill = [f for f in w.frames if f.label.startswith("__split_huge_pmd_locked")]
    assert len(fill) == 8 and fill[3].cells.states().count("pte") == 3 * 64
    w.step.value = 0
    png0 = w.image.value
    w.step.value = w.step.max
    assert w.image.value != png0 and "table" in w.message.text
    w.trigger.value = "munmap part"
    w.run_button.click()
    assert w.step.value == 0
    last = w.frames[-1].cells.states()
    assert last[:256] == ["pte"] * 256 and last[256:] == ["novma"] * 256
    w.trigger.value = "COW after fork"
    w.run_button.click()
    assert w.frames[1].label == "fork()" and "wp_page_copy" in w.frames[-1].why()
    # recorded from inside the write fault: the PMD split is do_huge_pmd_wp_page()'s fallback
    assert w.frames[-2].why() == ["do_huge_pmd_wp_page", "split_huge_pmd"]
    assert w.frames[-1].why() == ["wp_page_copy"]  # then the PTE-level COW of one page
    assert w.system.check() == []
    assert isinstance(w.static_figure(), Figure)


def test_refcount_watcher_step_back_run():
    w = refcount_watcher()
    assert w.frames[0].counts is None
    w.step_button.click()
    assert (w.frame.counts.refcount, w.frame.counts.mapcount) == (1, 1)
    w.step_button.click()
    assert w.frame.counts.pincount == 1 and "pin_user_pages" in w.label.value
    w.back_button.click()
    assert w.slider.value == 1 and len(w.frames) == 3  # back did not undo the model
    assert w.scenario.proc.folio_at(w.scenario.addr).pincount == 1
    w.step_button.click()  # forward over a recorded frame: nothing runs
    assert len(w.frames) == 3 and w.slider.value == 2
    w.run()
    assert w.done and w.frame.counts.pincount == 0
    w.reset_button.click()
    assert len(w.frames) == 1 and w.scenario.system.check() == []


def test_refcount_watcher_error_is_a_message():
    def make() -> Scenario:
        from pyfolio import System

        m = System(ram="64M")
        p = m.spawn()
        a = p.mmap(2 * MiB)
        return Scenario(m, [("bad mprotect", lambda: p.mprotect(a + 1, 4 * KiB, "r")),
                            ("touch", lambda: p.touch(a, 8 * KiB))], proc=p, addr=a)

    w = refcount_watcher(make)
    w.run(until=1)
    assert "EINVAL" in w.message.text and len(w.frames) == 2
    f0, f1 = w.frames[0], w.frames[1]  # the failed step changed nothing the views show
    assert (f1.pmd_raw, f1.counts, f1.events) == (f0.pmd_raw, f0.counts, ())
    w.step()
    assert w.frame.counts.refcount == 1 and w.message.text == "ok"
    assert len(w.static_figure().axes) == 5  # one row per count


def test_device_fault_explorer_large_and_fallback():
    w = device_fault_explorer()
    w.migrate_button.click()
    e = w.proc.lookup(w.addr)
    assert (e.level, e.kind) == ("pmd", "device_private") and "512 of 512" in w.message.text
    w.page.value = 5
    w.read_button.click()
    assert w.proc.lookup(w.addr + 5 * 4 * KiB).kind == "huge" and "PMD huge" in w.message.text
    w.reset_button.click()
    w.large.value = False
    w.design.value = "a"
    w.migrate_button.click()
    assert "split_huge_pmd" in w.events.value
    assert w.proc.lookup(w.addr).kind == "device_private"
    w.write_button.click()
    kinds = [w.proc.lookup(w.addr + i * 4 * KiB).kind for i in (4, 5, 6)]
    assert kinds == ["device_private", "page", "device_private"]
    assert w.proc.read(w.addr + 5 * 4 * KiB) == 0xC0FFEE
    assert w.system.check() == []


def test_device_fault_explorer_no_device_memory_message():
    w = device_fault_explorer(device="0")
    before = snapshot(w.system.machine)
    w.migrate_button.click()
    assert "migrate_to_device" in w.message.text and "EINVAL" in w.message.text
    assert snapshot(w.system.machine) == before  # the failed migration changed nothing


def test_refcount_watcher_fork_shares_when_the_pin_comes_after_exit():
    from functools import partial

    from pyfolio.widgets import fork_cow_scenario, refcount_watcher

    w = refcount_watcher(partial(fork_cow_scenario, pin_before_fork=False))
    w.run()
    c = [(f.counts.refcount, f.counts.mapcount, f.counts.entire_mapcount, f.counts.pincount)
         for f in w.frames[1:]]
    assert c == [(1, 1, 1, 0), (2, 2, 2, 0), (512, 512, 1, 0), (1, 1, 1, 0), (2, 1, 1, 1),
                 (1, 1, 1, 0)]
    assert w.frames[2].why() == ["copy_huge_pmd", "dup_mm"]
    notes = w.static_figure().texts[0].get_text()
    assert "6 parent unpins: (no traced event)" in notes
    assert w.scenario.system.check() == []
    pinned_first = refcount_watcher()  # the default: pin, then fork copies instead of sharing
    pinned_first.run()
    assert pinned_first.frames[3].why() == ["split_huge_pmd", "dup_mm"]


def test_address_walker_shows_the_walk_and_the_entry_bits():
    from pyfolio.widgets import address_walker

    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    p.write(a + 2 * MiB, 1)
    w = address_walker(p, a, 4 * MiB)
    assert w.message.text.startswith(f"{a:#x}: PMD entry, huge")
    first = (bytes(w.walk_image.value), bytes(w.bits_image.value))
    assert first[0].startswith(b"\x89PNG") and first[1].startswith(b"\x89PNG")
    w.addr.value = a + 2 * MiB + 4 * KiB
    assert w.message.text.startswith(f"{a + 2 * MiB + 4 * KiB:#x}: PTE entry, none")
    assert bytes(w.walk_image.value) != first[0]
    walk, bits = w.figures()
    assert "ends at a PTE" in walk.get_suptitle() and "PTE entry 0x0000000000000000" in \
        "".join(t.get_text() for t in bits.texts) + bits.get_suptitle()
    w.typed.value = hex(a + 2 * MiB + 0x234)  # any byte: the offset bits are not 0
    assert w.message.text.startswith(f"{a + 2 * MiB + 0x234:#x}: PTE entry, page")
    assert w.addr.value == a + 2 * MiB and w.current == a + 2 * MiB + 0x234
    walk = w.figures()[0]
    texts = [t.get_text() for ax in walk.axes for t in ax.texts]
    assert "offset (11..0)\n= 564" in texts  # 0x234: the typed address's offset bits
    for bad, why in (("nonsense", "not an address"), (hex(a + 4 * MiB), "outside")):
        w.typed.value = bad
        assert why in w.message.text and w.current == a + 2 * MiB + 0x234
    w.reset_button.click()
    assert w.addr.value == a and w.message.text.startswith(f"{a:#x}: PMD entry")
    assert m.check() == []


def test_address_walker_redraws_a_revisited_address_only_when_its_walk_changed():
    from pyfolio.widgets import address_walker

    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(2 * MiB)
    w = address_walker(p, a, 2 * MiB)
    w.addr.value = a + 8 * KiB
    at_8k = (bytes(w.walk_image.value), bytes(w.bits_image.value))
    w.addr.value = a + 12 * KiB
    w.addr.value = a + 8 * KiB  # the same walk: the kept pictures
    assert (bytes(w.walk_image.value), bytes(w.bits_image.value)) == at_8k
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")  # splits the PMD: the walk now ends at a PTE
    w.addr.value = a + 12 * KiB
    w.addr.value = a + 8 * KiB
    assert bytes(w.walk_image.value) != at_8k[0] and bytes(w.bits_image.value) != at_8k[1]
    assert w.message.text.startswith(f"{a + 8 * KiB:#x}: PTE entry, page")
    from pyfolio.widgets._common import png

    assert bytes(w.walk_image.value) == png(w.figures()[0])


def test_address_walker_shows_the_entry_key_as_text_and_the_static_figure_draws_it():
    """The bits picture is drawn without its key (the abbreviations spelled out), which the
    widget shows as a line of text that follows the entry (a PMD leaf's key has PSE, a PTE's
    PAT); the static figure draws the same key under the boxes."""
    from pyfolio.views import entry_key
    from pyfolio.widgets import address_walker
    from pyfolio.widgets._common import png

    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    p.write(a + 2 * MiB, 1)
    w = address_walker(p, a, 4 * MiB)
    pmd_key = entry_key(p.lookup(a), "pmd")
    assert "PSE: page size: a leaf" in pmd_key and "PAT:" not in pmd_key
    assert html.escape(pmd_key) in w.bits_key.value
    assert bytes(w.bits_image.value) == png(w.figures(key=False)[1])
    w.addr.value = a + 2 * MiB
    pte_key = entry_key(p.lookup(a + 2 * MiB), "pte")
    assert "PAT: page attribute table" in pte_key and html.escape(pte_key) in w.bits_key.value
    drawn = w.figures()[1]  # what static_figure() stacks under the walk
    assert any(t.get_text() == pte_key for t in drawn.findobj(Text))
    assert not any(t.get_text() == pte_key for t in w.figures(key=False)[1].findobj(Text))


def test_split_explorer_pin_box_rejects_bad_values_and_changes_nothing():
    w = split_explorer()
    before, png0 = memstate(w), w.image.value
    for typed, says in (("abc", "'abc' is not a page number: type a whole number from 0 to 511"),
                        ("3.5", "'3.5' is not a page number"),
                        ("600", "600 is outside the THP's pages: type a whole number from 0"),
                        ("-1", "-1 is outside the THP's pages"),
                        ("", "type the page to pin: a whole number from 0 to 511")):
        w.pin_page.value = typed
        w.pin_button.click()
        assert says in w.message.text, (typed, w.message.text)
        assert same(before, memstate(w)) and not w.pins and w.image.value == png0
    w.pin_page.value = "0x10"
    w._on_submit(w.pin_page, {"event": "submit"}, [])  # Enter in the box pins
    assert w.pins == {16: 1} and "pinned page 16" in w.message.text
    assert w.image.value != png0 and "pinned page (x): 16" in w.legend.value
    fig = w.static_figure()
    assert "pinned page" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_split_explorer_counts_follow_the_at_slider_and_failures_say_why():
    w = split_explorer()
    w.kind.value, w.new_order.value, w.at.value = "non-uniform", 0, 257
    w.split_button.click()
    assert "folio holding page 257" in w.counts.value and "order 0" in w.counts.value
    w.at.value = 0
    assert "folio holding page 0" in w.counts.value and "order 8" in w.counts.value
    w.reset()
    w.new_order.value = 1
    w.split_button.click()
    assert w.message.text == ("split failed: -EINVAL: order 1 is not allowed for an anonymous "
                              "folio (anon folios skip order 1)")
    w.new_order.value = 0
    w.pin_page.value = "3"
    w.pin_button.click()
    w.split_button.click()
    assert w.message.text == ("split failed: -EAGAIN: refcount 3 > expected 2 (mapcount 1 + "
                              "the splitter's own reference): a pin holds it")
    assert w.system.check() == []


def test_pmd_remap_viewer_frames_follow_the_dropdown():
    """Changing the trigger records it at once: the slider never shows another run's frames
    under the new trigger's message (the bug: old frames, new message)."""
    w = pmd_remap_viewer("munmap part")
    w.step.value = w.step.max
    w.trigger.value = "mprotect one page"
    assert w.recorded == "mprotect one page" and w.step.value == 0
    w.step.value = w.step.max
    last = w.frames[-1].cells.states()
    assert "novma" not in last and "mprotect one page" in w.message.text
    assert w.system.check() == []


def test_device_fault_explorer_second_migrate_counts_what_is_on_the_device():
    w = device_fault_explorer(ram="64M", device="8M")
    w.migrate_button.click()
    assert w.message.text.startswith("migrate_to_device: 512 page(s) migrated by this call; "
                                     "512 of 512 pages on the device")
    w.migrate_button.click()
    assert w.message.text == ("migrate_to_device: nothing left to migrate: 512 of 512 pages "
                              "on the device; entry at the start: PMD device_private")
    w.page.value = 5
    w.read_button.click()
    w.migrate_button.click()
    assert "of 512 pages on the device" in w.message.text and w.on_device() == 512
    assert w.design.style.button_width == "auto"  # the labels are not cut
    assert w.system.check() == []


def test_swap_explorer_block_device_round_trip_and_bad_input():
    from pyfolio.widgets import swap_explorer

    w = swap_explorer()
    w.kind.value = "block"
    w.pageout_button.click()
    assert "whole: one 2048 KiB write" in w.message.text and "thp_swpout +1" in w.message.text
    assert "512 pages left in the swap cache" in w.message.text
    w.page.value = "5"
    w.read_button.click()
    assert "from the swap cache" in w.message.text and "512 page(s) mapped" in w.message.text
    w.pageout_button.click()
    w.reclaim_button.click()
    w.page.value = "7"
    w.read_button.click()
    assert "read from the device" in w.message.text and "pswpin +8" in w.message.text
    before = snapshot(w.system.machine)
    for bad in ("512", "-1", "seven"):
        w.page.value = bad
        w.write_button.click()
        assert "b00020" in w.message.value and snapshot(w.system.machine) == before
    w.swapoff_button.click()
    assert "everything back" in w.message.text and w.proc.status()["VmSwap"] == 0
    before = snapshot(w.system.machine)
    w.swapoff_button.click()
    assert "EINVAL" in w.message.text and snapshot(w.system.machine) == before
    assert len(w.static_figure().axes) >= 1 and w.system.check() == []


def test_swap_explorer_file_splits_and_zram_reads_at_the_enabled_size():
    from pyfolio.widgets import swap_explorer

    w = swap_explorer()
    w.pageout_button.click()  # the default kind: a swap file
    assert "split to order 0 first" in w.message.text
    assert isinstance(w.static_figure(), Figure)
    w.kind.value = "zram"
    w.mthp.value = True
    w.pageout_button.click()
    assert "0 pages left in the swap cache" in w.message.text
    w.page.value = "20"
    w.read_button.click()
    assert "read directly" in w.message.text and "16 page(s) mapped" in w.message.text
    assert w.proc.folio_at(w.addr + 20 * 4 * KiB).order == 4 and w.system.check() == []
    w.reset_button.click()
    assert w.system.swaps()[0]["Used"] == 0 and w.proc.lookup(w.addr).kind == "huge"


def test_swap_explorer_shmem_source_keeps_no_swap_ptes_and_frees_slots_on_swap_in():
    from pyfolio.widgets import swap_explorer

    w = swap_explorer()
    w.source.value = "shmem"  # a memfd THP, reset on change
    w.pageout_button.click()  # to the swap file: split inside shmem_writeout(), no fallback
    assert "split to order 0 first by shmem_writeout()" in w.message.text
    assert "thp_swpout_fallback" not in w.message.text
    assert w.proc.status()["VmSwap"] == 0 and w.proc.smaps()[0]["Swap"] == 2048
    assert not w.proc.pagemap(w.addr)[0].swapped  # the PTE is cleared, not a swap entry
    w.kind.value = "zram"
    w.pageout_button.click()
    w.page.value = "7"
    w.read_button.click()
    assert "read directly" in w.message.text and "order 9" in w.message.text
    assert w.system.swaps()[0]["Used"] == 0 and w.system.check() == []
    w.page.value = "512"
    before = snapshot(w.system.machine)
    w.read_button.click()
    assert "0 to 511" in w.message.text and snapshot(w.system.machine) == before


def test_swap_explorer_page_box_reads_on_enter_and_says_what_is_allowed():
    from pyfolio.mm.debug_vm import snapshot
    from pyfolio.widgets import swap_explorer

    w = swap_explorer(ram="32M", swap="16M")
    w.kind.value = "block"
    w.page_out()
    before = snapshot(w.system.machine)
    w.page.value = "600"
    w._on_submit(w.page, {"event": "submit"}, [])
    assert w.message.text == "600 is outside the THP's pages: type a whole number from 0 to 511"
    assert snapshot(w.system.machine) == before
    w.page.value = "0x10"
    w._on_submit(w.page, {"event": "submit"}, [])  # Enter in the box reads page 16
    assert w.message.text.startswith("read: page 16: from the swap cache")
    assert w.system.check() == []
