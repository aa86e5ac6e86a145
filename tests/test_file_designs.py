"""The book's exercise on unmapped file-backed folios (pyfolio.reading.file_designs): the
patch to design (a), the second entry point of design (b), equal states, the counts."""

from __future__ import annotations

import pytest

from pyfolio.mm.debug_vm import snapshot
from pyfolio.reading.file_designs import (
    CASES,
    FILE_DESIGNS,
    PATCH_A,
    file_design_steps,
    file_split_scenario,
    folio_split_unmapped_file,
    patch_diff,
    patched_folio_split,
    shared_path_counts,
)
from pyfolio.sim.errors import EAGAIN, EBUSY, VmWarning
from pyfolio.sim.units import PAGE_SIZE

RESULT = {"memfd": 0, "memfd-eof": 0, "memfd-mapped": 0, "ext4-clean": 0,
          "ext4-dirty": -EBUSY, "memfd-extra-ref": -EAGAIN}


def test_the_patch_applies_to_the_model_and_leaves_it_unchanged() -> None:
    import pyfolio.mm.huge_memory_split as hms

    diff = patch_diff()
    assert diff.count("--- ") == len(PATCH_A) and "+            i_mmap_unlock_read(mapping)" in diff
    assert patched_folio_split() is not hms.__folio_split
    assert patched_folio_split().__module__ == "pyfolio.reading.file_designs.patched"


def test_counts_fix_adds_one_condition_to_the_shared_path_b_adds_none() -> None:
    posted, fixed, own = shared_path_counts()
    assert (posted.design, fixed.design, own.design) == FILE_DESIGNS
    assert fixed.for_files == 1 and len(fixed.shared) == len(posted.shared) + 1
    assert len(fixed.on_flag) == len(posted.on_flag) >= 3
    assert fixed.added == posted.added + 1 and posted.added >= 3
    # (b)'s shared path is __folio_split() without the flag: no condition on it
    assert own.added == own.for_files == 0 and own.on_flag == ()
    assert len(own.shared) == len(posted.shared) - posted.added
    assert not any("unmapped" in b.test for b in own.shared)
    assert any(b.test.startswith("is_anon and (not folio_mapped(folio)") for b in own.shared)
    assert own.entry == "folio_split_unmapped_file" and len(own.own) >= 4
    assert not any("unmapped" in b.test for b in own.own)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fix_and_new_function_leave_equal_clean_states(case: str, seed: int) -> None:
    runs = {d: file_split_scenario(d, case, seed) for d in FILE_DESIGNS}
    fix, new, posted = runs["unmapped-param+fix"], runs["split-unmapped-file"], \
        runs["unmapped-param"]
    assert fix.ret == new.ret == posted.ret == RESULT[case]
    assert fix.violations == new.violations == []
    assert snapshot(fix.system.machine) == snapshot(new.system.machine)
    assert fix.after == new.after == posted.after
    kinds = {v.kind for v in posted.violations}
    if RESULT[case] == 0:
        assert "i_mmap" in kinds  # v7 as posted leaves i_mmap_rwsem held
        assert ("shmem" in kinds) == (case == "memfd-eof")  # and the charge past EOF
        assert all(o == 0 for _, o in new.after)
    else:  # a failure: v7 counts it at out:, the others do not; nothing else differs
        assert not kinds and new.after == new.before
        a, b = snapshot(posted.system.machine), snapshot(new.system.machine)
        assert {k for k in a if a[k] != b[k]} == {"vmstat", "mthp_stats"}
        assert posted.system.machine.vmstat["thp_split_page_failed"] == 1
        assert new.system.machine.vmstat["thp_split_page_failed"] == 0


def test_pieces_past_eof_are_dropped_and_data_kept() -> None:
    run = file_split_scenario("split-unmapped-file", "memfd-eof", 5)
    p, fd = run.proc, run.fd
    size = p._file(fd).f_inode.i_size
    assert run.after == [(i, 0) for i in range(size // PAGE_SIZE)]
    assert len({p.pread(fd, i * PAGE_SIZE) for i in range(size // PAGE_SIZE)}) == 1
    assert p.pread(fd, 0) != 0


def test_mapped_case_refaults_small_pages_after_the_split() -> None:
    run = file_split_scenario("unmapped-param+fix", "memfd-mapped", 1)
    p = run.proc
    vma = next(v for v in p.mm.vmas if v.vm_file is not None)
    value = p.pread(run.fd, 0)
    assert p.read(vma.vm_start + 7 * PAGE_SIZE) == value
    assert run.system.check() == []
    assert sum(s["ShmemPmdMapped"] for s in p.smaps()) == 0
    assert p.status()["RssShmem"] == 64  # fault-around: 16 pages


def test_steps_agree_where_events_agree() -> None:
    runs = [file_split_scenario(d, "memfd-eof", 0) for d in FILE_DESIGNS]
    steps = file_design_steps(*runs)
    assert [s.event for s in steps][:2] == ["folio_ref_freeze", "__split_unmapped_folio"]
    assert any(" x " in s.label for s in steps)  # the pieces past EOF, one step
    assert steps[0].stack("split-unmapped-file")[1] == "folio_split_unmapped_file [book]"
    assert steps[0].stack("unmapped-param+fix")[1] == "__folio_split [book]"
    assert "__folio_split" in steps[0].stack("unmapped-param")
    with pytest.raises(ValueError, match="different events"):
        file_design_steps(*[file_split_scenario(d, "ext4-dirty", 0) for d in FILE_DESIGNS])


def test_new_function_refuses_anon_and_mapped_folios() -> None:
    from pyfolio.include.linux.mm import folio_lock, page_folio
    from pyfolio.system import System

    m = System(ram="32M", thp="always")
    p = m.spawn()
    a = p.mmap("4M")
    p.touch(a, "2M")
    pfn = p.pfn_at(a)
    assert pfn is not None
    folio = page_folio(m.machine, pfn)
    folio_lock(folio)
    with pytest.raises(VmWarning, match="mapped"):
        folio_split_unmapped_file(folio, 0)


def test_file_design_review_widget_headless() -> None:
    from pyfolio.widgets.design_review import file_design_review

    w = file_design_review("memfd-eof", seed=0)
    assert "same as: unmapped-param+fix" in w.table.value and w.image.value
    w.design.value = "unmapped-param"
    assert "i_mmap_rwsem still held" in w.table.value and "same as: none" in w.table.value
    w.case.value = "ext4-dirty"
    assert w.stepped == ["unmapped-param+fix", "split-unmapped-file"]
    w.all.value = True
    assert w.static_figure() is not None
