"""`python runner.py docs [--serve] [--port N]`: a static site about the project in target/docs/.

    index.html              the lineage graph (SVG), every model, source and seed, the image tables
    models/<name>.html      description, columns and types, tests and their last results, SQL as
                            written and compiled, row count, last run; for image columns a gallery
                            of thumbnails, label counts and the mean colour histogram
    sources/, seeds/        the same for sources and seeds
    functions.html          the image functions' reference, from udfs.FUNCTIONS
    img/                    the thumbnails (JPEG)
    style.css               the only stylesheet; the site loads nothing from anywhere else

Modules, one job each: `content` gathers what the site shows (from the project, the warehouse
and target/run_results.json), `tables` reads Parquet with PyArrow, `thumbnails` turns image
structs into thumbnails and histograms, `lineage` lays out and draws the graph, `charts` draws
the other SVG charts, `pages` renders the HTML and writes the files, `serve` serves them.
No Spark starts, and the same build gives the same files.
"""
from __future__ import annotations

import time

from .content import collect
from .pages import render, write
from .serve import serve


def docs_command(args, project, target, graph, executable) -> int:
    started = time.perf_counter()
    site = collect(project, target, graph, executable)
    files = render(site)
    folder = project.target_path / "docs"
    write(files, folder)
    pages = sum(name.endswith(".html") for name in files)
    images = sum(name.startswith("img/") for name in files)
    print(f"Wrote {pages} pages and {images} thumbnails to {project.rel(folder)}/ in "
          f"{time.perf_counter() - started:.1f}s: open {project.rel(folder / 'index.html')}")
    for note in site.notes:
        print(f"Note: {note}")
    if getattr(args, "serve", False):
        return serve(folder, args.port)
    return 0
