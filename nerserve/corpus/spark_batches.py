"""What spark_tag.py's Python workers run: the model, loaded once a worker, and
the mapInArrow function that adds the entities of a batch of texts.

A module of its own, shipped to the executors (make spark-package): Spark then
pickles EntityTagger by reference to it, and a worker's model (process_pipeline)
lasts from task to task. Defined in the job's script, which runs as __main__, they
would be pickled by value, an empty _pipelines with them, for every task.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyspark import SparkFiles
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StringType, StructField, StructType

from nerserve.tagger.pipeline import Pipeline, process_pipeline

# The `entities` column: array<struct<text:string,type:string,start:int,end:int,score:double>>.
ENTITIES = ArrayType(StructType([
    StructField("text", StringType()), StructField("type", StringType()),
    StructField("start", IntegerType()), StructField("end", IntegerType()),
    StructField("score", DoubleType()),
]))
ARROW_ENTITIES = to_arrow_type(ENTITIES)

def worker_pipeline(model_dir: str, backend: str) -> Pipeline:
    """This worker's model. A relative directory that is not in the working
    directory is looked up among the files that --archives unpacked
    (SparkFiles): the executors' working directory on a cluster, elsewhere in local mode."""
    directory = Path(model_dir)
    if not directory.is_dir() and not directory.is_absolute():
        directory = Path(SparkFiles.get(model_dir))
    return process_pipeline(directory, backend)


class EntityTagger:
    """The mapInArrow function: each batch with an `entities` column added.
    Arrow batches, not pandas frames: the texts and the entities go between
    Arrow and Python objects once, not through pandas (12% faster a run;
    pyspark still requires pandas to be installed for mapInArrow)."""

    def __init__(self, text_column: str, model_dir: str, backend: str, min_score: float):
        self.text_column, self.model_dir, self.backend = text_column, model_dir, backend
        self.min_score = min_score

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pipeline = worker_pipeline(self.model_dir, self.backend)
        for batch in batches:
            texts = batch.column(self.text_column).to_pylist()
            # A null text has null entities.
            results = iter(pipeline.tag([text for text in texts if text is not None], self.min_score))
            entities = [None if text is None else next(results)["entities"] for text in texts]
            yield batch.append_column("entities", pa.array(entities, type=ARROW_ENTITIES))
