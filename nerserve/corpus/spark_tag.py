"""Tag a text column with Spark, through the same pipeline as POST /api and tag.py.

    spark-submit [--master local[2]] spark_tag.py INPUT OUTPUT [--format text|jsonl|parquet]
                 [--output-format parquet|json] [--text-field text] [--model-dir DIR]

Reads plain text (one text a line, as the column --text-field names), JSON
Lines or Parquet, by --format or else the input's extension, as tag.py does;
writes Parquet or JSON Lines: every input column, and `entities`, an
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

from nerserve.corpus import formats
from nerserve.corpus.spark_batches import ENTITIES, EntityTagger
from nerserve.tagger import files
from nerserve.tagger.backends import BACKENDS

FORMATS = ("text", "jsonl", "parquet")


def input_format_name(name: str) -> str:
    """--format's value; json, the name this job took before it took tag.py's, is jsonl."""
    return "jsonl" if name == "json" else name


def guess_format(path: str) -> str:
    """parquet for .parquet, else as tag.py guesses (jsonl for .jsonl and
    .ndjson, .gz or not; conll for .conll, which this job does not read); a
    directory or glob without an extension is text."""
    path = path.rstrip("/")
    return "parquet" if path.endswith(".parquet") else formats.guess_format(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a file or directory, or a glob (any path Spark reads)")
    parser.add_argument("output", help="a directory to create (Spark writes one file a partition)")
    # The options that tag.py has too, under its names.
    parser.add_argument("--format", choices=FORMATS, type=input_format_name,
                        help="the input's format (default: jsonl for .jsonl and .ndjson, parquet for .parquet, "
                             "else text: one text a line)")
    parser.add_argument("--text-field", default=formats.TEXT_FIELD, metavar="NAME",
                        help="the column of texts; plain text is read into a column of this name "
                             "(default: %(default)s)")
    parser.add_argument("--min-score", type=float, default=0.0, help="leave out entities scored below this")
    parser.add_argument("--model-dir", default=str(files.COMMITTED_MODEL_DIR),
                        help="the model directory, on the executors: a path, or the name given to --archives")
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    # Spark's own.
    parser.add_argument("--output-format", choices=("parquet", "json"), default="parquet",
                        help="json: JSON Lines (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=512, help="texts a batch (Arrow's maxRecordsPerBatch)")
    # The names this job took before it took tag.py's, kept so that its earlier commands still run.
    parser.add_argument("--input-format", dest="format", choices=FORMATS, type=input_format_name,
                        help=argparse.SUPPRESS)
    parser.add_argument("--text-column", dest="text_field", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.format = args.format or guess_format(args.input)
    if args.format not in FORMATS:
        parser.error(f"{args.input} is {args.format}, which tag.py reads and this job does not: give --format")
    return args


def read_texts(spark: SparkSession, path: str, input_format: str, text_field: str) -> DataFrame:
    if input_format == "text":
        return spark.read.text(path).withColumnRenamed("value", text_field)
    return spark.read.json(path) if input_format == "jsonl" else spark.read.parquet(path)


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
    frame = read_texts(spark, args.input, args.format, args.text_field)
    tagged = with_entities(frame, args.text_field, args.model_dir, args.backend, args.min_score)
    getattr(tagged.write, args.output_format)(args.output)
    spark.stop()


if __name__ == "__main__":  # spark-submit takes this module's path too, as it takes spark_tag.py
    main()
