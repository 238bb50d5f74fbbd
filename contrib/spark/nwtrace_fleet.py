#!/usr/bin/env python3
"""Compact and query a fleet tree of nwtrace recordings with Spark.

    spark-submit contrib/spark/nwtrace_fleet.py ROOT --parquet OUT [--aggregates FILE]

ROOT is the top of a <MACHINE_ID>/<TIMESTAMP>/nw/nw_NNNN.csv tree (local
path, hdfs://, s3a://, gs://: whatever the cluster's Hadoop reads). Every
nw_*.csv and nw_*.csv.gz below it is read with an explicit schema:

- Timestamp is a UTC timestamp (the session time zone is pinned to UTC);
- PID, ports, Size, Latency and IP Version are integers;
- an empty field is null (an unknown peer, a latency that is not known);
- machine_id and run come from each file's path.

It writes Parquet partitioned by machine_id and date (the compaction step
for long-term storage), and the per-machine and per-process aggregates of
`nwtrace report --format json` as one JSON document: counts and bytes are
exact; latency percentiles come from Spark's percentile_approx with
accuracy ACCURACY (relative rank error 1/ACCURACY; see the README).

.csv.zst is not read: stock Hadoop builds have no zstd codec for text
files. Record with --compress gzip (or none) for a tree Spark reads.
"""

import argparse
import json
import sys

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

# <root>/<MACHINE_ID>/<TIMESTAMP>/nw/nw_NNNN.csv[.gz]
PATH_RE = r"([^/]+)/([^/]+)/nw/nw_[0-9]+\.csv(\.gz)?$"

ACCURACY = 10000
QUANTILES = [0.5, 0.9, 0.99, 0.999]


def read_tree(spark, root):
    files = [f"{root.rstrip('/')}/*/*/nw/nw_*.csv", f"{root.rstrip('/')}/*/*/nw/nw_*.csv.gz"]
    df = (
        spark.read.option("header", True)
        # RFC 4180: a quote inside a quoted field is doubled.
        .option("escape", '"')
        .option("multiLine", False)
        .option("mode", "FAILFAST")
        .schema(SCHEMA)
        .csv(files)
    )
    path = F.input_file_name()
    return (
        df.withColumn("machine_id", F.regexp_extract(path, PATH_RE, 1))
        .withColumn("run", F.regexp_extract(path, PATH_RE, 2))
        .withColumn("ts", F.to_timestamp("Timestamp", "yyyy-MM-dd HH:mm:ss.SSSSSS"))
        .withColumn("date", F.to_date("ts"))
    )


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


def aggregates(df):
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


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="top of the <MACHINE_ID>/<TIMESTAMP>/nw/ tree")
    ap.add_argument("--parquet", required=True, help="where to write the Parquet dataset")
    ap.add_argument("--aggregates", help="write the aggregates as JSON here (default: stdout)")
    args = ap.parse_args(argv)

    spark = (
        SparkSession.builder.appName("nwtrace-fleet")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    df = read_tree(spark, args.root).cache()
    write_parquet(df, args.parquet)
    result = aggregates(df)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.aggregates:
        with open(args.aggregates, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
