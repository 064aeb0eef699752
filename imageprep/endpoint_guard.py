"""The SQL endpoint's read-only session: every statement is checked as Spark parses it.

Spark has no read-only switch, and its hooks (a parser or an analyzer rule in
`spark.sql.extensions`) are JVM classes; this project ships no compiled code. So the endpoint's
session gets a parser of its own: a Python object behind a py4j proxy, which Spark calls for every
statement, the Thrift server's included. It lets Spark's parser parse, checks the plan, and hands
back either that plan or one that fails with the reason (`raise_error`). The check is an allowlist,
so a statement Spark adds in a later version is refused until listed here:

- a query may only be made of read-only operators (QUERY_OPERATORS);
- a few commands are allowed: SHOW, DESCRIBE, EXPLAIN, USE, SET of ALLOWED_SETTINGS, and
  CREATE TEMP VIEW over such a query (it lives in the session's memory only);
- the functions that call JVM methods (java_method, reflect, try_reflect) are refused by name, and
  also dropped from the session's function registry, so no spelling of them resolves;
- SQL on file paths (select * from parquet.`/any/path`) is turned off;
- settings are changed not only by SET: a JDBC client may pass `?key=value` in its URL, which the
  Thrift server applies without parsing. Before each statement, settings changed since the
  session started and not allowed are put back, and the client's next statement is refused with
  their names.
"""
from __future__ import annotations

import json
import re
import threading

JVM_FUNCTIONS = ("java_method", "reflect", "try_reflect")

# Logical operators a SELECT (or VALUES, TABLE, WITH, FROM ... |> ...) parses into.
QUERY_OPERATORS = frozenset({
    "Aggregate", "Distinct", "Except", "Filter", "Generate", "GlobalLimit", "Intersect", "Join",
    "LateralJoin", "LimitAll", "LocalLimit", "LocalRelation", "Offset", "OneRowRelation", "PipeOperator", "Pivot",
    "PlanWithUnresolvedIdentifier", "Project", "Range", "RebalancePartitions", "RelationTimeTravel",
    "Repartition", "RepartitionByExpression", "Sample", "Sort", "SubqueryAlias", "Tail", "Union",
    "UnionLoop", "UnionLoopRef", "Unpivot", "UnresolvedHaving", "UnresolvedHint",
    "UnresolvedInlineTable", "UnresolvedQualify", "UnresolvedRelation", "UnresolvedSubqueryColumnAliases",
    "UnresolvedTableValuedFunction", "UnresolvedTVFAliases", "UnresolvedTranspose", "UnresolvedWith",
    "Window", "WithWindowDefinition", "NameParameterizedQuery", "PosParameterizedQuery",
    "GeneralParameterizedQuery",
})

# Commands that only read the catalog or the session (EXPLAIN and DESCRIBE QUERY run nothing).
READ_COMMANDS = frozenset({
    "DescribeColumn", "DescribeFunction", "DescribeNamespace", "DescribeQueryCommand", "DescribeRelation",
    "ExplainCommand", "SetCatalogAndNamespace", "ShowCatalogsCommand", "ShowColumns", "ShowCreateTable",
    "ShowCurrentNamespaceCommand", "ShowFunctions", "ShowNamespaces", "ShowNamespacesCommand",
    "ShowTableProperties", "ShowTables", "ShowTablesExtended", "ShowViews",
})

# Settings a client may change (SET, RESET or the JDBC URL): they shape results, not what is reached.
CLIENT_SETTINGS = frozenset({
    "spark.sql.ansi.enabled", "spark.sql.adaptive.enabled", "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.caseSensitive", "spark.sql.legacy.timeParserPolicy", "spark.sql.session.timeZone",
    "spark.sql.shuffle.partitions",
})
# ... and those the Thrift server and the Hive JDBC driver set themselves (on connecting, or on a
# first result).
ALLOWED_SETTINGS = CLIENT_SETTINGS | {
    "spark.sql.binaryOutputStyle", "spark.sql.datetime.java8API.enabled", "spark.sql.hive.version",
    "hive.server2.thrift.resultset.default.fetch.size",
}

# What a refused plan is called in the message, when its class name is not plain enough.
STATEMENTS = {
    "InsertIntoDir": "INSERT OVERWRITE DIRECTORY", "InsertIntoStatement": "INSERT",
    "CreateTable": "CREATE TABLE", "CreateTableAsSelect": "CREATE TABLE AS SELECT",
    "CreateTempViewUsing": "CREATE TEMP VIEW ... USING", "CreateView": "CREATE VIEW",
    "ScriptTransformation": "SELECT TRANSFORM (runs a program)", "AddJarsCommand": "ADD JAR",
    "AddFilesCommand": "ADD FILE", "AddArchivesCommand": "ADD ARCHIVE", "CompoundBody": "a SQL script",
    "UnresolvedExecuteImmediate": "EXECUTE IMMEDIATE", "CreateFunctionCommand": "CREATE FUNCTION",
    "CreateSQLFunctionCommand": "CREATE FUNCTION", "DropTable": "DROP TABLE", "DropView": "DROP VIEW",
    "CacheTable": "CACHE TABLE", "CacheTableAsSelect": "CACHE TABLE",
}

ALLOW_HINT = "start `serve` with --allow-writes to allow it"


def read_only_session(spark, prepare=None):
    """A new session on `spark`'s context whose statements are checked, with SQL on file paths off.

    `prepare(session)` runs first, unchecked: it may create functions (CREATE FUNCTION is refused after)."""
    from pyspark.java_gateway import ensure_callback_server_started
    from pyspark.sql import SparkSession

    jvm = spark._jvm
    ensure_callback_server_started(spark.sparkContext._gateway)
    extensions = jvm.org.apache.spark.sql.SparkSessionExtensions()
    _apply_configured_extensions(spark, extensions)
    builder = _ParserBuilder()
    extensions.injectParser(builder)  # injected last: wraps any configured parser
    jsession, no_options = spark._jsparkSession, jvm.PythonUtils.toScalaMap(jvm.java.util.HashMap())
    guarded = SparkSession(spark.sparkContext, jvm.org.apache.spark.sql.classic.SparkSession(
        jsession.sparkContext(), jvm.scala.Some(jsession.sharedState()), jvm.scala.Option.empty(),
        extensions, no_options, no_options))
    # `select * from parquet.`/any/path`` reads any file this process can read.
    guarded.conf.set("spark.sql.runSQLOnFiles", "false")
    state = guarded._jsparkSession.sessionState()
    _drop_functions(state.functionRegistry(), JVM_FUNCTIONS)
    if prepare is not None:
        prepare(guarded)
    builder.settings = SettingsWatch(state.conf())  # from here on, statements are checked
    return guarded


def _apply_configured_extensions(spark, extensions) -> None:
    """What `spark.sql.extensions` names, as the session builder applies it to a new session."""
    names = spark.conf.get("spark.sql.extensions", None) or ""
    loader = spark._jvm.java.lang.Thread.currentThread().getContextClassLoader()
    for name in filter(None, (part.strip() for part in names.split(","))):
        cls = spark._jvm.java.lang.Class.forName(name, True, loader)
        cls.getDeclaredConstructor(spark._gateway.new_array(spark._jvm.java.lang.Class, 0)) \
            .newInstance(spark._gateway.new_array(spark._jvm.java.lang.Object, 0)).apply(extensions)


def _drop_functions(registry, names) -> None:
    wanted = set(names)
    listed = registry.listFunction().iterator()
    while listed.hasNext():
        identifier = listed.next()
        if identifier.funcName().lower() in wanted:
            registry.dropFunction(identifier)


class _ParserBuilder:
    """`(SparkSession, ParserInterface) => ParserInterface`, as SparkSessionExtensions.injectParser takes.

    (py4j keeps a Python object alive while the JVM holds it.)"""

    settings: SettingsWatch | None = None  # None while the session is being prepared: nothing checked

    class Java:
        implements = ["scala.Function2"]

    def apply(self, session, delegate):
        return CheckingParser(delegate, self)


class CheckingParser:
    """Spark's ParserInterface: Spark's own parser, with each statement's plan checked."""

    class Java:
        implements = ["org.apache.spark.sql.catalyst.parser.ParserInterface"]

    def __init__(self, delegate, builder: _ParserBuilder):
        self._delegate = delegate
        self._builder = builder

    def parsePlan(self, sql):
        return self._checked(self._delegate.parsePlan(sql))

    def parsePlanWithParameters(self, sql, parameters):
        return self._checked(self._delegate.parsePlanWithParameters(sql, parameters))

    def parseQuery(self, sql):
        return self._checked(self._delegate.parseQuery(sql))

    def __getattr__(self, name):  # parseExpression, parseDataType, ...: no statement to check
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._delegate, name)

    def _checked(self, plan):
        settings = self._builder.settings
        if settings is None:
            return plan
        settings.restore()
        reason = refusal(plan)
        # A client hears of settings put back on its next statement. Not on USE, which the Thrift
        # server runs itself right after applying a connection's URL settings, nor on CREATE TEMP
        # VIEW, which is how the endpoint registers the project's views.
        if reason is None and plan.nodeName() not in ("SetCatalogAndNamespace", "CreateViewCommand"):
            restored = settings.take_restored()
            if restored:
                reason = f"the settings {', '.join(restored)} were changed and have been put back"
        if reason is None:
            return plan
        # Spark evaluates raise_error over VALUES while optimizing, in the driver: the client gets
        # the message alone (an exception raised here would reach it as a py4j traceback).
        return self._delegate.parsePlan(f"SELECT raise_error('{message(reason)}') AS refused FROM VALUES (1)")


def message(reason: str) -> str:
    """The client's error message, as the body of a SQL string literal (names in it went through
    `_safe`; quotes and backslashes are dropped all the same)."""
    text = f"The SQL endpoint is read-only: {reason}; {ALLOW_HINT}."
    return text.replace("\\", "").replace("'", "")


def refusal(plan) -> str | None:
    """Why `plan` (as parsed, unresolved) may not run here, or None if it may."""
    name = plan.nodeName()
    if name == "SetCommand":
        return _setting_refusal(plan.kv())
    if name == "ResetCommand":
        key = plan.config()
        return _setting_refusal(key) if key.isDefined() else "RESET of every setting is refused"
    if name == "CreateViewCommand":
        if plan.viewType().toString() != "LocalTempView":
            return "CREATE GLOBAL TEMP VIEW is refused (CREATE TEMP VIEW is allowed)"
        return query_refusal(plan.plan())
    if name in READ_COMMANDS:
        return None
    return query_refusal(plan)


def query_refusal(plan) -> str | None:
    """Why a query plan is not a plain read-only query, or None."""
    nodes, roots = plan_parts(plan)
    for node in nodes:
        name = node.nodeName()
        if name not in QUERY_OPERATORS:
            return f"{_safe(STATEMENTS.get(name, name))} is refused"
    called = [f for f in function_names(roots) if f.lower().split(".")[-1] in JVM_FUNCTIONS]
    if called:
        return f"the function {_safe(called[0])} (it calls JVM methods) is refused"
    return None


def plan_parts(plan) -> tuple[list, list]:
    """Every plan node of `plan`, and the roots among them: `plan` itself and each CTE
    definition or subquery (which are not children, so a root's JSON form may leave them out)."""
    nodes, roots, pending = [], [plan], [plan]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(_items(node.children()))
        nested = _items(node.innerChildren()) + _items(node.subqueries())
        roots.extend(nested)
        pending.extend(nested)
    return nodes, roots


def function_names(roots) -> list[str]:
    """Names of the functions the plans call, read from their JSON form.

    A name this misses still cannot reach the JVM functions (they are dropped from the registry);
    it would only be refused with Spark's own "cannot resolve routine" message."""
    names = []
    for root in roots:
        try:
            tree = json.loads(root.toJSON())
        except Exception:  # noqa: BLE001 - a plan Spark cannot write as JSON: the registry still holds
            continue
        names.extend(_unresolved_functions(tree))
    return names


def _unresolved_functions(tree) -> list[str]:
    found = []
    if isinstance(tree, dict):
        if tree.get("class", "").endswith(".UnresolvedFunction"):
            found.append(".".join(part.strip() for part in str(tree.get("nameParts", "")).strip("[]").split(",")))
        for value in tree.values():
            found.extend(_unresolved_functions(value))
    elif isinstance(tree, list):
        for value in tree:
            found.extend(_unresolved_functions(value))
    return found


def _setting_refusal(kv) -> str | None:
    """SET / SET -v / SET key read settings; SET key=value (or RESET key) only of allowed keys."""
    if kv.isEmpty():
        return None
    pair = kv.get()
    if isinstance(pair, str):  # RESET key
        key, assigns = pair, True
    else:
        key, assigns = pair._1(), pair._2().isDefined()
    if not assigns or key in ALLOWED_SETTINGS:
        return None
    return f"changing the setting {_safe(key)} is refused (allowed: {', '.join(sorted(CLIENT_SETTINGS))})"


class SettingsWatch:
    """The session's settings as they were when checking started. `restore` puts back changes to
    settings other than ALLOWED_SETTINGS; `take_restored` names those put back since last asked."""

    def __init__(self, jconf):
        self._jconf = jconf
        self._lock = threading.Lock()
        self._baseline = _settings(jconf)
        self._seen = jconf.getAllConfs().hashCode()
        self._restored: set[str] = set()

    def restore(self) -> None:
        with self._lock:
            if self._jconf.getAllConfs().hashCode() == self._seen:  # one call in the common case
                return
            current = _settings(self._jconf)
            for key in set(current) | set(self._baseline):
                if current.get(key) == self._baseline.get(key) or key in ALLOWED_SETTINGS:
                    continue
                if key in self._baseline:
                    self._jconf.setConfString(key, self._baseline[key])
                else:
                    self._jconf.unsetConf(key)
                self._restored.add(_safe(key))
            self._seen = self._jconf.getAllConfs().hashCode()

    def take_restored(self) -> list[str]:
        with self._lock:
            restored, self._restored = sorted(self._restored), set()
            return restored


def _settings(jconf) -> dict[str, str]:
    entries = jconf.getAllConfs().iterator()
    settings = {}
    while entries.hasNext():
        entry = entries.next()
        settings[entry._1()] = entry._2()
    return settings


def _items(seq) -> list:
    found, items = [], seq.iterator()
    while items.hasNext():
        found.append(items.next())
    return found


def _safe(name: str) -> str:
    """A name from a statement, reduced to characters that need no quoting in a SQL literal."""
    return re.sub(r"[^A-Za-z0-9_.$ ()-]", "?", str(name))[:120]
