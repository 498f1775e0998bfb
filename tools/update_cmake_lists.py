"""Rewrite EDPSNFusion/CMakeLists.txt's SCRIPTS and default-model lists from the files on disk.

SCRIPTS: the module file, then the packages that ship beside it: EDPSNGui (GUI helpers of both
modules) and EDPSNLib (the core). Run after adding a Lib or Gui file or new default weights: .venv/bin/python tools/update_cmake_lists.py
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


#: Python packages shipped inside the EDPSNFusion module folder, in SCRIPTS order.
PACKAGES = ("EDPSNGui", "EDPSNLib")


def package_files(name: str) -> list[str]:
    """The .py files of one package folder beside EDPSNFusion.py, subpackages included
    (sorted paths relative to the package folder)."""
    folder = ROOT / "EDPSNFusion" / name
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py"))


def main() -> None:
    cmake = ROOT / "EDPSNFusion" / "CMakeLists.txt"
    packages = {name: package_files(name) for name in PACKAGES}
    models = sorted(p.name for p in (ROOT / "Resources" / "Models").iterdir() if p.is_file())
    scripts = ["${MODULE_NAME}.py"]
    for name, files in packages.items():
        scripts += [f"{name}/{n}" for n in files]
    text = replace_list(cmake.read_text(), "MODULE_PYTHON_SCRIPTS", scripts)
    text = replace_list(text, "EDPSN_DEFAULT_MODELS", models)
    cmake.write_text(text)
    counts = ", ".join(f"{len(files)} {name} files" for name, files in packages.items())
    print(f"{cmake}: {counts}, {len(models)} model files")


if __name__ == "__main__":
    main()
