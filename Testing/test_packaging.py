"""Extension packaging: CMake file lists match the disk, catalog entries agree, layers hold."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from EDPSNLib.paths import repo_root

ROOT = repo_root()
MODULES = ("EDPSNFusion", "EDPSNTraining")
LIB = ROOT / "EDPSNFusion" / "EDPSNLib"
SCHEMA_URL = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
    "slicer-extension-catalog-entry-schema-v1.0.2.json#"
)
#: Keys of schema v1.0.2 (additionalProperties is false) and the required ones.
SCHEMA_KEYS = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "build_subdirectory",
    "enabled",
    "tier",
    "dicom_support_rule",
}
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


# --------------------------------------------------------------------------- CMake reading
_TOKEN = re.compile(r'#[^\n]*|"(?:\\.|[^"\\])*"|[()]|[^\s()#"]+')


def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(command, arguments) in file order; set() variables expanded, comments dropped."""
    variables: dict[str, list[str]] = {}
    commands: list[tuple[str, list[str]]] = []
    tokens = [t for t in _TOKEN.findall(path.read_text()) if not t.startswith("#")]
    i = 0
    while i < len(tokens):
        name = tokens[i]
        assert tokens[i + 1] == "(", f"{path}: expected '(' after {name}"
        depth, args, i = 1, [], i + 2
        while depth:
            tok = tokens[i]
            depth += {"(": 1, ")": -1}.get(tok, 0)
            if depth and tok not in "()":
                args.extend(_expand(tok, variables))
            i += 1
        commands.append((name.lower(), args))
        if name.lower() == "set" and args:
            variables[args[0]] = args[1:]
    return commands


def _expand(token: str, variables: dict[str, list[str]]) -> list[str]:
    if token.startswith('"'):
        return [re.sub(r"\\(.)", r"\1", token[1:-1])]
    whole = re.fullmatch(r"\$\{(\w+)\}", token)
    if whole and whole.group(1) in variables:
        return variables[whole.group(1)]
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: ";".join(variables.get(m.group(1), [m.group(0)])), token)
    ]


def _keyword_lists(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for a in args:
        if a in keywords:
            current = a
            out.setdefault(a, [])
        elif current is not None:
            out[current].append(a)
    return out


def _sets(commands: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    return {args[0]: args[1:] for name, args in commands if name == "set" and args}


def module_lists(module: str) -> dict[str, list[str]]:
    """NAME, SCRIPTS and RESOURCES given to slicerMacroBuildScriptedModule in a module folder."""
    commands = cmake_commands(ROOT / module / "CMakeLists.txt")
    calls = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    assert len(calls) == 1, f"{module}/CMakeLists.txt must call slicerMacroBuildScriptedModule once"
    keys = {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"}
    return _keyword_lists(calls[0], keys)


def _files(folder: Path, pattern: str = "*") -> set[str]:
    """Non-hidden files under folder (relative posix paths), without caches and egg-info."""
    found = set()
    for p in folder.rglob(pattern):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") or part in _SKIP_DIRS for part in rel.parts):
            continue
        if any(part.endswith(".egg-info") for part in rel.parts):
            continue
        found.add(rel.as_posix())
    return found


def root_meta() -> dict[str, str]:
    sets = _sets(cmake_commands(ROOT / "CMakeLists.txt"))
    return {k: " ".join(v) for k, v in sets.items() if k.startswith("EXTENSION_")}


def s4ext() -> dict[str, str]:
    out = {}
    for line in (ROOT / "EDPSN.s4ext").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


# --------------------------------------------------------------------------- tests: CMake
def test_root_cmake_declares_the_extension_in_slicer_order():
    commands = cmake_commands(ROOT / "CMakeLists.txt")
    names = [(n, a[0] if a else "") for n, a in commands]
    assert ("project", "EDPSN") in names
    for key in (
        "HOMEPAGE",
        "CATEGORY",
        "CONTRIBUTORS",
        "DESCRIPTION",
        "ICONURL",
        "SCREENSHOTURLS",
        "DEPENDS",
    ):
        assert root_meta().get(f"EXTENSION_{key}"), f"EXTENSION_{key} is missing or empty"
    assert root_meta()["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    order = [
        ("find_package", "Slicer"),
        ("include", "${Slicer_USE_FILE}"),
        *[("add_subdirectory", m) for m in MODULES],
        ("include", "${Slicer_EXTENSION_GENERATE_CONFIG}"),
        ("include", "${Slicer_EXTENSION_CPACK}"),
    ]
    positions = [names.index(step) for step in order]
    assert positions == sorted(positions), "find_package/include/add_subdirectory out of order"
    subdirs = {a[0] for n, a in commands if n == "add_subdirectory"}
    on_disk = {p.parent.name for p in ROOT.glob("*/CMakeLists.txt")}
    assert subdirs == on_disk == set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_scripts_list_every_python_file_on_disk(module):
    lists = module_lists(module)
    assert lists["NAME"] == [module] and "WITH_GENERIC_TESTS" in lists
    scripts = lists["SCRIPTS"]
    assert scripts[0] == f"{module}.py" and len(scripts) == len(set(scripts))
    on_disk = _files(ROOT / module, "*.py")
    missing, unlisted = sorted(set(scripts) - on_disk), sorted(on_disk - set(scripts))
    assert not missing, f"listed in {module}/CMakeLists.txt SCRIPTS but not on disk: {missing}"
    assert not unlisted, (
        f"not listed in {module}/CMakeLists.txt SCRIPTS (would not ship): {unlisted}"
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_resources_list_every_resource_file(module):
    resources = module_lists(module)["RESOURCES"]
    assert f"Resources/Icons/{module}.png" in resources and f"Resources/UI/{module}.ui" in resources
    on_disk = {f"Resources/{f}" for f in _files(ROOT / module / "Resources")}
    missing, unlisted = sorted(set(resources) - on_disk), sorted(on_disk - set(resources))
    assert not missing, f"listed in {module}/CMakeLists.txt RESOURCES but not on disk: {missing}"
    assert not unlisted, f"not listed in {module}/CMakeLists.txt RESOURCES: {unlisted}"


@pytest.mark.parametrize("module", MODULES)
def test_module_registers_its_self_test_under_build_testing(module):
    commands = cmake_commands(ROOT / module / "CMakeLists.txt")
    start = commands.index(("if", ["BUILD_TESTING"]))
    end = next(i for i in range(start, len(commands)) if commands[i][0] == "endif")
    assert ("slicer_add_python_unittest", ["SCRIPT", f"{module}.py"]) in commands[start:end]


def test_default_models_are_listed_and_land_where_paths_finds_them(tmp_path):
    commands = cmake_commands(ROOT / "EDPSNFusion" / "CMakeLists.txt")
    listed = _sets(commands).get("EDPSN_DEFAULT_MODELS", [])
    assert set(listed) == _files(ROOT / "Resources" / "Models"), (
        "EDPSN_DEFAULT_MODELS != Resources/Models"
    )
    installs = [a for n, a in commands if n == "install"]
    destinations = {a[a.index("DESTINATION") + 1] for a in installs}
    assert destinations == {"${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/Models"}
    # An installed extension: EDPSNLib and Resources/ side by side in qt-scripted-modules.
    modules_dir = tmp_path / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    (modules_dir / "EDPSNLib").mkdir(parents=True)
    (modules_dir / "Resources" / "Models").mkdir(parents=True)
    shutil.copy(LIB / "paths.py", modules_dir / "EDPSNLib" / "paths.py")
    spec = importlib.util.spec_from_file_location(
        "installed_paths", modules_dir / "EDPSNLib" / "paths.py"
    )
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    assert installed.default_models_dir() == modules_dir / "Resources" / "Models"


# --------------------------------------------------------------------------- tests: catalog
def test_s4ext_agrees_with_cmake():
    meta, desc = root_meta(), s4ext()
    assert desc["scm"] == "git" and desc["scmurl"].startswith("https://")
    assert desc["depends"].split() == meta["EXTENSION_DEPENDS"].split()
    for key in ("homepage", "category", "iconurl", "description", "contributors", "screenshoturls"):
        cmake_key = "EXTENSION_" + {"iconurl": "ICONURL", "screenshoturls": "SCREENSHOTURLS"}.get(
            key, key.upper()
        )
        assert desc[key] == meta[cmake_key], f"{key} differs between EDPSN.s4ext and CMakeLists.txt"


def test_catalog_json_follows_schema_and_agrees():
    path = ROOT / "EDPSN.json"
    entry = json.loads(path.read_text())
    project = next(a[0] for n, a in cmake_commands(ROOT / "CMakeLists.txt") if n == "project")
    assert path.stem == project
    assert SCHEMA_REQUIRED <= set(entry) <= SCHEMA_KEYS
    assert entry["$schema"] == SCHEMA_URL
    assert entry["category"] == root_meta()["EXTENSION_CATEGORY"]
    assert entry["build_dependencies"] == root_meta()["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    assert entry["scm_url"] == s4ext()["scmurl"]
    assert entry["scm_url"].removesuffix(".git") == root_meta()["EXTENSION_HOMEPAGE"]
    assert entry.get("scm_type", "git") == "git" and 1 <= entry.get("tier", 1) <= 5


def test_icon_urls_point_into_this_repository_and_icons_are_png():
    meta = root_meta()
    repo = meta["EXTENSION_HOMEPAGE"].removeprefix("https://github.com/")
    raw = f"https://raw.githubusercontent.com/{repo}/{s4ext()['scmrevision']}/"
    assert meta["EXTENSION_ICONURL"].startswith(raw)
    icon = ROOT / meta["EXTENSION_ICONURL"].removeprefix(raw)
    with Image.open(icon) as img:
        assert (img.format, img.size) == ("PNG", (128, 128))
    assert all(url.startswith(raw) for url in meta["EXTENSION_SCREENSHOTURLS"].split())
    for module in MODULES:
        with Image.open(ROOT / module / "Resources" / "Icons" / f"{module}.png") as img:
            assert img.format == "PNG" and img.size[0] == img.size[1] >= 64


def test_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:2] == ["Apache", "License"] and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    if sys.version_info >= (3, 11):
        import tomllib

        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        license_ = pyproject["project"]["license"]  # PEP 639 string or the older {text = ...}
        assert (license_ if isinstance(license_, str) else license_["text"]) == "Apache-2.0"


@pytest.mark.parametrize("module", MODULES)
def test_module_category_matches_the_extension_category(module):
    path = ROOT / module / f"{module}.py"
    assert path.is_file(), f"the module file {path} is missing"
    categories = None
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "categories" for t in node.targets
        ):
            categories = [c for c in ast.literal_eval(_strip_translate(node.value))]
    assert categories, f"{path.name} sets no self.parent.categories"
    assert all(c.split(".")[0] == root_meta()["EXTENSION_CATEGORY"] for c in categories)


def _strip_translate(node: ast.expr) -> ast.expr:
    """``[translate("qSlicerAbstractCoreModule", "X")]`` -> ``["X"]`` so it can be evaluated."""
    if isinstance(node, ast.List):
        return ast.List(elts=[_strip_translate(e) for e in node.elts], ctx=ast.Load())
    if isinstance(node, ast.Call) and node.args:
        return node.args[-1]
    return node


# --------------------------------------------------------------------------- tests: layers
def test_no_test_files_inside_module_folders():
    # Slicer treats every .py file beside a module file as a module.
    for module in MODULES:
        names = {Path(f).name for f in _files(ROOT / module, "*.py")}
        bad = {
            n
            for n in names
            if n.startswith("test_") or n.endswith("_test.py") or n == "conftest.py"
        }
        assert not bad, f"test files inside {module}/: {sorted(bad)}"


def _imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_scene_adapter_uses_mrml_and_util_only():
    tree = ast.parse((ROOT / "EDPSNFusion" / "EDPSNGui" / "mrml.py").read_text())
    assert "slicer" in _imported_roots(tree)
    used = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "slicer"
    }
    assert not used & {"app", "modules", "cli"}, f"mrml.py needs the application: {used}"
    assert all(a in {"util", "mrmlScene"} or a.startswith("vtk") for a in used), sorted(used)
