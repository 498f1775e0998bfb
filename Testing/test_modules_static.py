"""The two Slicer module files and their GUI package (EDPSNFusion/EDPSNGui), checked without
Slicer: they compile, match their .ui files, bind every widget to a parameter of a type Slicer
can connect, use only parameters that exist, carry the metadata Slicer's generic tests need,
and keep torch and numerical code out of the GUI layer."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import py_compile
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from EDPSNLib.paths import repo_root

ROOT = repo_root()
MODULES = ("EDPSNFusion", "EDPSNTraining")
#: The GUI helper package both modules import (shipped inside the EDPSNFusion module folder).
GUI = ROOT / "EDPSNFusion" / "EDPSNGui"
GUI_FILES = sorted(GUI.glob("*.py"))
#: The scene adapter: MRML <-> arrays, so numpy is its business (tested in test_scene.py).
SCENE_ADAPTER = GUI / "mrml.py"
#: Parameter type -> widget classes Slicer's parameterNodeWrapper can connect it to
#: (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py).
CONNECTABLE = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "int-unbounded": {"QSpinBox"},
    "float-unbounded": {"QDoubleSpinBox"},
    "str": {"QLineEdit", "QTextEdit"},
    "str+Choice": {"QComboBox"},
    "enum": {"QComboBox"},
    "Path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"},
}
NUMERICAL = {"numpy", "np", "torch", "scipy", "skimage"}


def _is_module(name: str) -> bool:
    """Whether a dotted name is an importable module (not an attribute of one)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


def _source(module: str) -> str:
    return (ROOT / module / f"{module}.py").read_text()


def _tree(module: str) -> ast.Module:
    return ast.parse(_source(module), filename=f"{module}.py")


def _gui_tree(path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _ui(module: str) -> ET.Element:
    return ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _enum_names() -> set[str]:
    """Enum classes defined in the module files or the GUI package (EDPSNGui.choices)."""
    names = set()
    trees = [_tree(m) for m in MODULES] + [_gui_tree(path) for path in GUI_FILES]
    for tree in trees:
        for cls in _classes(tree).values():
            if any(ast.unparse(b) in ("enum.Enum", "Enum") for b in cls.bases):
                names.add(cls.name)
    return names


def _slicer_aliases(tree: ast.Module) -> dict[str, str]:
    """``from slicer import vtkMRMLScalarVolumeNode as VolumeNode`` -> {"VolumeNode": "vtkMRML..."}."""
    return {
        a.asname or a.name: a.name
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module == "slicer"
        for a in n.names
    }


def _parameters(tree: ast.Module) -> dict[str, str]:
    """Fields of the @parameterNodeWrapper class: name -> kind (a CONNECTABLE key)."""
    wrappers = [
        c
        for c in _classes(tree).values()
        if any(ast.unparse(d) == "parameterNodeWrapper" for d in c.decorator_list)
    ]
    assert len(wrappers) == 1, "expected one @parameterNodeWrapper class"
    enums, aliases, fields = _enum_names(), _slicer_aliases(tree), {}
    for stmt in wrappers[0].body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            text = ast.unparse(stmt.annotation)
            base = text.removeprefix("Annotated[").split(",")[0].rstrip("]").strip()
            base = aliases.get(base, base)
            if base.startswith("vtkMRML"):
                kind = "node"
            elif base in enums:
                kind = "enum"
            elif base == "str" and "Choice(" in text:
                kind = "str+Choice"
            else:
                kind = base
            if kind in ("int", "float") and "WithinRange(" not in text:
                kind += "-unbounded"  # a slider needs bounds
            fields[stmt.target.id] = kind
    return fields


def _widgets(ui: ET.Element) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ui.iter("widget")}


def _dynamic(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name and prop.get("stdset") == "0":
            return prop.findtext("string")
    return None


def _module_info(module: str) -> dict[str, object]:
    """The self.parent.<field> values set in the module class's __init__."""
    cls = _classes(_tree(module))[module]
    out = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = node.targets[0]
            if ast.unparse(target.value) == "self.parent":
                out[target.attr] = ast.literal_eval(node.value)
    return out


def _ui_names(cls: ast.AST) -> set[str]:
    return {
        n.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self.ui"
    }


@pytest.mark.parametrize("module", MODULES)
def test_module_file_compiles_and_has_slicer_classes(module, tmp_path):
    py_compile.compile(
        str(ROOT / module / f"{module}.py"), cfile=str(tmp_path / "x.pyc"), doraise=True
    )
    classes = _classes(_tree(module))
    shared = _classes(_gui_tree(GUI / "module_base.py"))
    for suffix, base in (
        ("", "ScriptedLoadableModule"),
        ("Widget", "EDPSNWidgetBase"),
        ("Logic", "EDPSNLogicBase"),
        ("Test", "EDPSNTestBase"),
    ):
        assert module + suffix in classes, f"{module}.py lacks class {module}{suffix}"
        assert base in {ast.unparse(b) for b in classes[module + suffix].bases}
    # Slicer names a widget's module after its class ("<module>Widget"); the shared base
    # loads "UI/<module>.ui" from that name.
    bases = {ast.unparse(b) for b in shared["EDPSNWidgetBase"].bases}
    assert "ScriptedLoadableModuleWidget" in bases
    assert "ScriptedLoadableModuleLogic" in {ast.unparse(b) for b in shared["EDPSNLogicBase"].bases}
    tests = _classes(_gui_tree(GUI / "selftest_base.py"))
    assert "ScriptedLoadableModuleTest" in {ast.unparse(b) for b in tests["EDPSNTestBase"].bases}
    # Slicer's resourcePath("UI/<module>.ui") resolves below <module>/Resources; the .ui file's
    # top-level class is the name the loaded widget gets.
    assert _ui(module).findtext("class") == module


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.name)
def test_gui_package_compiles_and_never_imports_a_module_file(path, tmp_path):
    # Layers: the module files import EDPSNGui, EDPSNGui imports EDPSNLib; never upwards.
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    roots = set()
    for node in ast.walk(_gui_tree(path)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & set(MODULES), (
        f"EDPSNGui/{path.name} imports the module file {roots & set(MODULES)}"
    )
    assert GUI_FILES and (GUI / "__init__.py") in GUI_FILES


@pytest.mark.parametrize("module", MODULES)
def test_every_self_ui_name_is_a_widget_of_the_ui_file(module):
    own = set().union(*(_ui_names(c) for c in _classes(_tree(module)).values()))
    shared = set().union(*(_ui_names(_gui_tree(path)) for path in GUI_FILES))  # both modules
    assert own and {"progressBar", "statusLabel", "logTextEdit"} <= shared
    missing = (own | shared) - set(_widgets(_ui(module)))
    assert not missing, f"{module}.py uses widgets missing from {module}.ui: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_every_bound_widget_is_a_parameter_of_a_connectable_type(module):
    fields = _parameters(_tree(module))
    bound = {}
    for name, widget in _widgets(_ui(module)).items():
        param = _dynamic(widget, "SlicerParameterName")
        if param is not None:
            assert param in fields, f"{module}.ui binds {name} to unknown parameter '{param}'"
            kind = fields[param]
            assert widget.get("class") in CONNECTABLE.get(kind, ()), (
                f"{name} ({widget.get('class')}) cannot be connected to '{param}' ({kind})"
            )
            bound[param] = name
    assert len(bound) == len(set(bound.values())), "a parameter is bound to two widgets"
    assert len(bound) >= 8


#: Methods of a @parameterNodeWrapper object (not parameters).
WRAPPER_METHODS = {"getValue", "setValue", "connectGui", "disconnectGui"}


def _parameter_uses(tree: ast.AST) -> set[tuple[str, int]]:
    """Parameter names a file uses: ``p.NAME``, ``self._parameterNode.NAME`` and literal
    ``getValue("NAME")`` / ``setValue("NAME", ...)`` (names built at run time are not seen)."""
    uses = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and ast.unparse(n.value) in ("p", "self._parameterNode"):
            if n.attr not in WRAPPER_METHODS:
                uses.add((n.attr, n.lineno))
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("getValue", "setValue")
            and n.args
            and isinstance(n.args[0], ast.Constant)
            and isinstance(n.args[0].value, str)
        ):
            uses.add((n.args[0].value, n.lineno))
    return uses


@pytest.mark.parametrize("module", MODULES)
def test_every_parameter_the_module_uses_exists(module):
    fields = _parameters(_tree(module))
    unknown = sorted(
        (name, line) for name, line in _parameter_uses(_tree(module)) if name not in fields
    )
    assert not unknown, f"{module}.py uses parameters its parameter node lacks: {unknown}"


def test_every_parameter_the_gui_package_uses_exists():
    # The helpers take either module's parameter node as ``p``.
    fields = set().union(*(_parameters(_tree(m)) for m in MODULES))
    for path in GUI_FILES:
        unknown = sorted(u for u in _parameter_uses(_gui_tree(path)) if u[0] not in fields)
        assert not unknown, f"EDPSNGui/{path.name} uses unknown parameters: {unknown}"
    assert _parameter_uses(_gui_tree(GUI / "training_plan.py"))  # the check sees them


@pytest.mark.parametrize("module", MODULES)
def test_every_mrml_combobox_gets_the_scene(module):
    ui = _ui(module)
    combos = {n for n, w in _widgets(ui).items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver")
        for c in ui.iter("connection")
        if c.findtext("sender") == module and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert combos and combos == connected, (
        f"node combo boxes without the scene: {combos - connected}"
    )


def test_metadata_matches_the_extension_and_slicer_generic_tests():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    category = cmake.split('set(EXTENSION_CATEGORY "', 1)[1].split('"', 1)[0]
    for module in MODULES:
        info = _module_info(module)
        assert info["categories"] == [category]
        assert info["title"] and info["contributors"] and all(info["contributors"])
        assert str(info["helpText"]).strip() and str(info["acknowledgementText"]).strip()
        assert (
            "Qu et al" in info["acknowledgementText"] and "Harvard" in info["acknowledgementText"]
        )
    assert _module_info("EDPSNFusion")["dependencies"] == []
    assert _module_info("EDPSNTraining")["dependencies"] == ["EDPSNFusion"]


@pytest.mark.parametrize(
    "module", [*MODULES, *(f"EDPSNGui/{p.name}" for p in GUI_FILES if p != SCENE_ADAPTER)]
)
def test_no_torch_and_no_numerical_code_in_the_gui_layer(module):
    tree = _gui_tree(ROOT / "EDPSNFusion" / module) if "/" in module else _tree(module)
    top_imports = {
        a.name.split(".")[0]
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])
    }
    assert not top_imports & NUMERICAL, (
        f"{module}.py imports {top_imports & NUMERICAL} at load time"
    )
    # numpy / torch / scipy only inside the self-test class (it builds its own test data there).
    defs = (ast.ClassDef, ast.FunctionDef)
    for cls in (n for n in tree.body if isinstance(n, defs)):
        if cls.name.endswith("Test"):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.Name) and node.id in NUMERICAL:
                raise AssertionError(f"{module}.py: {cls.name} uses {node.id} (line {node.lineno})")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                bad = {n.split(".")[0] for n in names} & NUMERICAL
                assert not bad, f"{module}.py: {cls.name} imports {bad} (line {node.lineno})"


def test_core_modules_the_gui_loads_at_import_time_do_not_load_torch():
    # Slicer imports the module files at startup, before the PyTorch extension installed torch.
    lib_imports = set()
    for tree in [_tree(m) for m in MODULES] + [_gui_tree(path) for path in GUI_FILES]:
        for n in tree.body:
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("EDPSNLib"):
                lib_imports.add(n.module)
                # ``from EDPSNLib.jobs import fuse``: the submodule is imported too.
                lib_imports |= {
                    f"{n.module}.{a.name}" for a in n.names if _is_module(f"{n.module}.{a.name}")
                }
    assert "EDPSNLib.jobs.fuse" in lib_imports
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in sorted(lib_imports)
    )
    # ... nor what they call when the module opens (the model lists).
    code += "from EDPSNLib.jobs.fuse import weights_choices\nweights_choices('MRI-PET')\n"
    code += "from EDPSNLib.models.lookup import default_weights_path\n"
    code += "default_weights_path('MRI-PET')\n"
    code += "print(sorted(m for m in ('torch', 'scipy', 'skimage', 'pywt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {sorted(lib_imports)} loads {out.stdout.strip()}"


def test_every_core_attribute_the_gui_layer_uses_exists():
    """``jobs.X``, ``training_jobs.X``, ``scene.X``... in the GUI files name real core objects
    (a renamed or moved core function would otherwise fail only inside Slicer)."""
    import importlib

    files = [ROOT / m / f"{m}.py" for m in MODULES] + GUI_FILES
    missing = []
    for path in files:
        tree = ast.parse(path.read_text())
        imported = {
            alias.asname or alias.name: f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] in ("EDPSNLib", "EDPSNGui")
            for alias in node.names
            if _is_module(f"{node.module}.{alias.name}")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported
                and not hasattr(importlib.import_module(imported[node.value.id]), node.attr)
            ):
                missing.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert len(files) > 2, "no GUI files found"
    assert not missing, missing


@pytest.mark.parametrize("module", MODULES)
def test_no_two_widgets_share_a_cell_of_a_form_or_grid_layout(module):
    """Rows are numbered by hand in the .ui files: a duplicated (row, column) would stack two
    widgets on top of each other in Slicer without any error."""
    for layout in _ui(module).iter("layout"):
        if layout.get("class") not in ("QFormLayout", "QGridLayout"):
            continue
        cells = [(item.get("row"), item.get("column")) for item in layout.findall("item")]
        duplicated = {c for c in cells if cells.count(c) > 1}
        assert not duplicated, f"{module}.ui layout {layout.get('name')}: cells {duplicated}"
