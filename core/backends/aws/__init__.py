"""The AWS backend: Kinesis, Glue (job and crawlers), Athena and S3, with boto3 sessions injected."""
