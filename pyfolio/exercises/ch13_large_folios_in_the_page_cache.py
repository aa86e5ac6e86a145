"""Chapter 13 exercises: the folio orders a write gives on shmem and ext4, the buddy split
a hole punch or a truncate leaves, and who maps a shared page-cache folio.

Every answer is read off the simulator after the operations: the page cache with
``p.page_cache(fd)``, mappings with ``m.kpagecount()`` and ``p.lookup()``, RSS with
``p.status()``, counters with ``m.vmstat()``.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System
from pyfolio.views.page_cache import cache_notation

__all__ = ["thp_file", "WriteOrders", "HoleSplit", "TruncateSplit", "SharedMapping",
           "KINDS", "FS_LABELS"]

#: the kinds of file :func:`thp_file` makes, as the questions name them
FS_LABELS = {"shmem": "memfd (shmem)", "clean": "ext4 file, written back (clean)",
             "dirty": "ext4 file, not yet written back (dirty)"}


def _a_file(fs: str, size: int) -> str:
    """"A 2 MiB memfd (shmem): one order-9 page-cache folio holds it." and the like."""
    nr = size // (2 * MiB)
    held = "one order-9 page-cache folio holds it" if nr == 1 else \
        f"{nr} order-9 page-cache folios hold it"
    return f"A {size // MiB} MiB {FS_LABELS[fs]}: {held}."


def thp_file(fs: str = "shmem", size: int = 2 * MiB, seed: int = 0,
             ram: str = "64M") -> tuple[System, Process, int]:
    """A fresh machine whose one process holds a file of ``size`` bytes (a multiple of
    2 MiB) written in one ``pwrite()``, so that order-9 page-cache folios hold it:
    (system, process, fd). ``fs`` "shmem": a memfd written while ``shmem_enabled`` was
    ``always`` (set back to ``never`` afterwards); "clean": an ext4 file, then ``fsync()``;
    "dirty": an ext4 file not written back yet. Chapter 13 starts its experiments from one."""
    if fs not in FS_LABELS:
        raise ValueError(f"fs {fs!r} is not one of {', '.join(FS_LABELS)}")
    m = System(ram=ram, seed=seed)
    p = m.spawn()
    if fs == "shmem":
        m.set_shmem_thp("always")
        fd = p.memfd_create("ch13")
        p.pwrite(fd, 0, size, 0x5A)
        m.set_shmem_thp("never")
    else:
        fd = p.open("/data/ch13")
        p.pwrite(fd, 0, size, 0x5A)
        if fs == "clean":
            p.fsync(fd)
    assert p.page_cache(fd) == [(i * 512, 9) for i in range(size // (2 * MiB))]
    return m, p, fd


def _holder(cache: list[tuple[int, int]], page: int) -> int:
    """The order of the page-cache folio holding ``page``, -1 if it is not cached."""
    return next((o for i, o in cache if i <= page < i + (1 << o)), -1)


class WriteOrders(Exercise):
    """The folios one pwrite() into an empty file gets, on ext4 and on shmem."""

    chapter = 13
    kind = "write"
    title = "Which folios does a write get?"
    fields = ("folios in the page cache", "largest order", "order of the folio holding page X")
    POLICIES = ("ext4", "always", "within_size", "never")

    def setup(self) -> None:
        rng = self.rng
        self.fs = rng.choices(self.POLICIES, weights=[35, 15, 35, 15])[0]
        self.offset = rng.choice([0, 0, rng.randrange(512), rng.randrange(64) * 16,
                                  rng.randrange(8) * 64]) * PAGE_SIZE
        self.length = rng.choice([rng.randrange(1, 600), rng.choice([16, 64, 128, 256, 512]),
                                  rng.randrange(1, 40)]) * PAGE_SIZE
        m = System(ram="64M", seed=self.seed)
        p = m.spawn()
        if self.fs == "ext4":
            fd = p.open("/data/w")
        else:
            m.set_shmem_thp(self.fs)
            fd = p.memfd_create("w")
        p.pwrite(fd, self.offset, self.length, 1)
        cache = p.page_cache(fd)
        first = self.offset // PAGE_SIZE
        self.x = first + rng.randrange(self.length // PAGE_SIZE)
        self.answer = (len(cache), max(o for _, o in cache), _holder(cache, self.x))
        end = (self.offset + self.length) // PAGE_SIZE
        self.steps.append(f"The page cache afterwards: {cache_notation(cache, max(end, 512))} "
                          f"(pages 0..{max(end, 512) - 1}, folio orders in index order).")

    def question(self) -> str:
        where = ("an empty ext4 file" if self.fs == "ext4" else
                 f"an empty memfd, with shmem_enabled = {self.fs}")
        return (f"A process writes {self.length // KiB} KiB at offset {self.offset // KiB} KiB "
                f"(page {self.offset // PAGE_SIZE}) of {where}, in one pwrite(). How many "
                f"folios does the page cache hold afterwards, what is the largest order among "
                f"them, and what is the order of the folio holding page X = {self.x}? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("ext4: each chunk (up to the next 2 MiB boundary) gets the largest order that "
                "fits the bytes left and the index's alignment. shmem: 'never' gives order 0, "
                "'always' the largest aligned order whose range is free (PMD first, even past "
                "EOF), 'within_size' only orders whose aligned range ends inside the new size.")


class HoleSplit(Exercise):
    """The folios a hole punch leaves in a file held by one order-9 folio."""

    chapter = 13
    kind = "hole"
    title = "What does a hole punch leave?"
    fields = ("folios in the page cache afterwards", "order of the folio holding page X",
              "pages still cached")

    def setup(self) -> None:
        rng = self.rng
        self.fs = rng.choices(list(FS_LABELS), weights=[45, 42, 13])[0]
        self.page = rng.randrange(512)
        self.n = min(512 - self.page, rng.choice([1, 1, 2, 3, rng.randrange(1, 33)]))
        m, p, fd = thp_file(self.fs, seed=self.seed)
        p.fallocate(fd, "punch_hole", self.page * PAGE_SIZE, self.n * PAGE_SIZE)
        cache = p.page_cache(fd)
        outside = [i for i in range(512) if not self.page <= i < self.page + self.n]
        self.x = rng.choice(outside) if outside else 0
        self.answer = (len(cache), _holder(cache, self.x), sum(1 << o for _, o in cache))
        failed = m.vmstat()["thp_split_page_failed"]
        self.steps.append(
            ("The split failed (a dirty ext4 folio keeps its buffers): the folio stays whole "
             "and the hole is only zeroed. " if failed else
             "truncate_inode_partial_folio() split the folio non-uniformly at the hole's first "
             "page (and again at the page after it), then the pieces inside the hole left the "
             "page cache. ")
            + f"The page cache afterwards: {cache_notation(cache, 512)}.")

    def question(self) -> str:
        return (f"{_a_file(self.fs, 2 * MiB)} A process punches a hole of {self.n} page(s) "
                f"at page {self.page} "
                f"(fallocate(PUNCH_HOLE|KEEP_SIZE, {self.page * 4} KiB, {self.n * 4} KiB)). "
                f"How many folios does the page cache hold afterwards, what is the order of "
                f"the folio holding page X = {self.x}, and how many pages are still cached? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("A buddy split: halve the folio, keep the half without the page, recurse into "
                "the other, down to order 0 (file folios may be order 1); the hole's end is a "
                "second split point. A dirty ext4 folio does not split.")


class TruncateSplit(Exercise):
    """The folios a shrinking ftruncate() leaves."""

    chapter = 13
    kind = "truncate"
    title = "What does a truncate leave?"
    fields = ("folios in the page cache afterwards", "order of the folio holding the file's "
              "last page", "thp_split_page")

    def setup(self) -> None:
        rng = self.rng
        self.fs = rng.choices(list(FS_LABELS), weights=[45, 42, 13])[0]
        self.size = rng.choice([2, 4]) * MiB
        self.pages = rng.randrange(1, self.size // PAGE_SIZE)
        m, p, fd = thp_file(self.fs, self.size, seed=self.seed)
        p.ftruncate(fd, self.pages * PAGE_SIZE)
        cache = p.page_cache(fd)
        self.answer = (len(cache), _holder(cache, self.pages - 1), m.vmstat()["thp_split_page"])
        self.steps.append(f"ftruncate() removes the folios wholly past page {self.pages} and "
                          f"splits the one the new end falls in (truncate_inode_partial_folio() "
                          f"-> try_folio_split()), unless a dirty ext4 folio refuses; pieces "
                          f"past the end are dropped. The page cache afterwards: "
                          f"{cache_notation(cache, self.size // PAGE_SIZE)}.")

    def question(self) -> str:
        return (f"{_a_file(self.fs, self.size)} A process truncates it to {self.pages} pages "
                f"(ftruncate(fd, {self.pages * 4} KiB)). How many folios does the page cache "
                f"hold afterwards, what is the order of the folio holding the file's last page "
                f"(page {self.pages - 1}), and how much is thp_split_page? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Only the folio holding the new end is split, non-uniformly at that page; the "
                "pieces from the new end on are dropped at once, so the last folio is the "
                "largest aligned piece that ends at or before the new end... or the page's "
                "own order-0 piece. A dirty ext4 folio is not split at all.")


class SharedMapping(Exercise):
    """Who maps a page-cache THP after fork, reads and writes in MAP_SHARED or MAP_PRIVATE
    mappings."""

    chapter = 13
    kind = "mapping"
    title = "Who maps the page-cache folio?"
    fields = ("kpagecount of page X", "processes mapping the folio with a PMD",
              "anonymous pages in all processes",
              "file-backed RSS of all processes in kB (RssFile + RssShmem)")

    def setup(self) -> None:
        rng = self.rng
        self.fs = rng.choice(["shmem", "clean"])
        self.size = rng.choice([2, 4]) * MiB
        n = self.size // PAGE_SIZE
        self.shared = rng.random() < 0.5
        self.parent = rng.choice([("read", rng.randrange(n)), ("write", rng.randrange(n)),
                                  ("nothing", 0)])
        self.children = [rng.choice([("nothing", 0), ("read", rng.randrange(n)),
                                     ("write", rng.randrange(n)),
                                     ("munmap", rng.randrange(n))])
                         for _ in range(rng.randint(1, 4))]
        self.x = rng.randrange(n)
        m, p, fd = thp_file(self.fs, self.size, seed=self.seed)
        a = p.mmap(self.size, "rw", shared=self.shared, fd=fd)
        procs = [p]
        self._act(p, a, *self.parent)
        for _ in self.children:
            procs.append(p.fork())
        for c, (what, page) in zip(procs[1:], self.children, strict=True):
            self._act(c, a, what, page)
        base = self.x & ~511  # the folio holding page X
        folio_pfn = self._cache_pfn(p, fd, base)
        at = a + base * PAGE_SIZE
        pmds = sum(q.vma_at(at) is not None and q.lookup(at).level == "pmd"
                   and q.pfn_at(at) == folio_pfn for q in procs)
        anon = sum(q.status()["RssAnon"] for q in procs) // 4
        rss = sum(q.status()["RssFile"] + q.status()["RssShmem"] for q in procs)
        self.answer = (m.kpagecount([folio_pfn + self.x - base])[0], pmds, anon, rss)
        self.steps.append(f"After the steps: {pmds} process(es) map the folio holding page "
                          f"{self.x} with a PMD, page {self.x} is mapped {self.answer[0]} "
                          f"time(s), {anon} anonymous page(s) exist (copies made by writes to "
                          f"a private mapping), and the processes' file-backed RSS adds up to "
                          f"{rss} kB.")

    @staticmethod
    def _act(q: Process, a: int, what: str, page: int) -> None:
        if what == "read":
            q.read(a + page * PAGE_SIZE)
        elif what == "write":
            q.write(a + page * PAGE_SIZE, 7)
        elif what == "munmap":
            q.read(a)
            q.munmap(a + page * PAGE_SIZE, PAGE_SIZE)

    @staticmethod
    def _cache_pfn(p: Process, fd: int, index: int) -> int:
        from pyfolio.lib.xarray import xa_load

        pfn = xa_load(p.files[fd].f_mapping.i_pages, index)  # the entry: the folio's PFN
        assert isinstance(pfn, int)
        return pfn

    @staticmethod
    def _say(what: str, page: int) -> str:
        return {"read": f"reads page {page}", "write": f"writes page {page}",
                "nothing": "touches nothing",
                "munmap": f"reads page 0, then munmap()s page {page}"}[what]

    def question(self) -> str:
        kind = "MAP_SHARED" if self.shared else "MAP_PRIVATE"
        kids = "; ".join(f"child {i + 1} {self._say(*c)}" for i, c in enumerate(self.children))
        return (f"{_a_file(self.fs, self.size)} A process maps it whole ({kind}, "
                f"PROT_READ|PROT_WRITE, 2 MiB-aligned), {self._say(*self.parent)}, then forks "
                f"{len(self.children)} child(ren); then {kids}. What is the kpagecount "
                f"(mapcount) of the file's page X = {self.x}, how many processes map the "
                f"folio holding it with a PMD, how many anonymous pages do the processes hold "
                f"in all, and what do their RssFile + RssShmem (/proc/PID/status) add up to? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("A fault on an aligned PMD-sized page-cache folio maps it with a PMD "
                "(do_set_pmd()); fork copies no page tables of a file mapping (only the PTEs "
                "of a private one that has anonymous pages); a write to MAP_PRIVATE copies "
                "one page and splits that process's PMD, which for a file just removes it.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WriteOrders, HoleSplit, TruncateSplit,
                                                         SharedMapping)}
