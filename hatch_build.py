"""The build hook that compiles the optional C extensions (issue 18; docs/NATIVE.md).

hatchling stays the build backend; this hook runs the platform's C compiler (as Python was
built with it: `sysconfig`'s CC and flags) on each file of `native/`. A compiler that is
missing or fails costs a warning, never the install: the wheel is then pure Python and the
polars path runs (`bounce-analyzer --version` says which path is active).

`BOUNCE_ANALYZER_BUILD_NATIVE=0` skips the compiler; `BOUNCE_ANALYZER_NATIVE_CFLAGS` replaces
the optimisation flags (the sanitizer build of .ci/run passes `-fsanitize=...` there).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Extension module (inside the package) -> its C sources, relative to the project root.
EXTENSIONS: dict[str, list[str]] = {
    "_postfix_c": ["native/postfix.c"],
    "_exim_c": ["native/exim.c"],
    "_normalize_c": ["native/normalize.c"],
}
OPT_FLAGS = "-O2"


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    argv = shlex.split(cc)
    if not argv or shutil.which(argv[0]) is None:
        return None
    return argv


def compile_extension(root: Path, module: str, sources: list[str], out_dir: Path) -> Path:
    """Compile one extension module into `out_dir`; raises on any failure."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (CC, or the one Python was built with)")
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"{module}{suffix}"
    flags = shlex.split(os.environ.get("BOUNCE_ANALYZER_NATIVE_CFLAGS", OPT_FLAGS))
    argv = [
        *cc,
        *flags,
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        f"-I{root / 'native'}",
        f"-I{sysconfig.get_paths()['include']}",
        *(str(root / s) for s in sources),
        "-o",
        str(target),
    ]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}\n{done.stderr.strip()}")
    return target


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if os.environ.get("BOUNCE_ANALYZER_BUILD_NATIVE", "1") == "0":
            return
        root = Path(self.root)
        package = root / "src" / "bounce_analyzer"
        if version == "editable":
            out_dir = package  # built in place: the editable install imports from src/
        else:
            out_dir = Path(tempfile.mkdtemp(prefix="bounce-analyzer-native-"))
        built = []
        for module, sources in EXTENSIONS.items():
            try:
                target = compile_extension(root, module, sources, out_dir)
            except Exception as error:  # noqa: BLE001 - optional: any failure means no C path
                print(
                    f"bounce-analyzer: the C extension {module} was not built; the polars "
                    f"path will run ({error})",
                    file=sys.stderr,
                )
                continue
            built.append(target)
            if version != "editable":
                build_data["force_include"][str(target)] = f"bounce_analyzer/{target.name}"
        if built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
