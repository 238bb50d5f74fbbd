#!/usr/bin/env python3
"""Compact and query a fleet tree of nwtrace recordings with Spark.

    spark-submit contrib/spark/nwtrace_fleet.py ROOT --parquet OUT [--aggregates FILE]

ROOT is the top of a <MACHINE_ID>/<TIMESTAMP>/nw/nw_NNNN.csv tree (local
path, hdfs://, s3a://, gs://: whatever the cluster's Hadoop reads). The job
lists the tree through Hadoop's FileSystem and reads every file `record`
can write there, with an explicit schema:

- nw_NNNN.csv and nw_NNNN.csv.gz with Spark's CSV reader (Hadoop's gzip
  codec);
- nw_NNNN.csv.zst by decompressing each file in the job (binaryFile and
  the `zstandard` module, needed on the driver and the executors): stock
  Hadoop builds have no zstd codec for text files;
- Timestamp is a UTC timestamp (the session time zone is pinned to UTC);
- PID, ports, Size, Latency and IP Version are integers;
- an empty field is null (an unknown peer, a latency that is not known);
- machine_id and run come from each file's path.

No file of the tree is skipped; the output says how many of each kind it
read ("files"). A tree without any fails with one line.

It writes Parquet partitioned by machine_id and date (the compaction step
for long-term storage), and the per-machine and per-process aggregates of
`nwtrace report --format json` as one JSON document: counts and bytes are
exact; latency percentiles come from Spark's percentile_approx with
accuracy ACCURACY (relative rank error 1/ACCURACY; see the README).

Run with python3 (not spark-submit), it runs in local mode bound to
127.0.0.1 (SPARK_LOCAL_IP, spark.driver.host, spark.driver.bindAddress), so
it does not need the machine's hostname to resolve (containers, fresh roots
without an /etc/hosts entry). spark-submit looks the hostname up itself
before the job starts: export SPARK_LOCAL_IP=127.0.0.1 for it there.
"""

import argparse
import csv
import io
import json
import os
import re
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

# The 14 columns of the output contract (docs/semantics.md), in order.
SCHEMA = StructType(
    [
        StructField("Timestamp", StringType()),
        StructField("PID", LongType()),
        StructField("Command", StringType()),
        StructField("Protocol", StringType()),
        StructField("IP Version", IntegerType()),
        StructField("Source Address", StringType()),
        StructField("Destination Address", StringType()),
        StructField("Source Port", IntegerType()),
        StructField("Destination Port", IntegerType()),
        StructField("Size", LongType()),
        StructField("Direction", StringType()),
        StructField("Latency", LongType()),
        StructField("Error", StringType()),
        StructField("MSG Flags", StringType()),
    ]
)

# <root>/<MACHINE_ID>/<TIMESTAMP>/nw/nw_NNNN.csv[.gz|.zst], from each row's file.
PATH_RE = r"([^/]+)/([^/]+)/nw/nw_[0-9]+\.csv(\.gz|\.zst)?$"
# The same, relative to the root, for the listing; group 1 is the kind.
FILE_RE = re.compile(r"[^/]+/[^/]+/nw/nw_[0-9]+\.(csv(?:\.gz|\.zst)?)")
KINDS = ("csv", "csv.gz", "csv.zst")

ACCURACY = 10000
QUANTILES = [0.5, 0.9, 0.99, 0.999]


def fail(message):
    print(f"nwtrace_fleet: {message}", file=sys.stderr)
    sys.exit(1)


def list_tree(spark, root):
    """Every nwtrace CSV file under root, by kind, through Hadoop's
    FileSystem (so hdfs://, s3a:// and gs:// list as the local disk does).
    Globs are not used: Spark refuses a glob that matches nothing, and a
    tree may hold any one kind, or all."""
    jvm = spark.sparkContext._jvm
    top = jvm.org.apache.hadoop.fs.Path(root)
    fs = top.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(top):
        fail(f"{root} does not exist")
    base = fs.makeQualified(top).toString().rstrip("/") + "/"
    files = {kind: [] for kind in KINDS}
    listing = fs.listFiles(top, True)
    while listing.hasNext():
        path = listing.next().getPath().toString()
        if not path.startswith(base):
            fail(f"listing {base} returned {path}, outside it")
        m = FILE_RE.fullmatch(path[len(base):])
        if m:
            files[m.group(1)].append(path)
    for kind in KINDS:
        files[kind].sort()
    if not any(files.values()):
        fail(f"no nw_NNNN.csv, .csv.gz or .csv.zst files under {root}/<MACHINE_ID>/<TIMESTAMP>/nw/")
    return files


def zstd_rows(path, content):
    """The typed rows of one .csv.zst file (whole zstd frames, as record
    writes one per flush), parsed as RFC 4180 with the values Spark's CSV
    reader gives: an empty field is null, integers are ints. Any damage
    fails the job with the file and the line (FAILFAST, as for the CSV
    reader)."""
    import zstandard  # on the executors: imported where the rows are made

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(content), read_across_frames=True)
    text = io.TextIOWrapper(reader, encoding="utf-8", newline="")
    records = csv.reader(text, strict=True)
    header = next(records, None)
    if header != SCHEMA.names:
        raise ValueError(f"{path}: the header is not nwtrace's 14 columns: {header}")
    ints = [not isinstance(f.dataType, StringType) for f in SCHEMA.fields]
    for record in records:
        if len(record) != len(ints):
            raise ValueError(f"{path}:{records.line_num}: {len(record)} fields, not {len(ints)}")
        try:
            row = [None if v == "" else int(v) if is_int else v for v, is_int in zip(record, ints)]
        except ValueError as e:
            raise ValueError(f"{path}:{records.line_num}: {e}") from None
        yield row + [path]


def read_zstd(spark, paths):
    try:
        import zstandard  # noqa: F401 - fail here, in one line, rather than in a task
    except ImportError:
        fail("reading .csv.zst needs the Python module zstandard on the driver and the executors "
             "(pip install zstandard)")
    files = spark.read.format("binaryFile").load(paths).select("path", "content")
    rows = files.rdd.flatMap(lambda f: zstd_rows(f[0], bytes(f[1])))
    return spark.createDataFrame(rows, StructType(SCHEMA.fields + [StructField("_path", StringType())]))


def read_tree(spark, root):
    files = list_tree(spark, root)
    counts = {kind: len(files[kind]) for kind in KINDS}
    print("nwtrace_fleet: reading " + ", ".join(f"{n} .{kind}" for kind, n in counts.items()), file=sys.stderr)
    parts = []
    text = files["csv"] + files["csv.gz"]
    if text:
        parts.append(
            spark.read.option("header", True)
            # RFC 4180: a quote inside a quoted field is doubled.
            .option("escape", '"')
            .option("multiLine", False)
            .option("mode", "FAILFAST")
            .schema(SCHEMA)
            .csv(text)
            .withColumn("_path", F.input_file_name())
        )
    if files["csv.zst"]:
        parts.append(read_zstd(spark, files["csv.zst"]))
    df = parts[0]
    for part in parts[1:]:
        df = df.unionByName(part)
    path = F.col("_path")
    df = (
        df.withColumn("machine_id", F.regexp_extract(path, PATH_RE, 1))
        .withColumn("run", F.regexp_extract(path, PATH_RE, 2))
        .withColumn("ts", F.to_timestamp("Timestamp", "yyyy-MM-dd HH:mm:ss.SSSSSS"))
        .withColumn("date", F.to_date("ts"))
        .drop("_path")
    )
    return df, counts


def write_parquet(df, out):
    (
        df.drop("Timestamp")
        .withColumnRenamed("ts", "timestamp")
        .write.mode("overwrite")
        .partitionBy("machine_id", "date")
        .parquet(out)
    )


def latency(direction):
    """percentile_approx of one direction's latencies, and its count/max."""
    lat = F.when(F.col("Direction") == direction, F.col("Latency"))
    return [
        F.count(lat).alias(f"{direction}_count"),
        F.percentile_approx(lat, QUANTILES, ACCURACY).alias(f"{direction}_q"),
        F.max(lat).alias(f"{direction}_max"),
    ]


def counts():
    sent = F.col("Direction") == "send"
    return [
        F.count(F.lit(1)).alias("ops"),
        F.sum(F.when(sent, 1).otherwise(0)).alias("sends"),
        F.sum(F.when(~sent, 1).otherwise(0)).alias("receives"),
        F.sum(F.when(sent, F.col("Size")).otherwise(0)).alias("bytes_sent"),
        F.sum(F.when(~sent, F.col("Size")).otherwise(0)).alias("bytes_received"),
        F.sum(F.when(F.col("Error").isNotNull(), 1).otherwise(0)).alias("errors"),
    ]


def summary(row, direction):
    q = row[f"{direction}_q"] or [None] * len(QUANTILES)
    return {
        "count": row[f"{direction}_count"],
        "p50": q[0],
        "p90": q[1],
        "p99": q[2],
        "p999": q[3],
        "max": row[f"{direction}_max"],
    }


def aggregates(df, files):
    machines = df.groupBy("machine_id").agg(*counts()).orderBy("machine_id").collect()
    procs = (
        df.groupBy("machine_id", "PID", "Command")
        .agg(*counts(), *latency("send"), *latency("receive"))
        .orderBy("machine_id", "PID", "Command")
        .collect()
    )
    keys = ["ops", "sends", "receives", "bytes_sent", "bytes_received", "errors"]
    return {
        "schema_version": 1,
        "files": files,
        "percentiles": {"method": "percentile_approx", "accuracy": ACCURACY},
        "rows": sum(m["ops"] for m in machines),
        "machines": [dict({"machine_id": m["machine_id"]}, **{k: m[k] for k in keys}) for m in machines],
        "processes": [
            dict(
                {"machine_id": p["machine_id"], "pid": p["PID"], "comm": p["Command"]},
                **{k: p[k] for k in keys},
                latency_ns={"send": summary(p, "send"), "receive": summary(p, "receive")},
            )
            for p in procs
        ],
    }


def session():
    """The Spark session; in local mode bound to 127.0.0.1.

    Spark's driver finds its own address from the hostname, and a fresh
    root or a container often has no /etc/hosts entry for it
    (java.net.UnknownHostException). Run with python3 and no master given,
    this process starts the JVM, so SPARK_LOCAL_IP (and PYSPARK_PYTHON, for
    the workers) set here apply to all of it. Under spark-submit the JVM
    already runs and has looked the hostname up before this job starts:
    there, export SPARK_LOCAL_IP=127.0.0.1 yourself; a local master still
    gets spark.driver.host and spark.driver.bindAddress. A cluster's master
    is left alone, and whatever the caller set wins.
    """
    launching = "PYSPARK_GATEWAY_PORT" not in os.environ
    master_given = "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or "MASTER" in os.environ
    if launching and not master_given:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The Python workers of local mode: this interpreter (its venv has
        # zstandard), not whatever python3 comes first in PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = SparkConf()
    if conf.get("spark.master", "local[*]").startswith("local"):
        conf.setIfMissing("spark.master", "local[*]")
        conf.setIfMissing("spark.driver.host", "127.0.0.1")
        conf.setIfMissing("spark.driver.bindAddress", "127.0.0.1")
    conf.set("spark.sql.session.timeZone", "UTC")
    return SparkSession.builder.appName("nwtrace-fleet").config(conf=conf).getOrCreate()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="top of the <MACHINE_ID>/<TIMESTAMP>/nw/ tree")
    ap.add_argument("--parquet", required=True, help="where to write the Parquet dataset")
    ap.add_argument("--aggregates", help="write the aggregates as JSON here (default: stdout)")
    args = ap.parse_args(argv)

    spark = session()
    df, files = read_tree(spark, args.root)
    df = df.cache()
    write_parquet(df, args.parquet)
    result = aggregates(df, files)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.aggregates:
        with open(args.aggregates, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
