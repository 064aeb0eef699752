#!/usr/bin/env python3
"""Spark Image Data: build Jinja SQL models of image data into Parquet tables on Spark.

    python runner.py build                 # seeds, models and tests of ./project.yml
    python runner.py query "select label, count(*) from stg_images group by label"
    python runner.py --help                # every command
"""
import sys

if sys.version_info < (3, 10):
    sys.exit("Spark Image Data needs Python 3.10 or newer.")

try:
    from imageprep.cli import main
except ModuleNotFoundError as missing:
    sys.exit(f"Missing Python package '{missing.name}': run `pip install -r requirements.txt` first.")

if __name__ == "__main__":
    sys.exit(main())
