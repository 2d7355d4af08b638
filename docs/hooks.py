"""MkDocs hook: the benchmark page shows benchmarks/README.md and its plots as they are.

docs/benchmarks/index.md includes the README (a pymdownx snippet); this hook adds every file
under benchmarks/plots/ to the site at benchmarks/plots/..., so the README's relative image
links (``plots/quick/throughput.png``) resolve on the page exactly as they do on the README.
Nothing is copied into docs/: the README and the plots stay the one source.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT / "benchmarks" / "plots"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in sorted(PLOTS.rglob("*")):
        if path.is_file():
            uri = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
