"""The package's layout holds: wings import only what comes before them, no import cycle, modules of a
readable size, every command runs from its script and its entry point, and asr 0.1's import paths work."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.commands import run_all
from tests.conftest import ROOT

PACKAGE = ROOT / "asr"
# What each wing may import besides itself; "shared" is the modules at the top of the package.
ALLOWED = {
    "shared": set(),
    "data": {"shared"},
    "model": {"shared"},
    "decoding": {"shared", "data"},
    "training": {"shared", "data", "model", "decoding"},
    "inference": {"shared", "data", "model", "decoding"},  # not training: no Lightning in inference
    "serving": {"shared", "data", "model", "decoding", "inference"},  # the server: inference behind FastAPI
    "cli": {"shared", "data", "model", "decoding", "training", "inference", "serving"},
}
FACADE = {"asr", "asr._moved"}  # the package's front door re-exports from the wings; _moved maps old paths
MAX_LINES = 400
DATA_TABLES = {"asr/data/corpora/sentences.py"}  # the synthetic corpus's sentence list
COMMANDS = ("train", "evaluate", "decode", "prepare", "make_manifest", "build_lm", "tune_lm", "export", "shard",
            "serve")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """asr modules ``path`` imports anywhere (module level or inside functions): ``from asr.x import
    y`` is ``asr.x.y`` when that is a module, else ``asr.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "asr" or a.name.startswith("asr.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "asr":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "shared"


def test_every_wing_imports_only_from_the_wings_before_it():
    assert set(ALLOWED) == {"shared"} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} - {"conf"}
    upward = []
    for module, path in MODULES.items():
        if module in FACADE:
            continue
        wing = _wing(module)
        for target in _imports(path) - FACADE:
            if _wing(target) != wing and _wing(target) not in ALLOWED[wing]:
                upward.append(f"{module} ({wing}) imports {target} ({_wing(target)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {m: sorted(_imports(p) & set(MODULES)) for m, p in MODULES.items() if m not in FACADE}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, []):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [module, target]) if target in stack
                              else f"{module} -> {target}")
            elif target not in state:
                visit(target, stack + [module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_the_checks_above_would_see_an_upward_import_and_a_cycle(tmp_path):
    """The walk reads imports inside functions too (where the old emitters <-> export cycle hid)."""
    source = "def f():\n    from asr.inference.recognizer import Recognizer\n    import asr.training.train\n"
    (tmp_path / "m.py").write_text(source)
    assert _imports(tmp_path / "m.py") == {"asr.inference.recognizer", "asr.training.train"}
    assert _wing("asr.model.features") == "model" and _wing("asr.audio") == "shared" and _wing("asr.model") == "model"


def test_no_module_is_longer_than_400_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in MODULES.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
            and str(p.relative_to(ROOT)) not in DATA_TABLES]
    assert not long, long


def test_every_wing_says_what_goes_in_and_what_comes_out():
    for wing in ALLOWED.keys() - {"shared"}:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) >= 3, wing


SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))


def _entry_point(command: str) -> str | None:
    name = f"asr-{command.replace('_', '-')}"
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess]:
    """``--help`` of every script and every installed entry point, run several at once."""
    commands = {script: [sys.executable, f"scripts/{script}", "--help"] for script in SCRIPTS}
    commands.update({command: [_entry_point(command), "--help"] for command in COMMANDS if _entry_point(command)})
    return run_all(commands, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_runs_help(script, helps):
    run = helps[script]
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout.lower() or "powered by hydra" in run.stdout.lower()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_entry_point_is_on_the_path_and_runs_help(command, helps):
    name = f"asr-{command.replace('_', '-')}"
    assert _entry_point(command), f"{name} is not installed: pip install -e . puts it beside {sys.executable}"
    run = helps[command]
    assert run.returncode == 0, run.stderr
    if command != "train":  # Hydra prints its own help
        assert run.stdout.startswith(f"usage: {name}"), run.stdout[:200]


def test_import_asr_is_clean_of_deprecation_warnings():
    run = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", "import asr"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_readme_ladder_and_asr_0_1_paths_import(monkeypatch):
    """The README's ladder, and the old flat paths (the same module objects, with a warning naming the new one)."""
    import asr.inference.emitters
    import asr.model.features

    monkeypatch.delitem(sys.modules, "asr.features", raising=False)  # imported earlier in this process: again

    ladder = [line.strip() for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
              if line.startswith("from asr") or line.startswith("import asr")]
    assert len(ladder) >= 7
    for line in ladder:
        exec(line.split("#")[0], {})
    with pytest.warns(DeprecationWarning, match="asr.features has moved to asr.model.features"):
        from asr.features import LogMel
    assert LogMel is asr.model.features.LogMel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asr.emitters
        from asr.transcribe import Recognizer
    assert asr.emitters is asr.inference.emitters and Recognizer is asr.Recognizer
    assert asr.inference.emitters.__spec__.name == "asr.inference.emitters"
