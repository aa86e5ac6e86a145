"""The kernel cross-reference comes from the docstrings' Models: lines."""

from __future__ import annotations

import pytest

from pyfolio import huge_memory, memory, page_alloc, rmap
from pyfolio.xref import kernel_refs, read_the_kernel, xref_table


def test_every_modelled_function_names_a_kernel_file_and_function() -> None:
    refs = kernel_refs()
    assert len(refs) > 80
    for r in refs:
        assert r.kernel, f"{r.python}: Models: line names no file.c:function()"
        assert r.kernel[0][0].startswith(("mm/", "include/", "arch/", "kernel/", "fs/", "lib/"))


def test_core_kernel_functions_are_all_in_the_table() -> None:
    table = xref_table()
    for fn in ("split_huge_pmd", "do_huge_pmd_anonymous_page", "__folio_remove_rmap",
               "copy_huge_pmd", "take_page_off_buddy", "__handle_mm_fault", "copy_pte_range"):
        assert f"`{fn}()`" in table


def test_read_the_kernel_lists_file_and_function() -> None:
    text = read_the_kernel(huge_memory.split_huge_pmd, memory.do_wp_page,
                           rmap.folio_add_new_anon_rmap, page_alloc.alloc_pages)
    assert "`mm/huge_memory.c:split_huge_pmd()`" in text
    assert "`mm/memory.c:do_wp_page()`" in text
    assert text.count("\n") == 3


def test_read_the_kernel_refuses_functions_without_models_line() -> None:
    with pytest.raises(ValueError, match="has no 'Models:' line"):
        read_the_kernel(test_read_the_kernel_lists_file_and_function)
