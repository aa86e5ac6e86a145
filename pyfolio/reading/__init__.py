"""The book's tools for reading code: the code-review lab of chapter 12
(:mod:`pyfolio.reading.review`) and the kernel cross-reference (:mod:`pyfolio.reading.xref`).
"""
