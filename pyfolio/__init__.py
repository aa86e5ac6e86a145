"""pyfolio: a small, faithful simulator of Linux memory management (folios, THP,
page tables, splitting, device-private memory) for the book "Splitting Folios".

Start with :class:`System`; kernel-named functions live in modules named after the kernel
files that hold them (``pyfolio.mm.huge_memory.split_huge_pmd`` models
``mm/huge_memory.c:split_huge_pmd()``).
"""

from pyfolio.include.linux.mm import (
    Folio,
    folio_entire_mapcount,
    folio_expected_ref_count,
    folio_mapcount,
    folio_maybe_dma_pinned,
    folio_nr_pages,
    folio_order,
    folio_ref_count,
)
from pyfolio.sim.errors import (
    EAGAIN,
    EBUSY,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOMEM,
    KernelBug,
    MmError,
    SegmentationFault,
    VmWarning,
)
from pyfolio.sim.units import GiB, KiB, MiB, parse_size
from pyfolio.system import Process, System

__all__ = [
    "System", "Process", "Folio", "KiB", "MiB", "GiB", "parse_size", "MmError",
    "SegmentationFault", "VmWarning", "KernelBug", "EAGAIN", "EBUSY", "EEXIST", "EFAULT",
    "EINVAL", "ENOMEM",
    "folio_order", "folio_nr_pages", "folio_ref_count", "folio_mapcount",
    "folio_entire_mapcount", "folio_expected_ref_count", "folio_maybe_dma_pinned",
]
