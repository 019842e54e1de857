"""The node's one Spark session: configured from the node's settings, started lazily, stopped at exit.

Spark runs offline: no package is fetched (``spark.jars.packages`` is never set), the web UI is off,
the driver binds to loopback unless the operator's configuration says otherwise, and the executors run
this interpreter (``PYSPARK_PYTHON``) so they import the same ``psi`` code as the driver.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocols.wire.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_MASTER", "SparkConfig", "configure_from_settings", "configure_spark", "spark_available",
           "spark_session", "stop_spark"]

DEFAULT_MASTER = "local[2]"

_BASE_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.session.timeZone": "UTC",
}
"""Defaults; ``spark_conf`` from the node's settings overrides any of them (e.g. on a real cluster)."""


@dataclass(frozen=True)
class SparkConfig:
    """Where the node's Spark runs and with what configuration.

    Attributes:
        master: Spark master URL (``local[2]``, ``yarn``, ``spark://host:7077``, ``k8s://...``).
        conf: Extra Spark properties, applied over the node's offline, loopback defaults.
        app_name: Application name shown in the cluster manager.
    """

    master: str = DEFAULT_MASTER
    conf: Mapping[str, str] = field(default_factory=dict)
    app_name: str = "tandem-node"

    def properties(self) -> dict[str, str]:
        """The Spark properties the session is built with."""
        return {**_BASE_CONF, **{str(k): str(v) for k, v in self.conf.items()}}


_lock = threading.Lock()
_session: SparkSession | None = None
_config: SparkConfig | None = None
_default: SparkConfig | None = None


def configure_spark(config: SparkConfig) -> None:
    """The configuration :func:`spark_session` starts with when called without one (the node's settings)."""
    global _default
    _default = config


def configure_from_settings(settings: Any) -> SparkConfig:
    """Configure the node's session from its settings (``spark_master``, ``spark_conf``) and return that config.

    Call before anything opens a Spark source or starts the session: registering a dataset, a job.
    """
    config = SparkConfig(settings.spark_master, dict(settings.spark_conf))
    configure_spark(config)
    return config


def spark_available() -> str | None:
    """``None`` when PySpark and a Java runtime are present, else what is missing (and the fix)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install -e '.[spark]'"
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else None
    if not (java and os.path.exists(java)) and not any(
        os.access(os.path.join(d, "java"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d
    ):
        return "no Java runtime found (Spark needs Java 17): install openjdk-17-jre-headless or set JAVA_HOME"
    return None


def spark_session(config: SparkConfig | None = None) -> SparkSession:
    """The node process's Spark session, started on first use with ``config`` (one per process).

    Raises:
        ConfigError: PySpark or Java is missing, or a session with another master is already running.
    """
    global _session, _config
    config = config or _default or SparkConfig()
    with _lock:
        if _session is not None:
            if _config is not None and _config.master != config.master:
                raise ConfigError(f"this node's Spark session already runs on {_config.master!r}, not "
                                  f"{config.master!r}; one session per node process: restart the node")
            return _session
        missing = spark_available()
        if missing is not None:
            raise ConfigError(f"engine 'spark' cannot start: {missing}")
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(config.master).appName(config.app_name)
        for key, value in config.properties().items():
            builder = builder.config(key, value)
        _session, _config = builder.getOrCreate(), config
        _session.sparkContext.setLogLevel("ERROR")
        atexit.register(stop_spark)
        return _session


def stop_spark() -> None:
    """Stop the node's Spark session if one is running (registered at exit)."""
    global _session, _config
    with _lock:
        if _session is not None:
            _session.stop()
            _session, _config = None, None
