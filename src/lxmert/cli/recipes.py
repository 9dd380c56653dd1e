"""`lxmert recipes [NAME]`: list the packaged recipes, or print one (TOML)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recipes", help="list the packaged training recipes (--config NAME), or print one")
    p.add_argument("name", nargs="?", help="print this recipe's TOML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.training.recipe import load_recipe, recipe_names, recipe_path

    if args.name:
        print(recipe_path(args.name).read_text(encoding="utf-8"), end="")
        return 0
    for name in recipe_names():
        recipe = load_recipe(name)
        print(f"{name:<22} task {recipe.task:<9} {recipe_path(name).read_text(encoding='utf-8').splitlines()[0].lstrip('# ')}")
    return 0
