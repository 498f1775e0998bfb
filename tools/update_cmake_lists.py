"""Rewrite EDPSNFusion/CMakeLists.txt's SCRIPTS and default-model lists from the files on disk.

Run after adding a Lib file or new default weights: .venv/bin/python tools/update_cmake_lists.py
(Testing/test_packaging.py fails until the lists match the disk.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def replace_list(text: str, name: str, entries: list[str]) -> str:
    """Replace the body of ``set(NAME ...)`` with one entry per line."""
    body = "".join(f"  {e}\n" for e in entries)
    pattern = re.compile(rf"(set\({name}\n)(.*?)(  \))", re.S)
    if not pattern.search(text):
        raise SystemExit(f"set({name} ...) not found")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def main() -> None:
    cmake = ROOT / "EDPSNFusion" / "CMakeLists.txt"
    lib = sorted(p.name for p in (ROOT / "EDPSNFusion" / "EDPSNLib").glob("*.py"))
    models = sorted(p.name for p in (ROOT / "Resources" / "Models").iterdir() if p.is_file())
    text = cmake.read_text()
    text = replace_list(
        text, "MODULE_PYTHON_SCRIPTS", ["${MODULE_NAME}.py", *(f"EDPSNLib/{n}" for n in lib)]
    )
    text = replace_list(text, "EDPSN_DEFAULT_MODELS", models)
    cmake.write_text(text)
    print(f"{cmake}: {len(lib)} Lib files, {len(models)} model files")


if __name__ == "__main__":
    main()
