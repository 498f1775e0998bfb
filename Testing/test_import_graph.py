"""The core's import graph has no circle: the layer contract (import-linter, run by make test)
orders the subpackages; this checks every pair of modules, inside a subpackage too."""

from __future__ import annotations

import grimp


def test_no_import_circle_between_core_modules() -> None:
    graph = grimp.build_graph("EDPSNLib")  # static, lazy and type-checking imports included
    circles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert len(graph.modules) > 50 and not circles, circles
