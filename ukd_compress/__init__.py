"""ukd-compress: Universal-KD distillation of fine-tuned teachers into small students.

export/, service/ and benchmarks/ sit beside this folder (the user's layout) and install inside
it, as ukd_compress.export, ukd_compress.service and ukd_compress.benchmarks (pyproject's
package-dir), so no generic top-level name such as ``service`` is taken. Run from a source tree
(a checkout, a Bento's src/), the same names resolve to the folders beside this one.
"""

from pathlib import Path

__version__ = "0.1.0"

_source_tree = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "service").is_dir() and (_source_tree / "service" / "service.py").is_file():
    __path__.append(str(_source_tree))  # noqa: F821  a package's own module search path
