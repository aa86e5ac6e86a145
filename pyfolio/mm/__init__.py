"""Models of the kernel's mm/*.c files, one module per file at the file's path
(mm/huge_memory.c is :mod:`pyfolio.mm.huge_memory`). A file too large for one module is
continued in modules named after it (:mod:`pyfolio.mm.huge_memory_split`).
"""
