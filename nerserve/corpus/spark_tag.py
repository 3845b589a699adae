"""Tag a text column with Spark, through the same pipeline as POST /api and tag.py.

    spark-submit [--master local[2]] spark_tag.py INPUT OUTPUT [--input-format text|json|parquet]
                 [--output-format parquet|json] [--text-column text] [--model-dir DIR]

Reads plain text (one text a line, as the column `text`), JSON Lines or
Parquet; writes Parquet or JSON Lines: every input column, and `entities`, an
array of structs (text, type, start, end, score) as in the API's results.
Each Python worker loads the lean model (ONNX Runtime) once, at its first
batch, and tags Arrow batches of --batch-size texts with mapInArrow
(nerserve/corpus/spark_batches.py). On a
cluster, the code and the model reach the executors with --py-files and
--archives (docs/corpus.md).
"""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructField, StructType

from nerserve.corpus.spark_batches import ENTITIES, EntityTagger
from nerserve.tagger import files


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a file or directory, or a glob (any path Spark reads)")
    parser.add_argument("output", help="a directory to create (Spark writes one file a partition)")
    parser.add_argument("--input-format", choices=("text", "json", "parquet"), default="text",
                        help="text: one text a line; json: JSON Lines")
    parser.add_argument("--output-format", choices=("parquet", "json"), default="parquet")
    parser.add_argument("--text-column", default="text", help="the column of texts (json and parquet input)")
    parser.add_argument("--model-dir", default=str(files.COMMITTED_MODEL_DIR),
                        help="the model directory, on the executors: a path, or the name given to --archives")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--min-score", type=float, default=0.0, help="leave out entities scored below this")
    parser.add_argument("--batch-size", type=int, default=512, help="texts a batch (Arrow's maxRecordsPerBatch)")
    return parser.parse_args(argv)


def read_texts(spark: SparkSession, path: str, input_format: str, text_column: str) -> DataFrame:
    if input_format == "text":
        return spark.read.text(path).withColumnRenamed("value", text_column)
    return getattr(spark.read, input_format)(path)


def with_entities(frame: DataFrame, text_column: str, model_dir: str, backend: str = "onnx",
                  min_score: float = 0.0) -> DataFrame:
    """The frame with an `entities` column (one it had is replaced), tagged by the Python workers."""
    frame = frame.drop("entities")
    schema = StructType([*frame.schema.fields, StructField("entities", ENTITIES)])
    return frame.mapInArrow(EntityTagger(text_column, model_dir, backend, min_score), schema)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    spark = SparkSession.builder.appName("spark_tag").getOrCreate()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
    frame = read_texts(spark, args.input, args.input_format, args.text_column)
    tagged = with_entities(frame, args.text_column, args.model_dir, args.backend, args.min_score)
    getattr(tagged.write, args.output_format)(args.output)
    spark.stop()
