"""Search finds a kernel name from any run of its parts.

Sphinx indexes ``folio_split_unmapped`` as one word and only falls back to partial matches
when the searched word is in no page at all, so a search for ``folio_split`` (a word many
pages have) never showed the pages that only mention ``folio_split_unmapped``. The English
splitter here also indexes every run of consecutive parts of a ``snake_case`` word
(``folio_split``, ``split_unmapped``, ``folio``, ...), next to the word itself.
"""

from __future__ import annotations

from typing import Any

from sphinx.search import languages
from sphinx.search.en import SearchEnglish


def parts(word: str) -> list[str]:
    """``word`` and every run of its ``_``-separated parts (leading/trailing ``_`` kept off).

    >>> parts("folio_split_unmapped")
    ['folio_split_unmapped', 'folio', 'folio_split', 'split', 'split_unmapped', 'unmapped']
    """
    bits = [b for b in word.split("_") if b]
    if len(bits) < 2:
        return [word]
    runs = ["_".join(bits[i:j]) for i in range(len(bits)) for j in range(i + 1, len(bits) + 1)]
    return [word, *dict.fromkeys(r for r in runs if r != word)]


class SearchEnglishParts(SearchEnglish):
    def split(self, input: str) -> list[str]:
        return [p for w in super().split(input) for p in parts(w)]


def setup(app: Any) -> None:
    languages["en"] = SearchEnglishParts
