"""The site's files from a `Site`: HTML from the Jinja templates beside this module, the
stylesheet, and the thumbnails. Returns them as {relative path: bytes}; `write` puts them on disk.

Templates autoescape, so every name, description, path and SQL text from the project or the
data is HTML-escaped; the SVG drawn here escapes its own text with `html.escape`.
"""
from __future__ import annotations

import re
import shutil
from html import escape
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import udfs
from udfs.image_struct import IMAGE_DDL

from ..nodes import MODEL, SEED, SOURCE
from . import charts
from .content import FOLDERS, Page, Site, status_class, status_word
from .lineage import Look, lineage_svg

HERE = Path(__file__).resolve().parent
_CODE = re.compile(r"`([^`]+)`")


def _text(value) -> Markup:
    """User text, escaped, with `backticks` shown as code."""
    return Markup(_CODE.sub(r"<code>\1</code>", str(escape(str(value or "")))))


def _first_sentence(text: str | None) -> str:
    text = " ".join(str(text or "").split())
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    return text[: match.start() + 1] if match else text


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _rows(n: int) -> str:
    return _count(n, "row")


def _status_chip(result: dict | None) -> Markup:
    status = result.get("status") if result else None
    return Markup(f'<span class="chip {status_class(status)}">{escape(status_word(status))}</span>')


def _test_summary(tests) -> Markup:
    if not tests:
        return Markup('<span class="muted">none</span>')
    counts: dict[str, int] = {}
    for test in tests:
        word = status_word(test.result.get("status") if test.result else None)
        counts[word] = counts.get(word, 0) + 1
    words = {"unchanged": "pass"}  # a test skipped as unchanged passed with the same inputs before
    merged: dict[str, int] = {}
    for word, n in counts.items():
        merged[words.get(word, word)] = merged.get(words.get(word, word), 0) + n
    return Markup(" ".join(f'<span class="chip {_word_class(w)}">{n} {escape(w)}</span>'
                           for w, n in sorted(merged.items())))


def _word_class(word: str) -> str:
    return {"ok": "good", "pass": "good", "unchanged": "good", "fail": "bad", "error": "bad",
            "warn": "warn", "not run": "unknown"}.get(word, "skipped")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(
        text=_text, first_sentence=_first_sentence, status_chip=_status_chip, test_summary=_test_summary,
        word_class=_word_class, result_class=lambda r: status_class(r.get("status") if r else None),
        thousands=lambda n: "" if n is None else f"{n:,}", rows=_rows, count=_count)
    return env


def _looks(site: Site, root: str) -> dict[str, Look]:
    """How each node is drawn in a lineage graph on a page `root` away from the site root."""
    looks = {}
    for uid, page in site.pages.items():
        node, status = page.node, (page.result or {}).get("status")
        if node.resource_type == SOURCE:
            caption = f"source · {node.format}"
        else:
            kind = node.materialized if node.resource_type == MODEL else "seed"
            caption = f"{kind} · {_rows(page.rows)}" if page.rows is not None else str(kind)
        classes = " ".join(filter(None, [status_class(status) if status else "",
                                         "missing" if page.stored == "missing" else "", node.materialized or ""]))
        title = f"{node.name}: {node.resource_type}, {caption.split(' · ', 1)[-1]}; last run: {status_word(status)}"
        looks[uid] = Look(root + page.href, caption, classes, title)
    for uid, test in site.tests.items():
        status = (test.result or {}).get("status")
        on = f" on {', '.join(test.checks)}" if test.checks else ""
        looks[uid] = Look(root + test.href, "", status_class(status),
                          f"test {test.name}{on}: {status_word(status)}")
    return looks


def render(site: Site) -> dict[str, bytes]:
    """Every file of the site, by path relative to the site root."""
    env = _environment()
    files: dict[str, bytes] = {"style.css": (HERE / "style.css").read_bytes()}
    pages = list(site.pages.values())
    by_kind = {kind: [p for p in pages if p.node.resource_type == kind] for kind in (SOURCE, SEED, MODEL)}
    sidebar = [(title, by_kind[kind]) for kind, title in ((SOURCE, "Sources"), (SEED, "Seeds"), (MODEL, "Models"))
               if by_kind[kind]]
    common = dict(site=site, sidebar=sidebar, functions=udfs.FUNCTIONS)

    def page(template: str, path: str, **values) -> None:
        root = "../" * path.count("/")
        html = env.get_template(template).render(**common, root=root, **values)
        files[path] = html.encode("utf-8")

    page("index.html", "index.html", title="Overview", current=None,
         lineage=Markup(lineage_svg(site.graph, _looks(site, ""), label="Lineage of the whole project")),
         models=by_kind[MODEL], sources=by_kind[SOURCE], seeds=by_kind[SEED],
         galleries=[(p, g) for p in pages for g in p.galleries])
    page("functions.html", "functions.html", title="Image functions", current=None, image_ddl=IMAGE_DDL)
    for uid, p in site.pages.items():
        _node_page(site, p, page, files)
    return files


def _node_page(site: Site, p: Page, page, files: dict[str, bytes]) -> None:
    graph = site.graph
    neighbours = {p.uid} | {u for u in graph.parents[p.uid] | graph.children[p.uid] if u in site.pages}
    order = lambda uids: [site.pages[u] for u in sorted(uids, key=lambda u: graph.position[u])  # noqa: E731
                          if u in site.pages]
    for gallery in p.galleries:
        for thumb in gallery.thumbs:
            files[thumb.file] = thumb.jpeg
    page("node.html", p.href, title=p.node.name, current=p.uid, page=p, node=p.node,
         kind=p.node.materialized if p.node.resource_type == MODEL else p.node.resource_type,
         folder=FOLDERS[p.node.resource_type],
         parents=order(graph.parents[p.uid]), children=order(graph.children[p.uid]),
         lineage=Markup(lineage_svg(graph, _looks(site, "../"), members=neighbours, show_tests=False,
                                    current=p.uid, label=f"Parents and children of {p.node.name}")),
         label_chart=Markup(charts.bar_chart(p.label_counts, f"Rows per label in {p.node.name}"))
         if p.label_counts else "",
         histogram_svg=Markup(charts.histogram_chart(p.histogram, f"Mean colour histogram of {p.node.name}"))
         if p.histogram is not None else "",
         gallery_histograms={g.column: Markup(charts.histogram_chart(
             g.histogram, f"Mean colour histogram of the sampled {p.node.name}.{g.column} images"))
             if g.histogram is not None else "" for g in p.galleries})


def write(files: dict[str, bytes], folder: Path) -> None:
    """Replace `folder` with exactly these files (written beside it first, then swapped in)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = folder.with_name(folder.name + ".new")
    old = folder.with_name(folder.name + ".old")
    for leftover in (fresh, old):
        _remove(leftover)
    for rel, data in sorted(files.items()):
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
