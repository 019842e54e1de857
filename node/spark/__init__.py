"""The ``spark`` engine: the telco's per-record work on the Apache Spark cluster it already runs.

The node's setting ``engine`` chooses ``serial``, ``pool`` or ``spark``; ``spark_master`` and
``spark_conf`` say where Spark runs. With ``spark``, the per-record work runs as ``mapInPandas``
over partitions calling the *same* pure functions the other engines call — identifier normalisation
(``psi.identifiers`` via ``node.jobs.psi.recovery.normalise_labels``/``pair_records``), hash-to-group
and OPRF/ECDH blinding (``psi._batch.blind_batch``/``evaluate_batch``), labeled-PSI record derivation
and sealing (``psi.labeled.seal_batch``), telco-side scoring and site aggregation — so the bytes on
the wire are the same whichever engine ran (``tests/node/spark`` checks this byte for byte).

* :func:`spark_session` / :func:`stop_spark`: one session per node process, started on first use,
  stopped at exit; offline (no package downloads), no web UI, loopback by default;
  :func:`configure_spark` sets the master and properties from the node's settings before first use.
* :class:`SparkSource`: ``spark+parquet:///path`` and ``spark+table://db.table`` data sources
  (``node.adapters.open_source``); counts and coarse statistics by Spark aggregations.
* :class:`SparkMapper`: a ``psi.BatchMapper`` whose batches run on the executors; the PSI sessions
  themselves stay in the driver.
* :func:`build_table`: a recovery table built from a DataFrame end to end on Spark, sorted by Spark
  and streamed into the table file in bounded driver memory.
* :func:`score_partitions`: app-promotion scoring of every subscriber over partitions.
* :func:`aggregate_demand_spark`: site-selection demand sums per partition, merged and noised in the
  driver (the release byte for byte the in-process one).

Keys and where they go. The OPRF key k of the epoch (recovery) and a session's ECDH scalar reach the
executors only inside the task closures this node's driver serialises (Spark ships a task's pickled
function with the task, or as a broadcast when large) — to the executors of the node's *own* cluster,
never to the peer or the coordinator. Nothing is written with a key in it: executors return sealed
records, blinded points or counts, and Spark's intermediate output is written under the node's own
storage (the job or table directory) and removed after use. How they are protected there is the
cluster's configuration, which the operator sets through ``spark_conf``: on a shared cluster set
``spark.authenticate=true`` and ``spark.network.crypto.enabled=true`` (RPC and block transfers
authenticated and encrypted, so task closures do not cross the network in clear) and
``spark.io.encryption.enabled=true`` (shuffle and spill files, which hold canonical identifiers
before sealing, encrypted on the executors' disks); run executors under the node's service account,
in the operator's network. In ``local[N]`` mode everything stays in this machine's processes. The
peer still receives only what the pool engine sends: blinded points and sealed records.
"""

from ._mapper import SparkMapper
from ._scoring import score_partitions
from ._session import (
    DEFAULT_MASTER,
    SparkConfig,
    configure_from_settings,
    configure_spark,
    spark_available,
    spark_session,
    stop_spark,
)
from ._sites import aggregate_demand_spark, frame_to_spark, partial_demand_spark
from ._source import ColumnStats, SparkSource, open_spark_source
from ._tables import SparkTable, build_table, iter_part_records, partitions_for

__all__ = [
    "DEFAULT_MASTER",
    "ColumnStats",
    "SparkConfig",
    "SparkMapper",
    "SparkSource",
    "SparkTable",
    "aggregate_demand_spark",
    "build_table",
    "configure_from_settings",
    "configure_spark",
    "frame_to_spark",
    "iter_part_records",
    "open_spark_source",
    "partial_demand_spark",
    "partitions_for",
    "score_partitions",
    "spark_available",
    "spark_session",
    "stop_spark",
]
