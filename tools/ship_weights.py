"""Make a finished ``train_folds.py --final`` run the shipped default weights of its pair.

The run's weights are installed like any model (``models.install.install_model``: sidecar,
sha256, architecture and tensor shapes checked, the weights renamed into place before the
sidecar) as ``Resources/Models/EDPSN_<pair>.safetensors``; the sidecar gains ``recipe`` (the
command that trained it) and ``protocol`` (where its fold figures are).

Run: .venv/bin/python tools/ship_weights.py runs/folds/<recipe>/<pair>/all-seed0 \
    --recipe "<recipe>: <train_folds command>" --protocol "docs/protocol.md, section '<name>'"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from EDPSNLib.models.install import install_model
from EDPSNLib.models.weights import read_metadata

ROOT = Path(__file__).resolve().parents[1]


def ship(
    run: Path, recipe: str, protocol: str, models: Path = ROOT / "Resources" / "Models"
) -> Path:
    """Check the run's weights, then install them with an annotated sidecar in ``models``."""
    sources = sorted(run.glob("EDPSN_*.safetensors"))
    if len(sources) != 1:
        raise SystemExit(f"{run}: expected one EDPSN_<pair>.safetensors, found {len(sources)}")
    meta = read_metadata(sources[0])
    if not str(meta.get("split", "")).startswith("case-all"):
        raise SystemExit(f"{sources[0]} was trained on {meta.get('split')}, not case-all (--final)")
    # install_model checks sidecar, sha256 and network, and renames the weights in first.
    extra = {"recipe": recipe, "protocol": protocol}
    name = f"EDPSN_{meta['pair']}"
    return install_model(sources[0], name, user_dir=models, overwrite=True, extra=extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the --final run folder (all-seed<s>)")
    ap.add_argument("--recipe", required=True, help="'<name>: <train_folds.py command>'")
    ap.add_argument("--protocol", required=True, help="where the recipe's fold figures are")
    args = ap.parse_args()
    print(ship(args.run, args.recipe, args.protocol))


if __name__ == "__main__":
    main()
