"""mkdocs hook: the example programs the pages link to (`../examples/...`) are published
with the site, so that those links resolve there as they do in the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any) -> Files:
    for path in sorted((ROOT / "examples").rglob("*.py")):
        uri = path.relative_to(ROOT).as_posix()
        files.append(File(uri, src_dir=str(ROOT), dest_dir=config["site_dir"], use_directory_urls=False))
    return files


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """`../examples/x.py` from a page in docs/ is `examples/x.py` in the site."""
    return markdown.replace("](../examples/", "](examples/")
