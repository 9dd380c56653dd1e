"""Region features: the bottom-up-attention TSV codec and a memory-mapped feature store."""

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
    "TsvFormatError",
    "decode_row",
    "encode_row",
    "read_tsv",
    "write_tsv",
]
