"""The runner's machinery: load a project, render its models, order them, build them on Spark.

`runner.py` is only the command line; each module here does one step of a build.
"""
