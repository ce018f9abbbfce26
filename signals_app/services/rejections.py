"""Which signals of an import are rejected, as sending, downloads and the preview ask it:
from the import's RejectedSet (one byte per signal), or, for imports validated before it
was kept, from their RejectedSignal rows (one per rejected signal then)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from signals_app.models import RejectedSet, RejectedSignal, SignalImport


class Rejections:
    """The rejected signals of one import's file; held in memory (a byte per signal, or
    the set of indexes of an older import), so a thread may ask it without a database."""

    def __init__(self, flags: bytes | None, legacy: frozenset[int] = frozenset()) -> None:
        self._flags = flags
        self._legacy = legacy

    @classmethod
    def of(cls, signal_import: SignalImport) -> Rejections:
        source = signal_import.validation_source
        stored = (
            RejectedSet.objects.filter(signal_import=source).values_list("flags", flat=True).first()
        )
        if stored is not None:
            return cls(zlib.decompress(bytes(stored)))
        rows = RejectedSignal.objects.filter(signal_import=source).values_list("signal", flat=True)
        return cls(None, frozenset(rows))

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        if self._flags is None:
            return index in self._legacy
        return 0 <= index < len(self._flags) and self._flags[index] == 1

    def __len__(self) -> int:
        return len(self._legacy) if self._flags is None else self._flags.count(1)

    def indexes(self, *, start: int = 0) -> Iterator[int]:
        """The rejected indexes from `start` on, ascending."""
        if self._flags is None:
            yield from sorted(index for index in self._legacy if index >= start)
            return
        flags = self._flags
        index = flags.find(1, start)
        while index >= 0:
            yield index
            index = flags.find(1, index + 1)
