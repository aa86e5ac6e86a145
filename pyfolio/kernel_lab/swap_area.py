"""A swap area of the lab's own on the running kernel: a swap file, a loop block device over
one, or a zram device, made for one scenario and always taken down again.

:func:`swap_area` is a context manager: it creates the area under a directory of its own
(``/var/tmp/pyfolio-swap-lab.<pid>``), writes the swap header (what mkswap writes:
version 1, ``last_page``, the "SWAPSPACE2" signature), checks that this machine lets it be
swapped on (swapon(2) then swapoff(2) at once), and yields a :class:`SwapArea` naming the
path a scenario's ``swapon`` step switches on. On the way out, whatever happened, it turns
the area off if it is still on, detaches the loop device (LOOP_CLR_FD) or resets and
removes the zram device, and deletes the file and the directory. The caller holds the
kernel-lab lock (:func:`pyfolio.kernel_lab.backends.run_lock`) for the whole time: other
tests on this machine expect no swap.

Nothing here is needed to read the recorded observations; everything raises
:class:`~pyfolio.kernel_lab.readers.Unavailable` (with the reason) where the machine does
not allow it: not root, swap already active (the scenarios must own the only swap area:
another one would take the pages), no loop devices, no zram, a filesystem that refuses
swap files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyfolio.kernel_lab.readers import Unavailable
from pyfolio.sim.units import PAGE_SIZE

__all__ = ["SwapArea", "swap_area", "swap_header", "swapon", "swapoff", "active_swaps",
           "LAB_DIR"]

#: linux/loop.h ioctls
LOOP_SET_FD, LOOP_CLR_FD, LOOP_CTL_GET_FREE = 0x4C00, 0x4C01, 0x4C82
#: where the lab makes its swap file (a disk filesystem: tmpfs takes no swap file)
LAB_DIR = Path("/var/tmp")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.swapon.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.swapoff.argtypes = [ctypes.c_char_p]


@dataclass(frozen=True, slots=True)
class SwapArea:
    """A prepared (not yet active) swap area: ``kind`` as the simulator names it, the
    ``path`` to swap on, its ``size`` in bytes, and whether the kernel will see it as
    non-rotational (``solidstate``, SWP_SOLIDSTATE)."""

    kind: str
    path: str
    size: int
    solidstate: bool


def swap_header(nr_pages: int) -> bytes:
    """The first page mkswap writes (include/linux/swap.h union swap_header): version 1 at
    byte 1024, last_page (the area's last page, ``nr_pages - 1``) at 1028, no bad pages, the
    "SWAPSPACE2" signature in the last 10 bytes of the page."""
    page = bytearray(PAGE_SIZE)
    struct.pack_into("<III", page, 1024, 1, nr_pages - 1, 0)
    page[PAGE_SIZE - 10:] = b"SWAPSPACE2"
    return bytes(page)


def swapon(path: str) -> int:
    """swapon(2) of ``path`` (no flags); 0 or the errno."""
    return 0 if _libc.swapon(path.encode(), 0) == 0 else ctypes.get_errno()


def swapoff(path: str) -> int:
    """swapoff(2) of ``path``; 0 or the errno."""
    return 0 if _libc.swapoff(path.encode()) == 0 else ctypes.get_errno()


def active_swaps(root: str | Path = "/") -> list[str]:
    """The Filename column of /proc/swaps: the active swap areas."""
    try:
        lines = (Path(root) / "proc/swaps").read_text().splitlines()[1:]
    except OSError as e:
        raise Unavailable(f"unavailable: cannot read /proc/swaps: {e.strerror}") from None
    return [ln.split()[0] for ln in lines if ln.strip()]


def _rotational(sysfs_block: Path) -> bool:
    """queue/rotational of a block device's sysfs directory (a partition: its disk's)."""
    for d in (sysfs_block, sysfs_block.parent):
        f = d / "queue" / "rotational"
        if f.exists():
            return f.read_text().strip() == "1"
    return True


def _fill(path: Path, size: int) -> None:
    """A file of ``size`` bytes with no holes (swapon refuses them) starting with the swap
    header: posix_fallocate() (ext4's unwritten extents are accepted, measured), or zeroes
    written where the filesystem cannot allocate that way."""
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError:
            chunk = bytes(1 << 20)
            for _ in range(size // len(chunk)):
                f.write(chunk)
            f.write(bytes(size % len(chunk)))
        f.seek(0)
        f.write(swap_header(size // PAGE_SIZE))
        f.flush()
        os.fsync(f.fileno())


def _probe(path: str) -> None:
    """swapon + swapoff at once: Unavailable with the errno if this machine refuses."""
    e = swapon(path)
    if e:
        raise Unavailable(f"unavailable: swapon({path}) was refused here: "
                          f"{errno.errorcode.get(e, e)} ({os.strerror(e)})")
    e = swapoff(path)
    if e:  # never leave it on
        raise Unavailable(f"unavailable: swapoff({path}) failed: {errno.errorcode.get(e, e)}")


@contextlib.contextmanager
def _loop_device(backing: Path) -> Iterator[str]:
    """Attach ``backing`` to a free loop device (LOOP_CTL_GET_FREE, LOOP_SET_FD); detach it
    (LOOP_CLR_FD) on the way out."""
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR)
    except OSError as e:
        raise Unavailable(f"unavailable: no loop devices (/dev/loop-control: "
                          f"{e.strerror})") from None
    try:
        n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
    except OSError as e:
        raise Unavailable(f"unavailable: no free loop device ({e.strerror})") from None
    finally:
        os.close(ctl)
    dev = f"/dev/loop{n}"
    try:
        lfd = os.open(dev, os.O_RDWR)
    except OSError as e:
        raise Unavailable(f"unavailable: cannot open {dev}: {e.strerror}") from None
    ffd = os.open(backing, os.O_RDWR)
    try:
        try:
            fcntl.ioctl(lfd, LOOP_SET_FD, ffd)
        except OSError as e:
            raise Unavailable(f"unavailable: LOOP_SET_FD on {dev} failed: {e.strerror}") \
                from None
        try:
            yield dev
        finally:
            swapoff(dev)  # harmless if it is off (EINVAL)
            for _ in range(50):  # the device may still be busy for a moment
                try:
                    fcntl.ioctl(lfd, LOOP_CLR_FD)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    import time
                    time.sleep(0.05)
    finally:
        os.close(ffd)
        os.close(lfd)


@contextlib.contextmanager
def _zram_device(size: int) -> Iterator[str]:
    """A new zram device (zram-control/hot_add) of ``size`` bytes with a swap header;
    reset and hot_remove on the way out."""
    ctl = Path("/sys/class/zram-control")
    try:
        n = int((ctl / "hot_add").read_text())
    except (OSError, ValueError) as e:
        raise Unavailable(f"unavailable: no zram (zram-control/hot_add: {e})") from None
    dev, sysfs = f"/dev/zram{n}", Path(f"/sys/block/zram{n}")
    try:
        try:
            (sysfs / "disksize").write_text(str(size))
            with open(dev, "r+b") as f:
                f.write(swap_header(size // PAGE_SIZE))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise Unavailable(f"unavailable: setting up {dev} failed: {e.strerror}") from None
        yield dev
    finally:
        swapoff(dev)
        with contextlib.suppress(OSError):
            (sysfs / "reset").write_text("1")
        with contextlib.suppress(OSError):
            (ctl / "hot_remove").write_text(str(n))


@contextlib.contextmanager
def swap_area(kind: str, size: int, root: str | Path = "/") -> Iterator[SwapArea]:
    """Make a swap area of ``kind`` ("file", "block": a loop device over a file, "zram")
    and ``size`` bytes for the length of the block; see the module docstring. Raises
    Unavailable (before anything is switched on) where the machine cannot."""
    if os.geteuid() != 0:
        raise Unavailable("unavailable: a swap area needs root (CAP_SYS_ADMIN)")
    others = active_swaps(root)
    if others:
        raise Unavailable(f"unavailable: swap is already active here ({', '.join(others)}); "
                          "the swap scenarios must own the only swap area")
    if kind not in ("file", "block", "zram"):
        raise ValueError(f"swap area kind {kind!r}")
    if kind == "zram":
        with _zram_device(size) as dev:
            _probe(dev)
            yield SwapArea(kind, dev, size, True)
        return
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pyfolio-swap-lab.", dir=LAB_DIR))
    backing = work / "swapfile"
    try:
        _fill(backing, size)
        os.chmod(backing, 0o600)
        if kind == "file":
            sysfs = Path(f"/sys/dev/block/{os.major(os.stat(work).st_dev)}:"
                         f"{os.minor(os.stat(work).st_dev)}")
            try:
                _probe(str(backing))
                yield SwapArea(kind, str(backing), size, not _rotational(sysfs.resolve()))
            finally:
                swapoff(str(backing))
        else:
            with _loop_device(backing) as dev:
                _probe(dev)
                yield SwapArea(kind, dev, size, not _rotational(Path(f"/sys/block/{dev[5:]}")))
    finally:
        swapoff(str(backing))
        shutil.rmtree(work, ignore_errors=True)
