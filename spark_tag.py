"""Tag a text column with Spark, through the same pipeline as POST /api and tag.py.

    spark-submit [--master local[2]] spark_tag.py INPUT OUTPUT [--input-format text|json|parquet]
                 [--output-format parquet|json] [--text-column text] [--model-dir DIR]

Reads plain text (one text a line, as the column `text`), JSON Lines or
Parquet; writes Parquet or JSON Lines: every input column, and `entities`, an
array of structs (text, type, start, end, score) as in the API's results.
Each Python worker loads the lean model (ONNX Runtime) once, at its first
batch, and tags Arrow batches of --batch-size texts with mapInPandas. On a
cluster, the code and the model reach the executors with --py-files and
--archives (docs/readme-corpus.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark import SparkFiles
from pyspark.sql import SparkSession
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StringType, StructField, StructType

from model import files
from model.pipeline import Pipeline, load_pipeline

if TYPE_CHECKING:
    import pandas as pd

# array<struct<text:string,type:string,start:int,end:int,score:double>>
ENTITIES = ArrayType(StructType([
    StructField("text", StringType()), StructField("type", StringType()),
    StructField("start", IntegerType()), StructField("end", IntegerType()),
    StructField("score", DoubleType()),  # null where the model cannot score the type
]))

# The models of this Python worker, by (directory, backend): Spark reuses its
# workers from task to task, so a model is loaded once a worker.
_pipelines: dict[tuple[str, str], Pipeline] = {}


def worker_pipeline(model_dir: str, backend: str) -> Pipeline:
    """This worker's model. A relative directory that is not in the working
    directory is looked up among the files that --archives unpacked
    (SparkFiles): the executors' working directory on a cluster, elsewhere in local mode."""
    if (model_dir, backend) not in _pipelines:
        directory = Path(model_dir)
        if not directory.is_dir() and not directory.is_absolute():
            directory = Path(SparkFiles.get(model_dir))
        _pipelines[model_dir, backend] = load_pipeline(directory, backend)
    return _pipelines[model_dir, backend]


class EntityTagger:
    """The mapInPandas function: each batch with an `entities` column added.
    A class, not a closure over the options, so that Spark pickles it by
    reference to this module and the workers keep _pipelines between tasks."""

    def __init__(self, text_column: str, model_dir: str, backend: str, min_score: float):
        self.text_column, self.model_dir, self.backend = text_column, model_dir, backend
        self.min_score = min_score

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pipeline = worker_pipeline(self.model_dir, self.backend)
        for batch in batches:
            texts = batch[self.text_column]
            present = texts.notna()  # a null text has null entities
            results = iter(pipeline.tag(texts[present].tolist(), self.min_score))
            batch["entities"] = [next(results)["entities"] if here else None for here in present]
            yield batch


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Spark must find EntityTagger in this module by name, not in __main__
    # (which it would pickle by value, _pipelines with it, for every task).
    from spark_tag import EntityTagger

    spark = SparkSession.builder.appName("spark_tag").getOrCreate()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
    if args.input_format == "text":
        frame = spark.read.text(args.input).withColumnRenamed("value", args.text_column)
    else:
        frame = getattr(spark.read, args.input_format)(args.input)
    frame = frame.drop("entities")  # tagged before: tagged again
    schema = StructType([*frame.schema.fields, StructField("entities", ENTITIES)])
    tagger = EntityTagger(args.text_column, args.model_dir, args.backend, args.min_score)
    tagged = frame.mapInPandas(tagger, schema)
    getattr(tagged.write, args.output_format)(args.output)
    spark.stop()


if __name__ == "__main__":
    main()
