"""Spark's Python daemon, run on the compiled modules of the pyspark installed here.

Spark puts its own copy of pyspark, `<SPARK_HOME>/python/lib/pyspark.zip`, first on the path of
the Python processes that run our functions. Python keeps no compiled bytecode for modules read
from a zip, so every worker compiled pyspark's modules again: about 1 CPU second per worker at
the start of every command. With pip's pyspark, SPARK_HOME is the installed package itself, so
the zip and the installed package are the same code; the installed one has its `.pyc` files.

This module is started in the daemon's place (`spark.python.daemon.module`, set by
`imageprep.spark_session` for local sessions). When the zip belongs to an installed package, it
imports `pyspark` from there; the forked workers inherit it. Otherwise nothing changes. Either
way it then runs Spark's own daemon. It must import nothing that starts threads (the daemon
forks): only the standard library and pyspark.
"""
import importlib.util
import os
import sys


def installed_pyspark_home() -> str | None:
    """The installed pyspark package whose `python/lib/pyspark.zip` is on the path, if any."""
    for entry in sys.path:
        if os.path.basename(entry) != "pyspark.zip":
            continue
        home = os.path.dirname(os.path.dirname(os.path.dirname(entry)))
        if os.path.isfile(os.path.join(home, "__init__.py")) and os.path.isfile(os.path.join(home, "daemon.py")):
            return home
    return None


def import_pyspark_from(home: str) -> None:
    spec = importlib.util.spec_from_file_location(
        "pyspark", os.path.join(home, "__init__.py"), submodule_search_locations=[home])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pyspark"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    home = installed_pyspark_home()
    if home is not None:
        import_pyspark_from(home)
    from pyspark import daemon

    daemon.manager()
