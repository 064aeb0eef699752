"""`python runner.py docs`: the static site in target/docs/, checked as files and in a real browser.

One small build of the example project (64 px images, one augmented copy) serves every test;
`docs` itself reads the tables with PyArrow and starts no Spark. The browser test drives the
system's headless Chromium with Selenium and skips where Chromium or its driver is not installed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from markupsafe import escape

from imageprep.cli import main
from imageprep.docs_site.lineage import BOX_W, layout
from imageprep.docs_site.serve import make_server
from imageprep.graph import Graph
from imageprep.nodes import MODEL, SOURCE, TEST, DataTest, Model, Node
from runner_helpers import TABLES, copy_example

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PER_CLASS = 6  # images kept of each of the 4 classes: 24, one gallery's worth
LABELLED_IMAGE_TABLES = ["images_resized"]


UNBUILT = ["labels", "train_set", "val_set", "test_set", "ml_features"]  # labels and what reads it


@pytest.fixture(scope="module")
def project(spark, tmp_path_factory) -> Path:
    """The example with 6 images per class and the truncated file, built small and fast: every
    image table, but not `labels+` (the training sets), whose pages must say they are not built."""
    root = copy_example(tmp_path_factory.mktemp("docs") / "project")
    for folder in (root / "data" / "images").iterdir():
        for extra in sorted(f for f in folder.iterdir() if not f.name.startswith("corrupt"))[PER_CLASS:]:
            extra.unlink()
    variables = '{"image_size": 64, "augment_copies": 1, "min_images_per_class": 1}'
    assert main(["build", "--project-dir", str(root), "--threads", "2", "--vars", variables,
                 "--exclude", "labels+"]) == 0
    assert main(["docs", "--project-dir", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def docs(project) -> Path:
    return project / "target" / "docs"


def read(docs: Path, page: str) -> str:
    return (docs / page).read_text(encoding="utf-8")


def lineage_of(html: str) -> str:
    match = re.search(r'<svg class="lineage".*?</svg>', html, re.S)
    assert match, "the page has no lineage SVG"
    return match.group(0)


def gallery_images(html: str) -> list[str]:
    return re.findall(r'<figure>\s*<img src="([^"]+)"', html)


def test_writes_a_page_per_model_and_source_and_the_functions_reference(docs):
    for page in ["index.html", "functions.html", "style.css", "sources/raw.images.html",
                 *(f"models/{table}.html" for table in TABLES)]:
        assert (docs / page).is_file(), page
    import udfs

    functions = read(docs, "functions.html")
    for spec in udfs.FUNCTIONS:
        assert f'id="fn-{spec.name}"' in functions
        assert escape(spec.signature) in functions
        assert escape(spec.example) in functions


def test_the_site_is_self_contained(docs):
    """No URL to another host anywhere, and every src/href is a file of the site (or a data: URI)."""
    for path in docs.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        hosts = set(re.findall(rb"https?://([^/\s\"'<>)]+)", data)) - {b"localhost", b"127.0.0.1"}
        assert not hosts, f"{path.relative_to(docs)} refers to {hosts}"
        if path.suffix == ".html":
            for ref in re.findall(r'(?:src|href)="([^"]*)"', data.decode("utf-8")):
                target = ref.split("#", 1)[0]
                if ref.startswith("data:") or not target:
                    continue
                assert not target.startswith(("/", "//")) and ":" not in target, f"{path.name}: {ref}"
                assert (path.parent / target).resolve().is_file(), f"{path.relative_to(docs)} links to missing {ref}"
        if path.suffix == ".css":
            assert b"url(" not in data and b"@import" not in data


def test_lineage_has_a_linked_node_per_model_and_a_dot_per_test(docs, project):
    svg = lineage_of(read(docs, "index.html"))
    for table in TABLES:
        assert re.search(rf'<a href="models/{table}\.html" class="node model[^"]*" data-node="{table}">', svg), table
    assert '<a href="sources/raw.images.html" class="node source' in svg
    import json

    tests = [n for n in json.loads((project / "target/manifest.json").read_text())["nodes"].values()
             if n["resource_type"] == "test"]
    ran = [r for r in json.loads((project / "target/run_results.json").read_text())["results"]
           if r["resource_type"] == "test"]
    dots = re.findall(r'<a href="([^"]+)" class="test (good|unknown)"><title>', svg)  # passed, not run
    assert len(dots) == len(tests)
    assert [kind for _, kind in dots].count("good") == len(ran) and all(r["status"] == "pass" for r in ran)
    assert all(re.fullmatch(r"models/\w+\.html#test-\w+", href) for href, _ in dots)
    for table in UNBUILT:  # drawn dashed, and its page says so
        assert re.search(rf'<a href="models/{table}\.html" class="node model missing (table|incremental)"', svg), table
        assert "Not built yet: run <code>python runner.py build</code>" in read(docs, f"models/{table}.html")


def test_model_page_shows_columns_types_tests_sql_and_last_run(docs):
    html = read(docs, "models/image_features.html")
    assert "<code>color_histogram</code>" in html and "array&lt;double&gt;" in html
    assert "histogram_bins counts per channel" in html  # the column's description from YAML
    assert 'id="test-unique_image_features_path"' in html
    assert "{{ new_rows(ref(&#39;images_resized&#39;)) }}" in html  # the SQL as written ...
    # ... and compiled: an incremental build reads the rows it has not seen, through a temporary view
    assert re.search(r"from `?__new_rows__image_features__images_resized`?", html)
    assert re.search(rf'<dt>Rows</dt><dd>{4 * PER_CLASS} ', html)
    assert '<span class="chip good">ok</span>' in html and "build finished" in html
    assert "The mean over all rows of the <code>color_histogram</code> column" in html


@pytest.mark.parametrize("table", LABELLED_IMAGE_TABLES + ["images_augmented"])
def test_image_tables_have_a_gallery_of_the_first_rows_by_path(docs, project, table):
    html = read(docs, f"models/{table}.html")
    rows = pq.read_table(project / "target/warehouse" / table, columns=["path"]).column("path").to_pylist()
    images = gallery_images(html)
    assert len(images) == min(24, len(rows))
    for src in images:
        assert (docs / "models" / src).resolve().stat().st_size > 0
    first = sorted(rows)[0]
    assert f'title="{escape(first)}"' in html  # the first path comes first
    assert "Mean colour histogram" in html
    if table in LABELLED_IMAGE_TABLES:
        assert "Label distribution" in html and html.count(f">{PER_CLASS}</text>") == 4  # one bar per class


def test_image_errors_lists_each_file_with_its_reason(docs, project):
    html = read(docs, "models/image_errors.html")
    errors = pq.read_table(project / "target/warehouse/image_errors").to_pylist()
    assert errors
    for row in errors:
        assert escape(row["relative_path"]) in html
        assert escape(row["reason"]) in html
    assert "truncated image" in html


def test_the_same_build_gives_the_same_files(docs, project):
    def digest():
        return {str(p.relative_to(docs)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(docs.rglob("*")) if p.is_file()}

    before = digest()
    assert main(["docs", "--project-dir", str(project)]) == 0
    assert digest() == before


def test_user_text_is_escaped(project, tmp_path):
    other = copy_example(tmp_path / "p")
    (other / "target").mkdir()
    os.symlink(project / "target" / "warehouse", other / "target" / "warehouse")
    yml = other / "models/features/_features.yml"
    yml.write_text(yml.read_text().replace("Every usable image at image_size",
                                           "<script>alert('x')</script> & Every usable image at image_size"))
    assert main(["docs", "--project-dir", str(other)]) == 0
    docs = other / "target" / "docs"
    assert "There is no target/run_results.json" in read(docs, "index.html")
    for page in ("index.html", "models/images_resized.html"):
        html = read(docs, page)
        assert "<script>" not in html
        assert re.search(r"&lt;script&gt;alert\(&#(39|x27);x&#(39|x27);\)&lt;/script&gt; &amp; Every usable image", html)


def test_docs_without_a_build_says_to_build_first(tmp_path, capsys):
    root = copy_example(tmp_path / "p")
    assert main(["docs", "--project-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "nothing has been built yet" in err and "run `python runner.py build` first" in err
    assert not (root / "target" / "docs").exists()


def test_layout_puts_children_right_of_parents_and_routes_long_edges_between_boxes():
    src = Node("source.p.raw.files", "raw.files", SOURCE, "models/s.yml")
    a = Model("model.p.a", "a", MODEL, "models/a.sql", depends_on=[src.unique_id])
    b = Model("model.p.b", "b", MODEL, "models/b.sql", depends_on=[a.unique_id])
    c = Model("model.p.c", "c", MODEL, "models/c.sql", depends_on=[a.unique_id, b.unique_id])
    d = Model("model.p.d", "d", MODEL, "models/d.sql", depends_on=[src.unique_id, c.unique_id])
    test = DataTest("test.p.not_null_c_x", "not_null_c_x", TEST, "models/s.yml", depends_on=[c.unique_id],
                    attached_to=c.unique_id)
    graph = Graph([src, a, b, c, d, test])
    drawing = layout(graph)
    boxes = drawing.boxes
    assert [boxes[n.unique_id].column for n in (src, a, b, c, d)] == [0, 1, 2, 3, 4]
    assert boxes[c.unique_id].tests == [test.unique_id]
    lanes = [box for box in boxes.values() if box.uid is None]
    assert sorted((box.key, box.column) for box in lanes) == [
        (f"{a.unique_id}@2", 2), (f"{src.unique_id}@1", 1), (f"{src.unique_id}@2", 2), (f"{src.unique_id}@3", 3)]
    for column in range(5):  # nothing in a column overlaps
        stack = sorted((b for b in boxes.values() if b.column == column), key=lambda b: b.y)
        assert all(p.y + p.height <= q.y for p, q in zip(stack, stack[1:]))
        assert all(b.x + BOX_W <= drawing.width for b in stack)
    assert layout(graph).boxes.keys() == boxes.keys() and \
        [(b.x, b.y) for b in layout(graph).boxes.values()] == [(b.x, b.y) for b in boxes.values()]


# -- in a real browser -------------------------------------------------------------------------------


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs Chromium and its driver at {CHROMIUM} and {CHROMEDRIVER} "
                    "(Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -r requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="docs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(docs):
    server = make_server(docs, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def _wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_in_a_browser_index_links_to_a_model_page_whose_thumbnails_render(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{served}/index.html")
    assert browser.title.startswith("Overview")
    assert _console_errors(browser) == []
    node = browser.find_element(By.CSS_SELECTOR, 'svg.lineage a[data-node="images_resized"]')
    node.click()
    _wait(lambda: browser.current_url.endswith("/models/images_resized.html")
          and browser.execute_script("return document.readyState") == "complete")
    images = browser.execute_script(
        "return Array.from(document.querySelectorAll('.gallery img'))"
        ".map(img => [img.getAttribute('src'), img.complete, img.naturalWidth]);")
    assert len(images) == 4 * PER_CLASS
    assert all(complete and width > 0 for _, complete, width in images), images
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart.bars").is_displayed()
    assert _console_errors(browser) == []
    browser.set_window_size(1400, min(browser.execute_script("return document.body.scrollHeight") + 120, 4000))
    shot = tmp_path / "images_resized.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
