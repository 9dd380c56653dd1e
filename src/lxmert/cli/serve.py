"""``lxmert serve``: ask a VQA model questions from a browser or over HTTP (docs/serving.md)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="a web page and HTTP JSON API over a QA checkpoint (localhost by default)",
        description=(
            "Serve a fine-tuned QA checkpoint: open http://HOST:PORT/ in a browser, pick an image of the "
            "feature store (the built-in world's test scenes after `make demo`) or upload one (needs "
            "--detector), ask a question, see the top answers and the boxes shaded by the model's "
            "attention. The JSON API (POST /api/vqa, GET /api/model, /healthz, /readyz, ...) is in "
            "docs/serving.md. Concurrent requests are batched into one forward. Needs the 'serve' "
            "extra: pip install 'lxmert[serve]'."
        ),
    )
    p.add_argument("--model", required=True, help="QA checkpoint directory (or a run: its last checkpoint)")
    p.add_argument("--features", default=None, metavar="STORE", help="feature store whose image ids can be asked about")
    p.add_argument("--pictures", default=None, metavar="DIR",
                   help="pictures of the store's images, DIR/<img_id>.jpg|.png (a generated world's are found "
                        "without it)")
    p.add_argument("--detector", default=None, metavar="WEIGHTS",
                   help="detector weights (pytorch_model.bin of unc-nlp/frcnn-vg-finetuned): answer about uploads")
    p.add_argument("--detector-config", default=None, help="detector config (our JSON or the demo's config.yaml)")
    p.add_argument("--random-init-detector", action="store_true",
                   help="random detector weights (load tests only: answers about uploads mean nothing)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device of the models (default %(default)s)")
    p.add_argument("--max-batch", type=int, default=16, help="questions per forward at most (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for more questions after its first (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="questions waiting for the model before new ones get 503 (default %(default)s)")
    p.add_argument("--detector-workers", type=int, default=1, help="threads running the detector (default %(default)s)")
    p.add_argument("--detector-queue", type=int, default=8,
                   help="uploads waiting for the detector before new ones get 503 (default %(default)s)")
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections at most; past it uvicorn answers a plain-text 503 (default %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take (default %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="request body limit in MiB (default %(default)s)")
    p.add_argument("--max-image-side", type=int, default=4096, help="pixels per image side (default %(default)s)")
    p.add_argument("--max-question-chars", type=int, default=200, help="question length (default %(default)s)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.errors import LxmertError

    try:
        from lxmert.serve.server import run_server
    except ImportError as err:
        missing = (err.name or "starlette").split(".")[0]
        raise LxmertError(f"lxmert serve needs the 'serve' extra ({missing} is missing): "
                          f"pip install 'lxmert[serve]'") from None
    from lxmert.pipeline import VQAPipeline, pipeline
    from lxmert.serve.catalog import ImageCatalog
    from lxmert.serve.limits import Limits
    from lxmert.serve.service import VQAService

    if args.features is None and args.detector is None and not args.random_init_detector:
        raise ValueError("nothing to ask about: give --features STORE (image ids) and/or --detector WEIGHTS (uploads)")
    if args.pictures and not args.features:
        raise ValueError("--pictures shows the images of --features STORE: give the store too")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.max_connections < 1:
        raise ValueError(f"--max-connections must be >= 1, got {args.max_connections}")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_image_side=args.max_image_side,
                    max_image_pixels=min(Limits().max_image_pixels, args.max_image_side ** 2),
                    max_question_chars=args.max_question_chars)
    if args.random_init_detector:
        print("WARNING: random detector weights: answers about uploaded images mean nothing.", file=sys.stderr)
    vqa = pipeline("vqa", args.model, detector=args.detector, detector_config=args.detector_config,
                   random_init_detector=args.random_init_detector, features=args.features, device=args.device)
    if not isinstance(vqa, VQAPipeline):  # pipeline("vqa") always is; a guard for the type checker
        raise TypeError(type(vqa).__name__)
    service = VQAService(vqa, catalog=ImageCatalog(vqa.store, args.pictures), limits=limits,
                         max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000.0, max_queue=args.max_queue,
                         detector_workers=args.detector_workers, detector_queue=args.detector_queue,
                         timeout_s=args.timeout)
    store = f"{vqa.store.path} ({len(vqa.store)} images)" if vqa.store is not None else "none"
    detector = "none" if vqa.extractor is None else ("RANDOM weights" if vqa.extractor.random_init else args.detector)
    print(f"lxmert serve: {type(vqa.model).__name__} from {args.model} ({len(vqa.answers)} answers); "
          f"features {store}; detector {detector}; open http://{_url_host(args.host)}:{args.port}/", flush=True)
    stopped_by = run_server(service, args.host, args.port, log_level=args.log_level,
                            limit_concurrency=args.max_connections)
    print(f"lxmert serve: stopped{f' ({stopped_by})' if stopped_by else ''}", flush=True)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
