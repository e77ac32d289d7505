"""The layer order of docs/architecture.md, checked on the imports of every module of ``a2k_toolkit``.

The imports are read with :mod:`ast` (``tests/import_graph.py``), not executed: module-level imports and imports
inside functions, absolute and relative, ``from x import y`` resolved to the module ``x.y`` when ``y`` is one.
Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a.b`` and ``a``, so such an import is an edge to
those packages as well (except the packages the importer lives in, which are already importing). An import under
``if TYPE_CHECKING:`` counts for the layers but closes no cycle (it never runs). The checks:

* every module has a layer (``LAYERS``, bottom to top, the table of docs/architecture.md);
* no import cycle between modules;
* no import of a higher layer (modules of one layer may import each other, without cycles);
* built-in plugin modules (``builtin/``) are imported by built-in plugin modules only: everything else reaches
  built-in components through the catalog, by name, like third-party ones;
* ``models/`` never looks components up (no ``catalog``, no plugin manager): it builds networks from given parts;
* ``plugins/`` and ``integrations/`` import only the public names listed in docs/architecture.md.

``KNOWN_VIOLATIONS`` lists the violations that are being removed, each with who removes it. They do not fail the
test; a warning says when one no longer occurs, so that its entry can be deleted.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from import_graph import (  # noqa: E402
    ROOT_MODULE,
    Layers,
    check_package,
    import_edges,
    layer_of,
    package_modules,
    public_name_violations,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "a2k_toolkit"

# Bottom to top. A module belongs to the group that is its name or, for a group written "name/", the package it is
# in (names are relative to a2k_toolkit). docs/architecture.md has the same table; test_docs_list_the_same_layers
# keeps the two in step.
LAYERS: Layers = [
    (
        "foundation",
        ("version", "errors", "limits", "device", "cpu_runtime", "hashing", "workpool", "keypoints", "motion"),
    ),
    ("io", ("files", "ffmpeg", "audio", "images", "video", "keypoint_files", "mouth_prior", "formats/", "io")),
    ("plugin core", ("hookspecs", "components", "streaming/", "plugins", "catalog", "config", "pose", "rendering")),
    ("models", ("models/",)),
    ("builtin", ("builtin/",)),
    ("pipeline", ("pipeline", "testing/", ROOT_MODULE)),
    ("data", ("data/",)),
    ("eval", ("eval/",)),
    ("training, dubbing", ("training/", "dubbing/")),
    ("commands", ("serve/", "commands/", "cli")),
]

# What plugins/ and integrations/ may import: these modules' names that do not start with "_" (only those in
# __all__ where a module defines one). docs/architecture.md lists the same modules.
PUBLIC_MODULES = frozenset(
    {
        "a2k_toolkit",
        "a2k_toolkit.audio",
        "a2k_toolkit.catalog",
        "a2k_toolkit.components",
        "a2k_toolkit.config",
        "a2k_toolkit.data.clips",
        "a2k_toolkit.device",
        "a2k_toolkit.dubbing",
        "a2k_toolkit.errors",
        "a2k_toolkit.hashing",
        "a2k_toolkit.hookspecs",
        "a2k_toolkit.io",
        "a2k_toolkit.keypoints",
        "a2k_toolkit.models.windows",
        "a2k_toolkit.motion",
        "a2k_toolkit.mouth_prior",
        "a2k_toolkit.limits",
        "a2k_toolkit.pipeline",
        "a2k_toolkit.plugins",
        "a2k_toolkit.rendering",
        "a2k_toolkit.streaming",
        "a2k_toolkit.testing",
        "a2k_toolkit.training",
    }
)

# (importer, imported) -> who removes it and why it is there. Only for violations someone is removing now; a new
# violation is fixed, not added here.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def outside_code() -> list[Path]:
    """The Python files of plugins/ and integrations/ (sources, tests, benchmarks), not build products."""
    files = []
    for top in ("plugins", "integrations"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).parts
            if not any(p in {"build", "dist", "__pycache__", ".venv"} or p.endswith(".egg-info") for p in rel):
                files.append(path)
    return files


# ------------------------------------------------------------------------------------------------------ the tests


def test_layers_cycles_and_lookups():
    failures, notes = check_package(REPO / PACKAGE, PACKAGE, LAYERS, KNOWN_VIOLATIONS)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=1)
    assert not failures, "\n".join(["the package breaks its layer order (docs/architecture.md):", *failures])


def test_known_violations_are_described():
    for (importer, imported), who in KNOWN_VIOLATIONS.items():
        assert importer.startswith(PACKAGE + ".") and imported.startswith(PACKAGE), (importer, imported)
        assert len(who) > 20, f"say who removes {importer} -> {imported}, and why"


# Internal modules one plugin file still imports, each with why and what removes it. Every other import from plugins/
# and integrations/ must be public; a warning says when an entry is no longer needed.
KNOWN_PRIVATE_IMPORTS: dict[tuple[str, str], str] = {
    # (plugin or integration file, internal module it imports): why, until the names get a public home. Empty: the
    # ONNX generator's windowing and post-processing come from the public a2k_toolkit.models.windows and
    # a2k_toolkit.motion
}


def _allowed(violation: str) -> tuple[str, str] | None:
    m = re.match(r"(\S+?):\d+: from (\S+) import", violation)
    return (m.group(1), m.group(2)) if m and (m.group(1), m.group(2)) in KNOWN_PRIVATE_IMPORTS else None


def test_plugins_and_integrations_use_public_names_only():
    files = outside_code()
    assert len(files) > 10, "plugins/ and integrations/ were not found"
    found = public_name_violations(files, package_modules(REPO / PACKAGE, PACKAGE), PUBLIC_MODULES, PACKAGE, REPO)
    bad = [v for v in found if _allowed(v) is None]
    for gone in set(KNOWN_PRIVATE_IMPORTS) - {_allowed(v) for v in found}:
        warnings.warn(f"{gone} no longer imports internals: remove it from KNOWN_PRIVATE_IMPORTS", UserWarning, 2)
    assert not bad, "\n".join(
        ["plugins/ and integrations/ import names that are not public (docs/architecture.md, Public names):", *bad]
    )


def _doc() -> str:
    return (REPO / "docs" / "architecture.md").read_text("utf-8")


def test_docs_list_the_same_layers():
    rows = [line for line in _doc().splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    documented = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        documented.append((cells[1], tuple(re.findall(r"`([^`]+)`", cells[2]))))
    assert documented, "docs/architecture.md has no layer table"
    assert documented == LAYERS


def test_docs_list_the_same_public_modules():
    section = _doc().split("## Public names", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^- `(a2k_toolkit[\w.]*)`", section, re.M))
    assert documented == set(PUBLIC_MODULES)


# ---------------------------------------------------------------------------------------- the checker, on its own


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


TOY_LAYERS = [("low", ("errors", "keypoints")), ("mid", ("io",)), ("high", ("pipeline", ROOT_MODULE))]


def test_checker_reports_an_upward_import_with_file_and_line(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "io.py": "from .errors import X\n",
            "keypoints.py": "import os\n\n\ndef f():\n    from . import io\n",
            "pipeline.py": "from pkg.io import y\n",
        },
    )
    failures, notes = check_package(pkg, "pkg", TOY_LAYERS, known={})
    assert failures == [
        f"{Path('pkg/keypoints.py')}:5: pkg.keypoints imports pkg.io -- layer 1 (low) imports layer 2 (mid), which is "
        "above it"
    ]
    assert not notes


def test_checker_reports_cycles_through_functions_and_package_inits(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "def f():\n    from .keypoints import K\n",
            "keypoints.py": "from .errors import E\n",
            "io/__init__.py": "from ..pipeline import run\n",
            "io/files.py": "",
            "pipeline.py": "from .io.files import atomic\n",
        },
    )
    layers = [("low", (ROOT_MODULE, "errors", "keypoints", "io/", "pipeline"))]
    failures, _ = check_package(pkg, "pkg", layers, known={})
    assert sorted(failures) == sorted(
        [
            f"import cycle: pkg.errors -> pkg.keypoints ({Path('pkg/errors.py')}:2) -> pkg.errors "
            f"({Path('pkg/keypoints.py')}:1)",
            f"import cycle: pkg.io -> pkg.pipeline ({Path('pkg/io/__init__.py')}:1) -> pkg.io "
            f"({Path('pkg/pipeline.py')}:1)",
        ]
    )


def test_checker_allowlist_silences_and_notes_stale_entries(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "errors.py": "from .io import x\n", "io.py": ""})
    known = {("pkg.errors", "pkg.io"): "someone, for a reason", ("pkg.io", "pkg.errors"): "already gone"}
    failures, notes = check_package(pkg, "pkg", TOY_LAYERS, known=known)
    assert failures == []
    assert notes == ["KNOWN_VIOLATIONS: pkg.io no longer imports pkg.errors (already gone); remove the entry"]
    pkg.joinpath("extra.py").write_text("")  # a module in no layer
    failures, _ = check_package(pkg, "pkg", TOY_LAYERS, known=known)
    assert len(failures) == 1 and "module pkg.extra has no layer" in failures[0]


def test_public_name_check(tmp_path):
    modules = package_modules(REPO / PACKAGE, PACKAGE)
    code = tmp_path / "plugin.py"
    code.write_text(
        "from a2k_toolkit import Keypoints, io\n"
        "from a2k_toolkit.io import load_image, _parse_ffmpeg_report\n"
        "from a2k_toolkit.builtin.sketch import SketchRenderer\n"
        "import a2k_toolkit.models.config\n"
        "from a2k_toolkit import catalog, Pipeline, __version__, Catalog\n"
    )
    bad = public_name_violations([code], modules, PUBLIC_MODULES, PACKAGE, REPO)
    assert [b.split(": ", 1)[1] for b in bad] == [
        "from a2k_toolkit.io import _parse_ffmpeg_report -- not a public name",
        "from a2k_toolkit.builtin.sketch import SketchRenderer -- not a public name",
        "import a2k_toolkit.models.config -- not a public module",
        "from a2k_toolkit import Catalog -- not a public name",
    ]


@pytest.mark.parametrize("module", ["a2k_toolkit.io", "a2k_toolkit.audio", "a2k_toolkit.keypoints"])
def test_io_audio_keypoints_reach_nothing_above_them(module):
    """The cycle io <-> audio <-> keypoints is gone: what each imports, directly or not, is at most its own layer
    and never leads back to it (no lazy re-export either)."""
    graph = defaultdict(set)
    for e in import_edges(package_modules(REPO / PACKAGE, PACKAGE), REPO, PACKAGE):
        graph[e.importer].add(e.imported)
    reached, todo = set(), list(graph[module])
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo += graph[m]
    assert module not in reached
    assert all(layer_of(m, LAYERS, PACKAGE) <= layer_of(module, LAYERS, PACKAGE) for m in reached), sorted(reached)
