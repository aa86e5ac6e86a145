"""Models of include/linux/*.h: folio helpers (mm.h), the address-space structs
(mm_types.h), swap-format entries (swapops.h).
"""
