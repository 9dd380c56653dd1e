"""``lxmert features``: import, export, check and describe region-feature stores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features",
        help="region features: TSV <-> memory-mapped store",
        description="Import bottom-up-attention TSV files into a memory-mapped feature store, "
        "export a store back to TSV, verify or describe a store.",
    )
    sub = p.add_subparsers(dest="features_command", metavar="ACTION")

    imp = sub.add_parser("import", help="import TSV file(s) into a new store")
    imp.add_argument("tsv", nargs="+", type=Path, help="TSV file(s); ids must be unique across them")
    imp.add_argument("--out", required=True, type=Path, help="store directory to create")
    imp.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                     help="feature storage type (float32 is bit exact; default float16)")
    imp.add_argument("--skip-bad", action="store_true", help="skip malformed rows and list them")
    imp.add_argument("--max-boxes", type=int, default=None,
                     help="box capacity per image; rows with more boxes are truncated (default: the "
                     "largest num_boxes present, at most 100 unless given)")
    imp.add_argument("--num-object-labels", type=int, default=1600, metavar="N",
                     help="detector object classes: objects_id must lie in [0, N) (default 1600, the "
                     "release's Visual Genome detector; 0 = only check >= 0)")
    imp.add_argument("--num-attr-labels", type=int, default=400, metavar="N",
                     help="detector attribute classes: attrs_id must lie in [0, N) (default 400; 0 = only "
                     "check >= 0)")
    imp.add_argument("--clip-fp16", action="store_true",
                     help="saturate feature values beyond +-65504 instead of failing (float16)")
    imp.add_argument("--workers", type=int, default=0,
                     help="processes decoding base64 (default 0 = auto: up to 4 for inputs over 256 MiB)")
    imp.add_argument("--force", action="store_true", help="replace --out if it exists")
    imp.add_argument("--quiet", action="store_true", help="no progress bars")
    imp.set_defaults(func=_run_import)

    exp = sub.add_parser("export", help="write a store back to one TSV file")
    exp.add_argument("store", type=Path)
    exp.add_argument("--out", required=True, type=Path, help="TSV file to write")
    exp.add_argument("--ids", type=Path, default=None, help="file with one image id per line (subset/order)")
    exp.add_argument("--quiet", action="store_true")
    exp.set_defaults(func=_run_export)

    chk = sub.add_parser("check", help="verify manifest, sizes, checksums and values")
    chk.add_argument("store", type=Path)
    chk.add_argument("--quiet", action="store_true")
    chk.set_defaults(func=_run_check)

    inf = sub.add_parser("info", help="describe a store")
    inf.add_argument("store", type=Path)
    inf.set_defaults(func=_run_info)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _fail(action: str, err: BaseException) -> int:
    """One line for an error the user can act on (an ``OSError`` names its path)."""
    print(f"lxmert features {action}: error: {err}", file=sys.stderr)
    return 1


def _run_import(args: argparse.Namespace) -> int:
    from lxmert.features import build_store

    try:
        info = build_store(
            args.tsv, args.out, dtype=args.dtype, skip_bad=args.skip_bad,
            max_boxes=args.max_boxes, progress=not args.quiet, clip_fp16=args.clip_fp16,
            overwrite=args.force, workers=args.workers,
            num_object_labels=args.num_object_labels or None, num_attr_labels=args.num_attr_labels or None,
        )
    except OSError as err:  # incl. FileExistsError and StoreWriteError (disk full, read-only)
        if getattr(args, "debug", False):
            raise
        return _fail("import", err)
    print(info.summary())
    return 0


def _run_export(args: argparse.Namespace) -> int:
    try:
        return _export(args)
    except OSError as err:
        if getattr(args, "debug", False):
            raise
        return _fail("export", err)


def _export(args: argparse.Namespace) -> int:
    from lxmert.features import FeatureStore, export_tsv

    store = FeatureStore.open(args.store)
    ids = None
    if args.ids is not None:
        ids = [line.strip() for line in args.ids.read_text(encoding="utf-8").splitlines() if line.strip()]
    n = export_tsv(store, args.out, ids=ids, progress=not args.quiet)
    note = "" if store.dtype == "float32" else " (float16 store: features are the rounded values)"
    print(f"wrote {n} rows to {args.out}{note}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from lxmert.features import check_store

    problems = check_store(args.store, progress=not args.quiet)
    if problems:
        for msg in problems:
            print(f"PROBLEM: {msg}", file=sys.stderr)
        print(f"{args.store}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.store}: OK")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from lxmert.features import FeatureStore

    store = FeatureStore.open(args.store)
    m = store.manifest
    size = sum(a["bytes"] for a in m["arrays"].values()) + m["index"]["bytes"]
    print(f"store        {store.path}")
    for note in store.recovery_notes:
        print(f"note         {note}")
    print(f"format       {m['format']} v{m['version']}, created {m.get('created', '?')}")
    print(f"images       {len(store)}")
    print(f"features     [{len(store)}, {store.stored_max_boxes}, {store.feat_dim}] {store.dtype}")
    origin = m.get("max_boxes_from")
    print(f"max boxes    {store.stored_max_boxes}"
          + (f" (largest num_boxes: {origin[0]}, line {origin[1]})" if origin else ""))
    labels = m.get("labels")
    if labels:
        limits = ", ".join(f"{k}={labels[k]}" for k in ("num_object_labels", "num_attr_labels")
                           if labels.get(k) is not None)
        print(f"label ids    objects {labels['obj_id_min']}..{labels['obj_id_max']}, attributes "
              f"{labels['attr_id_min']}..{labels['attr_id_max']}" + (f" (checked: {limits})" if limits else ""))
    else:
        print("label ids    not recorded (store imported by an older lxmert)")
    print(f"size         {size / 2**20:.1f} MiB")
    if m.get("truncated_rows"):
        print(f"truncated    {m['truncated_rows']} row(s) at import")
    if m.get("clipped_values"):
        print(f"clipped      {m['clipped_values']} float16 value(s)")
    print(f"skipped      {len(m.get('skipped', []))} bad row(s) at import")
    for f, line, why in m.get("skipped", []):
        print(f"  {f}, line {line}: {why}")
    print("sources")
    for s in m.get("sources", []):
        print(f"  {s['path']}  {s['rows']} rows, {s['size']} bytes, crc32 {s['crc32']}")
    return 0
