"""ext4 file operations: read, write, mmap, fsync.

Models: fs/ext4/file.c (v6.18): ext4_file_read_iter() (generic_file_read_iter():
filemap_read() with readahead), ext4_file_write_iter() (ext4_buffered_write_iter():
generic_perform_write()), ext4_file_mmap() (``ext4_file_vm_ops``: filemap_fault(),
filemap_map_pages(), ext4_page_mkwrite()), ``ext4_file_operations`` with
``get_unmapped_area = thp_get_unmapped_area`` (seen in an older ext4 and measured on
6.18.44: a mapping covering an aligned 2 MiB of the file is placed 2 MiB-congruent), and
fs/ext4/fsync.c:ext4_sync_file() reduced to file_write_and_wait_range().
"""

from __future__ import annotations

from pyfolio.fs.ext4.extents import ext4_fallocate
from pyfolio.fs.ext4.inode import ext4_page_mkwrite
from pyfolio.include.linux.fs import File, FileOperations
from pyfolio.include.linux.mm import VmOperations
from pyfolio.include.linux.mm_types import VMA
from pyfolio.mm.filemap import file_write_and_wait_range, filemap_read, generic_perform_write
from pyfolio.mm.filemap_fault import filemap_fault
from pyfolio.mm.huge_memory_file import thp_get_unmapped_area

__all__ = ["ext4_file_read_iter", "ext4_file_write_iter", "ext4_file_mmap", "ext4_sync_file",
           "ext4_file_vm_ops", "ext4_file_operations"]


def ext4_file_read_iter(file: File, pos: int, count: int) -> list[int]:
    """ext4_file_read_iter() - read(): generic_file_read_iter() -> filemap_read().

    Models: fs/ext4/file.c:ext4_file_read_iter() (v6.18).
    """
    return filemap_read(file, pos, count)


def ext4_file_write_iter(file: File, pos: int, count: int, value: int) -> int:
    """ext4_file_write_iter() - write(): ext4_buffered_write_iter() ->
    generic_perform_write() with ext4's delayed-allocation write_begin/write_end.

    Models: fs/ext4/file.c:ext4_file_write_iter() (v6.18).
    """
    return generic_perform_write(file, pos, count, value)


def ext4_file_mmap(file: File, vma: VMA) -> None:
    """ext4_file_mmap() - faults of the VMA go through ``ext4_file_vm_ops``.

    Models: fs/ext4/file.c:ext4_file_mmap() (v6.18).
    """
    vma.vm_ops = ext4_file_vm_ops


def ext4_sync_file(file: File) -> None:
    """ext4_sync_file() - fsync(): write back every dirty folio.

    Models: fs/ext4/fsync.c:ext4_sync_file() (v6.18), without the journal commit.
    """
    file_write_and_wait_range(file)


ext4_file_vm_ops = VmOperations("ext4_file_vm_ops", fault=filemap_fault,
                                page_mkwrite=ext4_page_mkwrite)
ext4_file_operations = FileOperations(
    "ext4_file_operations", read_iter=ext4_file_read_iter, write_iter=ext4_file_write_iter,
    mmap=ext4_file_mmap, fallocate=ext4_fallocate, fsync=ext4_sync_file,
    get_unmapped_area=thp_get_unmapped_area)
