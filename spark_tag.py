"""Tag a text column with Spark: `spark-submit spark_tag.py INPUT OUTPUT ...`
(`--help` has the options). spark-submit takes a script's path, so the job,
nerserve.corpus.spark_tag, starts from this one."""

from nerserve.corpus.spark_tag import main

if __name__ == "__main__":
    main()
