#!/usr/bin/env bash
# Deploy Signal Stream to AWS in one run: build the job artefacts, deploy infra/template.yaml, upload the
# artefacts to s3://<lake bucket>/jobs/ (the script, its modules, and the wheels of deltalake and its dependencies
# under jobs/wheels/), give the account's shared Glue crawler log group a retention if it has none, then print the
# next steps (console image, starting the job).
#
# Every stack parameter comes from an environment variable (table in infra/README.md). On the first deploy the
# network and sign-in variables are required; on later deploys an unset variable keeps the stack's current value
# (an exported empty value sets the parameter to empty). Credentials come from the usual AWS CLI chain
# (AWS_PROFILE, SSO, instance role...): none are read or stored here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STACK_NAME="${STACK_NAME:-signal-stream}"
TEMPLATE="infra/template.yaml"
JOB_ZIP="dist/signal_stream_job.zip"
JOB_SCRIPT="dist/job.py"
WHEELS_DIR="dist/wheels"

# Environment variable -> stack parameter.
PARAMETERS=(
  "VPC_ID:VpcId"
  "PUBLIC_SUBNET_IDS:PublicSubnetIds"
  "PRIVATE_SUBNET_IDS:PrivateSubnetIds"
  "CERTIFICATE_ARN:CertificateArn"
  "OIDC_ISSUER:OidcIssuer"
  "OIDC_AUTHORIZATION_ENDPOINT:OidcAuthorizationEndpoint"
  "OIDC_TOKEN_ENDPOINT:OidcTokenEndpoint"
  "OIDC_USER_INFO_ENDPOINT:OidcUserInfoEndpoint"
  "OIDC_CLIENT_ID:OidcClientId"
  "OIDC_CLIENT_SECRET_ARN:OidcClientSecretArn"
  "OIDC_CLIENT_SECRET_KEY:OidcClientSecretKey"
  "OIDC_SCOPE:OidcScope"
  "SESSION_TIMEOUT_SECONDS:SessionTimeoutSeconds"
  "ALLOWED_CIDR:AllowedCidr"
  "STREAM_NAME:StreamName"
  "STREAM_MODE:StreamMode"
  "SHARD_COUNT:ShardCount"
  "STREAM_RETENTION_HOURS:StreamRetentionHours"
  "LAKE_PREFIX:LakePrefix"
  "ATHENA_RESULTS_RETENTION_DAYS:AthenaResultsRetentionDays"
  "CHECKPOINT_NONCURRENT_VERSION_DAYS:CheckpointNoncurrentVersionDays"
  "NONCURRENT_VERSION_DAYS:NoncurrentVersionDays"
  "JOB_NAME:JobName"
  "GLUE_VERSION:GlueVersion"
  "WORKER_TYPE:WorkerType"
  "NUMBER_OF_WORKERS:NumberOfWorkers"
  "TRIGGER_SECONDS:TriggerSeconds"
  "WATERMARK_MINUTES:WatermarkMinutes"
  "DATABASE_NAME:DatabaseName"
  "ATHENA_WORKGROUP:AthenaWorkGroupName"
  "BYTES_SCANNED_CUTOFF:BytesScannedCutoffPerQuery"
  "IMAGE_TAG:ImageTag"
  "IMAGE_KEEP_COUNT:ImageKeepCount"
  "TASK_CPU:TaskCpu"
  "TASK_MEMORY:TaskMemory"
  "DESIRED_COUNT:DesiredCount"
  "DEMO_MODE:DemoMode"
  "OPERATORS:Operators"
  "OPERATOR_GROUP:OperatorGroup"
  "LOG_RETENTION_DAYS:LogRetentionDays"
  "ACCESS_LOG_RETENTION_DAYS:AccessLogRetentionDays"
  "ALERT_EMAIL:AlertEmail"
)
# Parameters without a default: needed when the stack is created.
REQUIRED_ON_CREATE=(
  VPC_ID PUBLIC_SUBNET_IDS PRIVATE_SUBNET_IDS CERTIFICATE_ARN
  OIDC_ISSUER OIDC_AUTHORIZATION_ENDPOINT OIDC_TOKEN_ENDPOINT OIDC_USER_INFO_ENDPOINT
  OIDC_CLIENT_ID OIDC_CLIENT_SECRET_ARN
)

die() {
  echo "deploy.sh: $*" >&2
  exit 2
}

for tool in aws make; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed or not on PATH (see infra/README.md, Prerequisites)"
done

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "$REGION" ]]; then
  REGION="$(aws configure get region 2>/dev/null || true)"
fi
[[ -n "$REGION" ]] || die "no AWS region: set AWS_REGION (for example AWS_REGION=eu-west-1)"

aws sts get-caller-identity --region "$REGION" --output text --query Account >/dev/null \
  || die "the AWS CLI has no working credentials: log in first (aws sso login, or set AWS_PROFILE)"

STACK_STATUS="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
  --query 'Stacks[0].StackStatus' --output text 2>/dev/null || true)"

if [[ -z "$STACK_STATUS" || "$STACK_STATUS" == "None" ]]; then
  missing=()
  for name in "${REQUIRED_ON_CREATE[@]}"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
  done
  if ((${#missing[@]})); then
    echo "deploy.sh: stack '$STACK_NAME' does not exist yet in $REGION; creating it needs these variables:" >&2
    for name in "${missing[@]}"; do
      echo "  $name" >&2
    done
    echo "See infra/README.md (Parameters) for what each one is." >&2
    exit 2
  fi
  echo "==> creating stack $STACK_NAME in $REGION"
elif [[ "$STACK_STATUS" == "ROLLBACK_COMPLETE" ]]; then
  die "stack '$STACK_NAME' is in ROLLBACK_COMPLETE (its creation failed): read its events, delete it" \
    "(aws cloudformation delete-stack --stack-name $STACK_NAME), then run this again"
else
  echo "==> updating stack $STACK_NAME in $REGION (status $STACK_STATUS); unset variables keep their values"
fi

overrides=()
for pair in "${PARAMETERS[@]}"; do
  env_name="${pair%%:*}"
  param="${pair#*:}"
  if [[ -n "${!env_name+set}" ]]; then
    overrides+=("$param=${!env_name}")
  fi
done

echo "==> building the job artefacts (make package-job)"
make package-job
for artefact in "$JOB_ZIP" "$JOB_SCRIPT"; do
  [[ -f "$artefact" ]] || die "make package-job did not produce $artefact"
done

# The job's --additional-python-modules names wheels under jobs/wheels/ (deltalake and its dependencies as
# requirements.lock pins them). make package-job downloads them, hash-checked against the lock, and fails when the
# template names others; checked again here, since a job whose wheels are missing from S3 cannot start.
template_wheels="$(grep -o 'jobs/wheels/[^",[:space:]]*\.whl' "$TEMPLATE" | sed 's|^jobs/wheels/||' \
  | LC_ALL=C sort -u || true)"
built_wheels="$( (cd "$WHEELS_DIR" 2>/dev/null && ls -1 -- *.whl 2>/dev/null) | LC_ALL=C sort || true)"
[[ -n "$template_wheels" ]] || die "$TEMPLATE names no wheels in the job's --additional-python-modules"
if [[ "$built_wheels" != "$template_wheels" ]]; then
  {
    echo "deploy.sh: the wheels in $WHEELS_DIR/ are not the ones $TEMPLATE has the job install."
    echo "  in $WHEELS_DIR/:"
    printf '    %s\n' ${built_wheels:-"(none)"}
    echo "  in $TEMPLATE:"
    printf '    %s\n' $template_wheels
    echo "Run 'make package-job': it prints the list the template needs when requirements.lock changed."
  } >&2
  exit 2
fi

echo "==> deploying $TEMPLATE"
deploy_args=(
  cloudformation deploy
  --region "$REGION"
  --stack-name "$STACK_NAME"
  --template-file "$TEMPLATE"
  --capabilities CAPABILITY_NAMED_IAM
  --no-fail-on-empty-changeset
  --tags "app=signal-stream"
)
if ((${#overrides[@]})); then
  deploy_args+=(--parameter-overrides "${overrides[@]}")
fi
aws "${deploy_args[@]}"

output() {
  aws cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue | [0]" --output text
}
BUCKET="$(output LakeBucketName)"
LAKE_PREFIX_OUT="$(output LakePrefix)"
REPO_URI="$(output EcrRepositoryUri)"
JOB="$(output JobName)"
WORKGROUP="$(output AthenaWorkGroup)"
STREAM="$(output StreamName)"
DATABASE="$(output DatabaseName)"
ALB_DNS="$(output LoadBalancerDnsName)"
CLUSTER="$(output ClusterName)"
SERVICE="$(output ServiceName)"
ACCESS_LOGS="$(output AccessLogBucketName)"
[[ -n "$BUCKET" && "$BUCKET" != "None" ]] || die "the stack has no LakeBucketName output; is $TEMPLATE the right template?"

# The stack created the bucket; the job reads these at its next start (a running job keeps its old code).
echo "==> uploading the job artefacts to s3://$BUCKET/jobs/"
aws s3 cp "$JOB_ZIP" "s3://$BUCKET/jobs/signal_stream_job.zip" --region "$REGION" --only-show-errors
aws s3 cp "$JOB_SCRIPT" "s3://$BUCKET/jobs/job.py" --region "$REGION" --only-show-errors
for wheel in $template_wheels; do
  aws s3 cp "$WHEELS_DIR/$wheel" "s3://$BUCKET/jobs/wheels/$wheel" --region "$REGION" --only-show-errors
done

# Glue crawlers log to the account's shared /aws-glue/crawlers group, which the stack cannot own (it is every
# crawler's, and usually exists already; see CrawlerRole in the template). Give it a retention when it has none, so
# crawler logs do not stay forever; a retention someone already chose is left as it is. A failure here only warns:
# the stack is deployed.
CRAWLER_LOG_GROUP="/aws-glue/crawlers"
CRAWLER_LOG_RETENTION_DAYS="$(output LogRetentionDays)"  # the stack's LogRetentionDays, as just deployed
[[ "$CRAWLER_LOG_RETENTION_DAYS" =~ ^[0-9]+$ ]] || CRAWLER_LOG_RETENTION_DAYS=30
crawler_log_retention() {
  local found name days
  found="$(aws logs describe-log-groups --region "$REGION" --log-group-name-prefix "$CRAWLER_LOG_GROUP" \
    --query "logGroups[?logGroupName=='$CRAWLER_LOG_GROUP'] | [0].[logGroupName, retentionInDays]" \
    --output text)" || return 1
  read -r name days <<<"$found" || true
  if [[ "$name" != "$CRAWLER_LOG_GROUP" ]]; then
    aws logs create-log-group --region "$REGION" --log-group-name "$CRAWLER_LOG_GROUP" || return 1
    days=""
  fi
  if [[ -z "$days" || "$days" == "None" ]]; then
    aws logs put-retention-policy --region "$REGION" --log-group-name "$CRAWLER_LOG_GROUP" \
      --retention-in-days "$CRAWLER_LOG_RETENTION_DAYS" || return 1
    echo "==> crawler logs ($CRAWLER_LOG_GROUP) now expire after $CRAWLER_LOG_RETENTION_DAYS days"
  else
    echo "==> crawler logs ($CRAWLER_LOG_GROUP) keep their retention of $days days"
  fi
}
if ! crawler_log_retention; then
  echo "deploy.sh: warning: could not give $CRAWLER_LOG_GROUP a retention; crawler logs stay forever until you run" >&2
  echo "  aws logs put-retention-policy --log-group-name $CRAWLER_LOG_GROUP --retention-in-days" \
    "$CRAWLER_LOG_RETENTION_DAYS --region $REGION" >&2
fi

REGISTRY="${REPO_URI%%/*}"
SUGGESTED_TAG="$(git rev-parse --short HEAD 2>/dev/null || date +%Y%m%d%H%M%S)"
cat <<EOF

Stack $STACK_NAME is deployed.
  lake        s3://$BUCKET/$LAKE_PREFIX_OUT/
  stream      $STREAM
  job         $JOB
  database    $DATABASE
  workgroup   $WORKGROUP
  console     https://<your DNS name> -> $ALB_DNS
  access logs s3://$ACCESS_LOGS/alb/

Next steps
  1. Build and push the console image for ARM64 (tags are immutable: use a new tag per build):
       aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $REGISTRY
       docker buildx build --platform linux/arm64 -t $REPO_URI:$SUGGESTED_TAG --push .
  2. Run the console on that image (same variables as this run, plus the tag):
       IMAGE_TAG=$SUGGESTED_TAG infra/deploy.sh
     then watch it become healthy:
       aws ecs describe-services --cluster $CLUSTER --services $SERVICE --region $REGION \\
         --query 'services[0].deployments[0].rolloutState'
  3. Point your DNS name (the certificate's) at $ALB_DNS, and register
     https://<your DNS name>/oauth2/idpresponse as the redirect URI at your identity provider.
  4. Start the streaming job from the console (Pipeline health, as an operator) or:
       aws glue start-job-run --job-name $JOB --region $REGION
     After new job code was uploaded, stop and start the job to pick it up. If the job refuses to start
     because its checkpoint is missing or belongs to another app, read infra/README.md, Checkpoint reset.
EOF
