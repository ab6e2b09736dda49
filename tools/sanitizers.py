"""The C extensions' tests under AddressSanitizer and UBSan (issue 18; docs/NATIVE.md).

Builds `native/*.c` a second time, with the sanitizers, into a folder of its own (the
editable install's modules in src/ are left alone), then runs the native tests
(tests/test_native_*.py but the build test) in a Python that loads gcc's ASan runtime first
and allocates with malloc (so that a batch's bytes sit between ASan's red zones), with the
sanitized modules found before the others. Any memory error or undefined behaviour aborts the
run: the exit code is not 0, and CI fails.

    python tools/sanitizers.py                  # what .ci/run does
    python tools/sanitizers.py -k postfix -x    # more arguments go to pytest
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: How the extensions are compiled for this run (hatch_build.py reads this variable).
CFLAGS = (
    "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
)
#: The sanitizers' settings: leaks are not looked for (CPython keeps memory to the end on
#: purpose), the first error stops the process with a stack.
ENVIRONMENT = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "PYTHONMALLOC": "malloc",
}
#: Tests that build wheels rather than run the modules.
LEFT_OUT = ("test_native_build.py",)
#: A pytest plugin (written next to the modules) that puts the sanitized build first on the
#: package's path and checks at the start that it is what loads.
_PLUGIN = """
import importlib
import os
from pathlib import Path

import bounce_analyzer

FOLDER = Path(os.environ["BOUNCE_ANALYZER_SANITIZED"])
bounce_analyzer.__path__.insert(0, str(FOLDER))


def pytest_configure(config):
    for name in {modules!r}:
        loaded = importlib.import_module("bounce_analyzer." + name)
        if Path(loaded.__file__).parent != FOLDER:
            raise RuntimeError(f"{{loaded.__file__}} is not the sanitized build in {{FOLDER}}")
"""


def _runtime() -> str:
    """gcc's ASan runtime (it must be loaded before anything else: LD_PRELOAD)."""
    found = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        raise SystemExit(f"sanitizers: gcc has no ASan runtime ({found!r})")
    return found


def build(out: Path) -> list[str]:
    """The extensions compiled with `CFLAGS` into `out`: their module names."""
    sys.path.insert(0, str(REPO))
    import hatch_build

    os.environ["BOUNCE_ANALYZER_NATIVE_CFLAGS"] = CFLAGS
    for module, sources in hatch_build.EXTENSIONS.items():
        hatch_build.compile_extension(REPO, module, sources, out)
    return list(hatch_build.EXTENSIONS)


def tests() -> list[str]:
    """The native tests, by path."""
    found = sorted((REPO / "tests").glob("test_native_*.py"))
    return [str(path) for path in found if path.name not in LEFT_OUT]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="bounce-analyzer-asan-") as tmp:
        out = Path(tmp)
        modules = build(out)
        (out / "_sanitized_build.py").write_text(_PLUGIN.format(modules=modules))
        env = {
            **os.environ,
            **ENVIRONMENT,
            "LD_PRELOAD": _runtime(),
            "BOUNCE_ANALYZER_SANITIZED": str(out),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(out), os.environ.get("PYTHONPATH")])),
        }
        env.pop("BOUNCE_ANALYZER_NATIVE", None)  # the C path, whatever the caller's setting
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--capture=sys"]
        command += ["-p", "_sanitized_build", *tests(), *argv]
        print("sanitizers:", " ".join(command[1:]), file=sys.stderr, flush=True)
        return subprocess.run(command, cwd=REPO, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
