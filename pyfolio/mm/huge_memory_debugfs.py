"""The debugfs file ``split_huge_pages``, its file form: split the large page-cache folios
of a file by path.

Models: mm/huge_memory.c (v6.18): split_huge_pages_write() for input that starts with
``/`` (``<path>,0x<off_start>,0x<off_end>[,<new_order>[,<in_folio_offset>]]``, offsets
in pages, in hex with the ``0x``) and split_huge_pages_in_file(). The pid form
(``<pid>,0x<vaddr_start>,0x<vaddr_end>...``) is :meth:`pyfolio.system.System.split`
(:func:`pyfolio.mm.huge_memory_split.split_mapped_folio`). On the machine the book was
measured on, debugfs is refused (lockdown=integrity), so this form is read in the source,
not compared with the kernel.

    >>> from pyfolio import System, MiB
    >>> m = System(ram="64M"); p = m.spawn(); fd = p.open("/data/f")
    >>> p.pwrite(fd, 0, 2 * MiB, 1); p.fsync(fd)
    2097152
    >>> text = "/data/f,0x0,0x200,0,200"
    >>> split_huge_pages_write(m.machine, text) == len(text), len(p.page_cache(fd))
    (True, 10)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pyfolio.sim.errors import EINVAL, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["split_huge_pages_write", "split_huge_pages_in_file", "MAX_INPUT_BUF_SZ"]

#: mm/huge_memory.c: the longest input split_huge_pages_write() reads
MAX_INPUT_BUF_SZ = 255
#: sscanf(tok_buf, "0x%lx,0x%lx,%d,%ld", ...): how far it matches decides the item count
_SCAN = re.compile(r"0x([0-9a-fA-F]+)(?:,0x([0-9a-fA-F]+)(?:,([+-]?\d+)(?:,([+-]?\d+))?)?)?")


def split_huge_pages_in_file(m: Machine, file_path: str, off_start: int, off_end: int,
                             new_order: int, in_folio_offset: int) -> tuple[int, int]:
    """split_huge_pages_in_file() - split each large folio of the file's page cache that
    holds a page of [off_start, off_end) to ``max(new_order, mapping_min_folio_order())``:
    uniformly, or with ``0 <= in_folio_offset < nr_pages`` non-uniformly at that page of
    the folio. Folios already at or below the target order are skipped, and so is one
    that is locked (folio_trylock()) or a split that fails (a pinned or dirty ext4 folio):
    the kernel counts them in ``total`` but not in ``split``. Returns (split, total).

    Models: mm/huge_memory.c:split_huge_pages_in_file() (v6.18). The file is opened
    O_RDONLY by path (file_open_name()): MmError(EINVAL) when it cannot be (the kernel
    returns -EINVAL then, whatever the lookup said).
    """
    from pyfolio.fs.open import do_sys_open, filp_close
    from pyfolio.include.linux.fs import FMODE
    from pyfolio.include.linux.mm import (
        folio_lock,
        folio_nr_pages,
        folio_order,
        folio_put,
        folio_test_large,
        folio_test_locked,
        folio_unlock,
    )
    from pyfolio.include.linux.pagemap import folio_mapping, mapping_min_folio_order
    from pyfolio.mm.filemap import filemap_get_folio
    from pyfolio.mm.huge_memory_split import folio_split, split_folio_to_order

    try:
        candidate = do_sys_open(m, file_path, False, FMODE.READ)
    except MmError as e:
        raise MmError(EINVAL, f"split_huge_pages: cannot open {file_path!r} ({e})") from e
    mapping = candidate.f_mapping
    target_order = max(new_order, mapping_min_folio_order(mapping))
    split = total = 0
    index = off_start
    while index < off_end:
        folio = filemap_get_folio(mapping, index)
        nr_pages = 1
        if folio is None:
            index += nr_pages
            continue
        if folio_test_large(folio):
            total += 1
            nr_pages = folio_nr_pages(folio)
            if target_order < folio_order(folio) and not folio_test_locked(folio):
                folio_lock(folio)  # folio_trylock(): nobody else holds it
                if folio_mapping(folio) is mapping:
                    if in_folio_offset < 0 or in_folio_offset >= nr_pages:
                        ret = split_folio_to_order(folio, target_order)
                    else:
                        ret = folio_split(folio, target_order, folio.pfn + in_folio_offset,
                                          None)
                    split += ret == 0
                folio_unlock(folio)
        folio_put(folio)
        index += nr_pages
    filp_close(candidate)
    m.trace.emit("split_huge_pages_in_file", changes={"split": split, "total": total},
                 path=file_path, off_start=off_start, off_end=off_end, new_order=new_order,
                 in_folio_offset=in_folio_offset)
    return split, total


def split_huge_pages_write(m: Machine, text: str) -> int:
    """split_huge_pages_write() of ``text`` in its file form; returns the input's length.

    Models: mm/huge_memory.c:split_huge_pages_write() (v6.18): the input (at most
    MAX_INPUT_BUF_SZ - 1 characters are read, a trailing newline dropped) starts with
    ``/``; the path ends at the first comma; ``sscanf("0x%lx,0x%lx,%d,%ld")`` must match
    2, 3 or 4 items (new_order 0 and in_folio_offset -1 by default). MmError(EINVAL) for
    anything else (a pid-form input included: use ``System.split``), changing nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_huge_pages: write a string, not {type(text).__name__}")
    buf = text[:MAX_INPUT_BUF_SZ - 1]
    if buf.endswith("\n"):
        buf = buf[:-1]
    if not buf.startswith("/"):
        raise MmError(EINVAL, "split_huge_pages: only the file form '<path>,0x<start>,"
                              "0x<end>[,<new_order>[,<in_folio_offset>]]' is modelled here; "
                              "the pid form is System.split()")
    path, _, rest = buf.partition(",")
    got = _SCAN.match(rest)
    if got is None or got.group(2) is None:
        raise MmError(EINVAL, f"split_huge_pages: {rest!r} does not match "
                              f"'0x<off_start>,0x<off_end>[,<new_order>[,<in_folio_offset>]]'")
    off_start, off_end = int(got.group(1), 16), int(got.group(2), 16)
    new_order = int(got.group(3)) if got.group(3) is not None else 0
    in_folio_offset = int(got.group(4)) if got.group(4) is not None else -1
    if new_order < 0:  # %d into an unsigned int: a huge order, above every folio's
        new_order &= 0xFFFFFFFF
    split_huge_pages_in_file(m, path, off_start, off_end, new_order, in_folio_offset)
    return len(text)
