"""Region features: the bottom-up-attention TSV codec and a memory-mapped feature store.

``lxmert.features.tsv`` reads and writes the TSV files of the original release;
``lxmert.features.store`` imports them into a directory of memory-mapped arrays that
training reads from (see docs/features.md).
"""

from lxmert.features.store import (
    FeatureStore,
    StoreInfo,
    build_store,
    check_store,
    export_tsv,
)
from lxmert.features.tsv import (
    FIELDNAMES,
    TsvFormatError,
    decode_row,
    encode_row,
    read_tsv,
    write_tsv,
)

__all__ = [
    "FIELDNAMES",
    "FeatureStore",
    "StoreInfo",
    "TsvFormatError",
    "build_store",
    "check_store",
    "decode_row",
    "encode_row",
    "export_tsv",
    "read_tsv",
    "write_tsv",
]
