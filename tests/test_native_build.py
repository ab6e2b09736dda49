"""The optional C extensions at install (issue 18, docs/NATIVE.md "Build"): without a compiler
the wheel is pure Python and the polars path runs; with one the wheel carries both modules;
`BOUNCE_ANALYZER_NATIVE=0` forces the polars path whatever was built.

The wheels are built with hatchling itself (no build isolation: it is a test dependency), which
takes a fraction of a second, and installed with `pip install --target` into a folder of their
own that `PYTHONPATH` puts before this checkout's editable install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from bounce_analyzer import native

REPO = Path(__file__).resolve().parents[1]
MODULES = ("_postfix_c", "_exim_c", "_normalize_c")
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def _build(out: Path, **env: str) -> tuple[Path, str]:
    """A wheel of this checkout built into `out` with `env` added: (its path, the build's
    stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (wheel,) = out.glob("bounce_analyzer-*.whl")
    return wheel, done.stderr


def _install(wheel: Path, target: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def _run(target: Path, code: list[str], **env: str) -> str:
    """`python <code>` with the installed copy in `target` first on the path."""
    environment = {key: value for key, value in os.environ.items() if key != native.ENV}
    environment |= {"PYTHONPATH": str(target), **env}
    done = subprocess.run(
        [sys.executable, *code], cwd=target.parent, env=environment,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module")
def without_compiler(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    out = tmp_path_factory.mktemp("nocc")
    wheel, stderr = _build(out / "dist", CC="/nonexistent")
    return wheel, stderr, _install(wheel, out / "site")


@pytest.fixture(scope="module")
def with_compiler(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("cc")
    wheel, _ = _build(out / "dist")
    return wheel, _install(wheel, out / "site")


def test_without_a_compiler_the_wheel_is_pure_python(
    without_compiler: tuple[Path, str, Path],
) -> None:
    wheel, stderr, _ = without_compiler
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    metadata = zipfile.ZipFile(wheel).read("bounce_analyzer-0.1.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: true" in metadata
    assert "Tag: py3-none-any" in metadata
    # One warning per module, naming it and what runs instead.
    for module in MODULES:
        assert f"the C extension {module} was not built; the polars path will run" in stderr


def test_without_a_compiler_the_installed_copy_runs_the_polars_path(
    without_compiler: tuple[Path, str, Path],
) -> None:
    _, _, site = without_compiler
    where = _run(site, ["-c", "import bounce_analyzer; print(bounce_analyzer.__file__)"])
    assert Path(where.strip()).is_relative_to(site)
    version = _run(site, ["-m", "bounce_analyzer", "--version"]).splitlines()
    assert version == [
        "bounce-analyzer 0.1.0",
        "parser: polars path (no C extension built)",
    ]


def test_with_a_compiler_the_wheel_carries_both_modules(with_compiler: tuple[Path, Path]) -> None:
    wheel, site = with_compiler
    tag = f"-cp{sys.version_info[0]}{sys.version_info[1]}-"
    assert tag in wheel.name and not wheel.name.endswith("-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"bounce_analyzer/{module}{SUFFIX}" for module in MODULES} <= names
    # The installed modules load, from the installed copy, and say an interface version.
    code = (
        "import importlib\n"
        f"for name in {MODULES!r}:\n"
        "    m = importlib.import_module('bounce_analyzer.' + name)\n"
        "    print(m.__file__, isinstance(m.ABI_VERSION, int))\n"
    )
    for line in _run(site, ["-c", code]).splitlines():
        path, has_version = line.split()
        assert Path(path).is_relative_to(site) and has_version == "True"


def test_the_environment_forces_the_polars_path(with_compiler: tuple[Path, Path]) -> None:
    _, site = with_compiler
    version = _run(site, ["-m", "bounce_analyzer", "--version"], **{native.ENV: "0"})
    assert version.splitlines()[1] == f"parser: polars path ({native.ENV}=0)"
    code = (
        "from bounce_analyzer import native; print(native.module('postfix'), native.module('exim'))"
    )
    assert _run(site, ["-c", code], **{native.ENV: "0"}).split() == ["None", "None"]


def test_native_module_answers_none_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "0")
    assert native.disabled()
    assert native.module("postfix") is None and native.module("exim") is None
    assert native.module("sendgrid") is None  # no C tokenizer for that source at all
    assert native.describe() == f"parser: polars path ({native.ENV}=0)"
    monkeypatch.setenv(native.ENV, "1")
    assert not native.disabled()
