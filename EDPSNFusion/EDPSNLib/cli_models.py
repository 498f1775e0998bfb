"""``edpsn models``: list the shipped default weights and the user's fine-tuned ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from .paths import default_models_dir, user_models_dir


def list_models() -> list[dict]:
    """One row per weights file with a readable sidecar: name, source, pair, date, metrics."""
    from .errors import WeightsError
    from .weights import read_metadata

    rows = []
    for folder, source in ((default_models_dir(), "default"), (user_models_dir(), "user")):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                meta = read_metadata(path)
            except WeightsError as exc:
                rows.append(
                    {"name": path.stem, "source": source, "path": path, "problem": str(exc)}
                )
                continue
            rows.append({
                "name": path.stem, "source": source, "path": path, "pair": meta.get("pair", "?"),
                "date": str(meta.get("date", ""))[:10], "epochs": meta.get("epochs"),
                "metrics": meta.get("metrics") or {},
            })  # fmt: skip
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn models`` (none besides --help)."""
    parser.add_argument("--paths", action="store_true", help="also print each file's path")


def run(args: argparse.Namespace) -> int:
    """Print the table; names work with ``edpsn fuse --weights NAME``."""
    rows = list_models()
    print(f"default models: {default_models_dir()}\nuser models:    {user_models_dir()}\n")
    if not rows:
        print("No weights found; train some with 'edpsn train'.")
    for r in rows:
        if "problem" in r:
            print(f"{r['name']:<28} {r['source']:<8} unreadable: {r['problem']}")
            continue
        m = r["metrics"]
        scores = " ".join(f"{k} {m[k]:.3f}" for k in ("SCD", "Qabf", "VIF", "SSIM") if k in m)
        line = f"{r['name']:<28} {r['source']:<8} {r['pair']:<10} {r['date']:<10} val: {scores}"
        print(line + (f"\n    {Path(r['path'])}" if args.paths else ""))
    return 0
