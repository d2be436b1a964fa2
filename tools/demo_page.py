"""The one-page report `make demo` writes: each step's pictures and numbers, no scripts.

Pure (standard library only): the demo hands it sections whose pictures are already
copied next to the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Picture:
    file: str  # relative to the page
    caption: str


@dataclass
class Section:
    title: str
    what: str  # one paragraph: what ran, through which workflow
    numbers: list[str] = field(default_factory=list)  # reports, one <pre> each
    pictures: list[Picture] = field(default_factory=list)
    failed: str | None = None


STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;font-size:13px}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
img{image-rendering:pixelated;border:1px solid #ccc;max-width:100%}
figcaption{font-size:13px;color:#555;max-width:520px}.failed{color:#b00}"""


def render(title: str, intro: str, sections: list[Section], footer: str) -> str:
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.what)}</p>")
        if s.failed:
            out.append(f'<p class="failed">Failed: {html.escape(s.failed)}</p>')
        out += [f"<pre>{html.escape(n)}</pre>" for n in s.numbers]
        out += [f'<figure><img src="{html.escape(p.file)}" alt="{html.escape(p.caption)}">'
                f"<figcaption>{html.escape(p.caption)}</figcaption></figure>" for p in s.pictures]
    out.append(f"<p><small>{html.escape(footer)}</small></p></body></html>")
    return "\n".join(out) + "\n"


def write(path: Path, text: str) -> Path:
    """Temp name, then rename: a browser never sees half a page."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
