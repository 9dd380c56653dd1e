"""`lxmert score TASK PREDICTIONS ANNOTATIONS`: score a prediction file with the official rules.

The standalone scorer: the same code as `lxmert evaluate` and the training loop's
validation (`lxmert.evaluation.score`), on files - a test-server submission the package
wrote, or anyone else's - against the benchmark's own annotation file.
"""

from __future__ import annotations

import argparse
import json

from lxmert.cli.evaluate import add_vqa_rules_argument, vqa_rules_options

TASKS = ("vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classification")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score a prediction file against official annotations",
                              description=__doc__.split("\n")[0])
    p.add_argument("task", choices=TASKS)
    p.add_argument("predictions", help="prediction file (the test server's format)")
    p.add_argument("annotations", help="annotation file (official json / json lines)")
    add_vqa_rules_argument(p)
    p.add_argument("--lenient", action="store_true",
                   help="NLVR2: score lines the official script would score as wrong (with a warning) "
                        "instead of refusing the file")
    p.add_argument("--gqa-choices", help="GQA: the challenge's *_choices.json (validity, plausibility)")
    p.add_argument("--gqa-scene-graphs", help="GQA: scene graphs (*_sceneGraphs.json) for grounding")
    p.add_argument("--gqa-attentions", help="GQA: attention maps over boxes per question (grounding)")
    p.add_argument("--nlvr2-categories", help="NLVR2: the categories file (per-category accuracy)")
    p.add_argument("--out", help="also write the full result as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.atomic import atomic_write_text
    from lxmert.evaluation import score

    options: dict[str, str] = dict(vqa_rules_options(args))
    for flag, task, key in (("gqa_choices", "gqa", "choices"), ("gqa_scene_graphs", "gqa", "scene_graphs"),
                            ("gqa_attentions", "gqa", "attentions"), ("nlvr2_categories", "nlvr2", "categories")):
        value = getattr(args, flag)
        if value is not None:
            if args.task != task:
                raise ValueError(f"--{flag.replace('_', '-')} applies to {task}, not {args.task}")
            options[key] = value
    result = score(args.task, args.predictions, args.annotations, strict=not args.lenient, **options)
    text = json.dumps(result, indent=2, sort_keys=True, default=str)
    print(json.dumps(result.get("official", result), indent=2, sort_keys=True, default=str))
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0
