"""A stand-in for AWS Glue's `awsglue` package, for tests only (tests/glue_job/test_glue_entry.py).

It covers what glue_job/job.py uses, with Glue's documented behaviour, over a local SparkSession:
utils.getResolvedOptions, job.Job, context.GlueContext (create_data_frame.from_options for Kinesis,
forEachBatch). The test puts its parent folder on sys.path; nothing else may import it.
"""
