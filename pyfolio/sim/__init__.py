"""The simulator's own machinery, below every kernel model: the machine and its memmap
arrays, sizes and units, the exception hierarchy, the trace of events and costs.

Nothing here models a kernel function; the kernel models in :mod:`pyfolio.mm`,
:mod:`pyfolio.include`, :mod:`pyfolio.arch`, :mod:`pyfolio.fs`, :mod:`pyfolio.kernel` and
:mod:`pyfolio.lib` act on this state. Modules here import only from here.
"""
