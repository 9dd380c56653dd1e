"""Writing a store back to a bottom-up-attention TSV (``lxmert features export``)."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from lxmert.features.store import FeatureStore
from lxmert.features.tsv import write_tsv

__all__ = ["export_tsv"]

PathLike = str | os.PathLike[str]


def export_tsv(
    store: FeatureStore | PathLike,
    out_path: PathLike,
    ids: Sequence[str] | None = None,
    *,
    newline: str | None = None,
    progress: bool = False,
) -> int:
    """Write stored rows back to a TSV (atomically); returns the number of rows.

    A float32 store reproduces its input rows byte for byte (same values, same canonical
    base64). A float16 store exports the float16 values widened to float32. ``newline``
    defaults to the line terminator of the imported files. Rows truncated at import by
    ``max_boxes`` are exported truncated.
    """
    from tqdm.auto import tqdm

    st = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    rows: Iterable[int] = range(len(st)) if ids is None else [st.row_of(i) for i in ids]
    nl = newline or st.manifest.get("newline", "\n")
    total = len(st) if ids is None else len(ids)
    records = (st.stored_record(r) for r in tqdm(rows, total=total, unit="img", desc="export",
                                                  disable=not progress))
    return write_tsv(out_path, records, newline=nl)
