"""The layers of the codebase, read from the imports of every module (imports inside
functions included), and the rule that a private name stays in its module.

Layers, lowest first; a package may import its own modules and packages of lower layers
only, never one of its own layer:
  0  cardiac_data, diffusion, evaluation, backbones   (data, diffusion, evaluation, shared nets)
  1  mcsdr_jax, adacon_jax, lamod_jax, segmentation   (the methods)
  2  training                                         (the loop; composes methods)
  3  launch, benchmarks                               (entry points; they alone read configs/)
`configs` imports only itself; `tests` may import anything. A name with a leading
underscore defined in one module is used in no other (`from m import _x`, `m._x`).
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = (("cardiac_data", "diffusion", "evaluation", "backbones"),
          ("mcsdr_jax", "adacon_jax", "lamod_jax", "segmentation"),
          ("training",),
          ("launch", "benchmarks"))
LAYER = {pkg: i for i, pkgs in enumerate(LAYERS) for pkg in pkgs}
CONFIGS = "configs"
PACKAGES = set(LAYER) | {CONFIGS}


def python_files(root: pathlib.Path, packages=None):
  for pkg in sorted(packages or PACKAGES | {"tests"}):
    yield from sorted((root / pkg).rglob("*.py"))


def imported_modules(tree: ast.AST, module: str):
  """(line, imported module, names or None) of every import statement of `tree`."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name, None
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:      # Relative import: resolve against the importing module.
        parts = module.split(".")[:-node.level]
        base = ".".join(parts + ([base] if base else []))
      yield node.lineno, base, [a.name for a in node.names]


def layer_violations(root: pathlib.Path) -> list[str]:
  """'file:line: pkg → imported (why)' for each import that breaks the layers."""
  out = []
  for path in python_files(root, PACKAGES):
    rel = path.relative_to(root)
    src = rel.parts[0]
    module = ".".join(rel.with_suffix("").parts)
    for line, name, _ in imported_modules(ast.parse(path.read_text()), module):
      dst = name.split(".")[0]
      if dst not in PACKAGES or dst == src:
        continue
      where = f"{rel}:{line}: {src} → {name}"
      if dst == CONFIGS and LAYER.get(src) != len(LAYERS) - 1:
        out.append(f"{where} (configs are read by the launchers only)")
      elif src == CONFIGS:
        out.append(f"{where} (configs import nothing of the codebase)")
      elif dst != CONFIGS and LAYER[dst] > LAYER[src]:
        out.append(f"{where} (upward: layer {LAYER[src]} imports layer {LAYER[dst]})")
      elif dst != CONFIGS and LAYER[dst] == LAYER[src]:
        out.append(f"{where} (same layer {LAYER[src]}: move what they share down a layer)")
  return out


def private_name_violations(root: pathlib.Path) -> list[str]:
  """'file:line: module._name' for each private name used outside its module."""
  out = []
  for path in python_files(root):
    rel = path.relative_to(root)
    module = ".".join(rel.with_suffix("").parts)
    tree = ast.parse(path.read_text())
    project = PACKAGES | {"tests"}
    aliases = set()     # local names bound to a project module (or a name in one)
    for line, name, names in imported_modules(tree, module):
      if name.split(".")[0] not in project:
        continue
      for n in names or ():
        if n.startswith("_") and not n.startswith("__"):
          out.append(f"{rel}:{line}: from {name} import {n}")
    for node in ast.walk(tree):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        base = getattr(node, "module", None) or ""
        for a in node.names:
          if (base or a.name).split(".")[0] in project:
            aliases.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
          and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
          and node.value.id in aliases):
        out.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr}")
  return out


def test_layers_hold():
  assert layer_violations(ROOT) == []


def test_private_names_stay_in_their_module():
  assert private_name_violations(ROOT) == []


@pytest.mark.parametrize("src, line, why", [
    ("cardiac_data/x.py", "from mcsdr_jax import task", "upward"),
    ("mcsdr_jax/x.py", "import training.loop", "upward"),
    ("mcsdr_jax/x.py", "from adacon_jax import losses", "same layer"),
    ("segmentation/x.py", "def f():\n  from configs import common", "launchers only"),
    ("training/x.py", "from launch import train", "upward"),
    ("configs/x.py", "from training import optim", "import nothing"),
])
def test_checker_reports_a_deliberate_violation(tmp_path, src, line, why):
  """The checks can fail: a tree with one bad import (or private use) is reported."""
  path = tmp_path / src
  path.parent.mkdir(parents=True)
  path.write_text(line + "\n")
  found = layer_violations(tmp_path)
  assert len(found) == 1 and why in found[0], found


def test_checker_allows_downward_imports(tmp_path):
  for src, line in (("launch/a.py", "from configs import pediatric\nfrom training import loop"),
                    ("training/a.py", "from mcsdr_jax import task"),
                    ("mcsdr_jax/a.py", "from cardiac_data import ef_data\nfrom mcsdr_jax import model"),
                    ("benchmarks/a.py", "from training import loop")):
    (tmp_path / src).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / src).write_text(line + "\n")
  assert layer_violations(tmp_path) == []


def test_private_checker_reports_cross_module_use(tmp_path):
  (tmp_path / "training").mkdir()
  (tmp_path / "training" / "a.py").write_text("def _hidden():\n  pass\n")
  (tmp_path / "launch").mkdir()
  (tmp_path / "launch" / "b.py").write_text(
      "from training import a\nfrom training.a import _hidden\na._hidden()\n")
  found = private_name_violations(tmp_path)
  assert found == ["launch/b.py:2: from training.a import _hidden", "launch/b.py:3: a._hidden"]


def test_pyproject_packages_every_package():
  """`pip install .` ships every package of the layers and the configs."""
  import tomllib  # pylint: disable=g-import-not-at-top
  with open(ROOT / "pyproject.toml", "rb") as f:
    include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
  assert sorted(p.rstrip("*") for p in include) == sorted(PACKAGES)
  on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
  assert on_disk == PACKAGES
