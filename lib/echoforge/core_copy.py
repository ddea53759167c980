"""Keep the Slicer module's copy of the numpy-only core identical to :mod:`echoforge.core`.

3D Slicer runs the module with its own Python, where the ``echoforge`` library is not installed,
so the module carries the core as the package ``EchoForgeCore`` next to ``EchoForgeLib``
(``slicer_extension/EchoForge/EchoForgeCore``); its CMake lists those files and ships them with the
module. The copy is byte for byte the core, the CMake list names exactly its files, and the tests
check both::

    python -m echoforge.core_copy            # refresh the copy after changing lib/echoforge/core
    python -m echoforge.core_copy --check    # exit status 1 (and the differing files) if it is stale
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent / "core"
#: Where the module keeps its copy, in a source checkout.
SLICER_COPY = Path(__file__).resolve().parents[2] / "slicer_extension" / "EchoForge" / "EchoForgeCore"


_CMAKE_ENTRY = re.compile(r"^  \$\{MODULE_NAME\}Core/\w+\.py\n", re.MULTILINE)


def core_files() -> list[str]:
    """The core's file names (every ``.py`` of :mod:`echoforge.core`), sorted."""
    return sorted(p.name for p in CORE.glob("*.py"))


def differences(copy: Path = SLICER_COPY) -> list[str]:
    """What differs between the core and ``copy``: files missing, changed or left over in the copy, and
    ``CMakeLists.txt`` when the module's CMake (beside the copy) does not list exactly the core's files."""
    ours = set(core_files())
    theirs = {p.name for p in copy.glob("*.py")} if copy.is_dir() else set()
    changed = [n for n in sorted(ours & theirs) if not filecmp.cmp(CORE / n, copy / n, shallow=False)]
    cmake = copy.parent / "CMakeLists.txt"
    text = cmake.read_text(encoding="utf-8") if cmake.exists() else ""
    listed = bool(text) and _cmake_with_core_files(text) != text
    return sorted(ours - theirs) + changed + sorted(theirs - ours) + (["CMakeLists.txt"] if listed else [])


def write_copy(copy: Path = SLICER_COPY) -> list[str]:
    """Make ``copy`` (and its CMake list) identical to the core; returns the files written or removed."""
    stale = differences(copy)
    copy.mkdir(parents=True, exist_ok=True)
    for name in stale:
        if name == "CMakeLists.txt":
            cmake = copy.parent / name
            _write(cmake, _cmake_with_core_files(cmake.read_text(encoding="utf-8")).encode("utf-8"))
        elif (CORE / name).exists():
            _write(copy / name, (CORE / name).read_bytes())
        else:
            (copy / name).unlink()
    return stale


def _cmake_with_core_files(text: str) -> str:
    """The module's CMake text with its ``${MODULE_NAME}Core/...`` script lines naming the core's files."""
    entries = "".join(f"  ${{MODULE_NAME}}Core/{name}\n" for name in core_files())
    found = list(_CMAKE_ENTRY.finditer(text))
    if not found:
        return text
    return text[:found[0].start()] + entries + _CMAKE_ENTRY.sub("", text[found[0].start():], count=len(found))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echoforge.core_copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the copy is identical")
    parser.add_argument("--into", type=Path, default=SLICER_COPY, help=f"the copy (default {SLICER_COPY})")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.into)
        for name in stale:
            print(f"{args.into / name}: differs from {CORE / name}")
        return 1 if stale else 0
    written = write_copy(args.into)
    print(f"{args.into}: {len(written)} file(s) updated" + (f" ({', '.join(written)})" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
