"""Make a finished ``train_folds.py --final`` run the shipped default weights of its pair.

The run's weights are checked the way the registry checks any weights (sidecar, sha256,
architecture, tensor shapes), then copied to ``Resources/Models/EDPSN_<pair>.safetensors`` with
the sidecar, which gains ``recipe`` (the command that trained it) and ``protocol`` (where its
fold figures are). The weights are renamed into place before the sidecar, as installs are.

Run: .venv/bin/python tools/ship_weights.py runs/folds/<recipe>/<pair>/all-seed0 \
    --recipe "<recipe>: <train_folds command>" --protocol "docs/protocol.md, section '<name>'"
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from EDPSNLib.atomic import atomic_path
from EDPSNLib.models.weights import json_safe, load_weights

ROOT = Path(__file__).resolve().parents[1]


def ship(
    run: Path, recipe: str, protocol: str, models: Path = ROOT / "Resources" / "Models"
) -> Path:
    """Check the run's weights, then copy them and their annotated sidecar into ``models``."""
    sources = sorted(run.glob("EDPSN_*.safetensors"))
    if len(sources) != 1:
        raise SystemExit(f"{run}: expected one EDPSN_<pair>.safetensors, found {len(sources)}")
    source = sources[0]
    _model, meta = load_weights(source)
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise SystemExit(f"{source} does not match its sidecar's sha256")
    if not str(meta.get("split", "")).startswith("case-all"):
        raise SystemExit(f"{source} was trained on {meta.get('split')}, not case-all (--final)")
    target = models / f"EDPSN_{meta['pair']}.safetensors"
    meta = {**meta, "recipe": recipe, "protocol": protocol}
    text = json.dumps(json_safe(meta), indent=2, sort_keys=True, allow_nan=False, default=str)
    with atomic_path(target.with_suffix(".json")) as side, atomic_path(target) as weights:
        weights.write_bytes(data)
        side.write_text(text + "\n")
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the --final run folder (all-seed<s>)")
    ap.add_argument("--recipe", required=True, help="'<name>: <train_folds.py command>'")
    ap.add_argument("--protocol", required=True, help="where the recipe's fold figures are")
    args = ap.parse_args()
    print(ship(args.run, args.recipe, args.protocol))


if __name__ == "__main__":
    main()
