"""Write a benchmark's table into benchmarks/README.md between its own markers."""
from __future__ import annotations

from pathlib import Path

README = Path(__file__).with_name("README.md")


def write_section(key: str, text: str, readme: Path = README) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    body = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in body and end in body:
        head, rest = body.split(start, 1)
        body = head + block + rest.split(end, 1)[1]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    from metalib.io import atomic_open

    with atomic_open(readme) as f:
        f.write(body.encode())
