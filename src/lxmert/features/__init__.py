"""Region features: the bottom-up-attention TSV codec and a memory-mapped feature store.

One concept per module (imports point down this list, never up):

- ``tsv``: read and write the TSV files of the original release.
- ``format``: the store's layout, array specs, manifest reading and validation.
- ``cast``: fast float16 <-> float32 row copies.
- ``pool``: the importer's ordered worker pool (workers die with their parent).
- ``swap``: temporary / old directories, the final swap, recovery after a kill.
- ``store``: :class:`FeatureStore`, the memory-mapped reader.
- ``build``: :func:`build_store`, TSV import (``lxmert features import``).
- ``check``: :func:`check_store`, :func:`verify_checksums` (``lxmert features check``).
- ``export``: :func:`export_tsv` (``lxmert features export``).
- ``union``: :class:`ImageFeatures`, look-up by image id across several stores.

See docs/features.md.
"""

from lxmert.features.build import (
    AUTO_MAX_BOXES,
    DEFAULT_NUM_ATTR_LABELS,
    DEFAULT_NUM_OBJECT_LABELS,
    StoreInfo,
    StoreWriteError,
    build_store,
)
from lxmert.features.check import check_store, verify_checksums
from lxmert.features.export import export_tsv
from lxmert.features.format import FP16_MAX, StoreFormatError
from lxmert.features.store import FeatureStore
from lxmert.features.tsv import (
    FIELDNAMES,
    TsvFormatError,
    decode_row,
    encode_row,
    read_tsv,
    write_tsv,
)
from lxmert.features.union import ImageFeatures, StoreLike

__all__ = [
    "AUTO_MAX_BOXES",
    "DEFAULT_NUM_ATTR_LABELS",
    "DEFAULT_NUM_OBJECT_LABELS",
    "FIELDNAMES",
    "FP16_MAX",
    "FeatureStore",
    "ImageFeatures",
    "StoreFormatError",
    "StoreInfo",
    "StoreLike",
    "StoreWriteError",
    "TsvFormatError",
    "build_store",
    "check_store",
    "decode_row",
    "encode_row",
    "export_tsv",
    "read_tsv",
    "verify_checksums",
    "write_tsv",
]
