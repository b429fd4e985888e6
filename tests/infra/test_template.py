"""infra/: the template lints clean, IAM is least privilege, the network and bucket guards hold, deploy.sh works.

The IAM walker below is tested on small inline policies first, so each check is proven to fail when it should.
infra/deploy.sh runs against stub `aws` and `make` commands: nothing here talks to AWS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.data import AdditionalSpecs
from cfnlint.decode import cfn_yaml
from cfnlint.helpers import load_resource

from core.config import SETTINGS, Settings
from core.lake_layout import TABLES
from glue_job import package
from tests.test_dockerfile import DOCKERFILE, final_stage, image_env, parse_dockerfile, volume_paths

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
DEPLOY_SH = ROOT / "infra" / "deploy.sh"
INFRA_README = ROOT / "infra" / "README.md"
ACCESS_LOG_PREFIX = "alb"  # the load balancer's access logs: s3://<AccessLogBucket>/alb/AWSLogs/<account>/...

LINT_REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"]
# cfn-lint warnings/informational findings accepted on purpose, by rule id, each with its reason. None today.
ALLOWED_LINT_FINDINGS: dict[str, str] = {}

# ---------------------------------------------------------------------------------------------- IAM walker

READ_ONLY_PREFIXES = ("Get", "List", "Describe", "BatchGet")
# Reads of data or secrets: read-only, yet never allowed on every resource.
SENSITIVE_READS = frozenset({
    "s3:GetObject", "s3:GetObjectVersion", "secretsmanager:GetSecretValue",
    "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath",
})
# Actions AWS only grants on Resource "*", allowed there by name. The value is the condition key the statement
# must carry (None: no condition needed).
# - ecr:GetAuthorizationToken mints the registry login; what it may pull is scoped by the repository statement.
# - cloudwatch:PutMetricData is a write with no resource-level permission; the namespace condition pins it.
STAR_RESOURCE_EXCEPTIONS: dict[str, str | None] = {
    "ecr:GetAuthorizationToken": None,
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
}
BROAD_MANAGED_POLICIES = ("FullAccess", "AdministratorAccess", "PowerUserAccess")
POLICY_RESOURCE_TYPES = frozenset({
    "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy",
})


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _has_condition_key(condition: Any, key: str) -> bool:
    return isinstance(condition, dict) and any(
        isinstance(operands, dict) and key in operands for operands in condition.values())


def is_read_only(action: str) -> bool:
    """Return True for an action that only reads (Get/List/Describe/BatchGet) and is not a data or secret read."""
    _, _, name = action.partition(":")
    return name.startswith(READ_ONLY_PREFIXES) and action not in SENSITIVE_READS


def star_resource_allowed(action: str, condition: Any) -> bool:
    """Return True when `action` may be granted on Resource "*" (with this statement's condition)."""
    if action in STAR_RESOURCE_EXCEPTIONS:
        key = STAR_RESOURCE_EXCEPTIONS[action]
        return key is None or _has_condition_key(condition, key)
    return is_read_only(action)


def statement_violations(statement: dict[str, Any]) -> list[str]:
    """Return what is wrong with one policy statement (Deny statements only restrict, so they pass)."""
    if statement.get("Effect") != "Allow":
        return []
    problems = []
    if "NotAction" in statement or "NotResource" in statement:
        problems.append("NotAction/NotResource in an Allow statement")
    actions = _as_list(statement.get("Action"))
    if not actions:
        problems.append("no Action")
    for action in actions:
        if not isinstance(action, str):
            problems.append(f"action is not a literal string: {action!r}")
        elif action == "*" or action.endswith(":*"):
            problems.append(f"wildcard action {action!r}")
        elif "*" in action:
            problems.append(f"action pattern {action!r}: name the actions")
    if "*" in _as_list(statement.get("Resource")):
        for action in actions:
            if isinstance(action, str) and "*" not in action and not star_resource_allowed(
                    action, statement.get("Condition")):
                problems.append(f'{action} on Resource "*"')
    return problems


def managed_policy_violations(arns: list[Any]) -> list[str]:
    """Return the broad AWS managed policies (…FullAccess, admin, power user) among `arns`."""
    return [f"managed policy {json.dumps(arn)}" for arn in arns
            if any(name in json.dumps(arn) for name in BROAD_MANAGED_POLICIES)]


@dataclass(frozen=True)
class FoundStatement:
    """One policy statement of the template, where it lives, and the CloudFormation condition of its resource."""

    where: str
    statement: dict[str, Any]
    resource_condition: str | None


def _statements(where: str, document: Any, condition: str | None) -> Iterator[FoundStatement]:
    for index, statement in enumerate(_as_list((document or {}).get("Statement"))):
        yield FoundStatement(f"{where}[{index}]", statement, condition)


def iter_policy_statements(template: dict[str, Any]) -> Iterator[FoundStatement]:
    """Yield every statement: inline role/user/group policies and every policy resource."""
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        condition = resource.get("Condition")
        if kind in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            for policy in props.get("Policies", []):
                yield from _statements(f"{logical_id}/{policy['PolicyName']}", policy["PolicyDocument"], condition)
        elif kind in POLICY_RESOURCE_TYPES:
            yield from _statements(logical_id, props.get("PolicyDocument"), condition)


def template_violations(template: dict[str, Any]) -> list[str]:
    """Return every IAM problem in the template, each prefixed with where it is."""
    problems = []
    for found in iter_policy_statements(template):
        problems += [f"{found.where}: {p}" for p in statement_violations(found.statement)]
    for logical_id, resource in template["Resources"].items():
        arns = _as_list(resource.get("Properties", {}).get("ManagedPolicyArns"))
        problems += [f"{logical_id}: {p}" for p in managed_policy_violations(arns)]
    return problems


# The walker on small inline policies: each check must fire on what it forbids and pass what it allows.

@pytest.mark.parametrize(("statement", "expected"), [
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:x"}, "wildcard action '*'"),
    ({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:x"}, "wildcard action 's3:*'"),
    ({"Effect": "Allow", "Action": ["glue:Get*"], "Resource": "arn:x"}, "action pattern 'glue:Get*'"),
    ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}, 's3:PutObject on Resource "*"'),
    ({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["*"]}, 's3:PutObject on Resource "*"'),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, 's3:GetObject on Resource "*"'),
    ({"Effect": "Allow", "Action": "glue:StartCrawler", "Resource": "*"}, 'glue:StartCrawler on Resource "*"'),
    ({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
     'cloudwatch:PutMetricData on Resource "*"'),
    ({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
      "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}, 'cloudwatch:PutMetricData on Resource "*"'),
    ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:x"}, "NotAction/NotResource"),
])
def test_walker_rejects(statement: dict[str, Any], expected: str) -> None:
    problems = statement_violations(statement)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
     "Condition": {"StringEquals": {"cloudwatch:namespace": "Glue"}}},
    {"Effect": "Allow", "Action": ["glue:GetCrawlers", "cloudwatch:GetMetricData"], "Resource": "*"},
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${Bucket.Arn}/lake/*"}},
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"},
])
def test_walker_accepts(statement: dict[str, Any]) -> None:
    assert statement_violations(statement) == []


def test_walker_rejects_broad_managed_policies() -> None:
    assert managed_policy_violations(["arn:aws:iam::aws:policy/AmazonS3FullAccess"])
    assert managed_policy_violations([{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess"}])
    assert managed_policy_violations(["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]) == []


def test_walker_finds_policies_in_roles_and_policy_resources() -> None:
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AWSGlueConsoleFullAccess"],
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]}},
        "Extra": {"Type": "AWS::IAM::Policy", "Condition": "C", "Properties": {"PolicyDocument": {"Statement": {
            "Effect": "Allow", "Action": "kinesis:PutRecords", "Resource": "*"}}}},
        "BucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {"PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": "*"}]}}},
    }}
    problems = template_violations(template)
    assert any(p.startswith("Role/p[0]: wildcard action") for p in problems)
    assert any(p.startswith("Extra[0]: kinesis:PutRecords") for p in problems)
    assert any(p.startswith("BucketPolicy[0]: s3:PutObject") for p in problems)
    assert any(p.startswith("Role: managed policy") for p in problems)
    assert [f.resource_condition for f in iter_policy_statements(template) if f.where.startswith("Extra")] == ["C"]


# ---------------------------------------------------------------------------------------------- the template

@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE_PATH))


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = _resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def _default(template: dict[str, Any], parameter: str) -> str:
    return str(template["Parameters"][parameter]["Default"])


def render(value: Any, template: dict[str, Any]) -> Any:
    """Return a Ref/Fn::Sub value as text: parameters take their defaults, resources become <LogicalId...>."""
    def name_of(ref: str) -> str:
        if ref in template["Parameters"]:
            return _default(template, ref) if "Default" in template["Parameters"][ref] else f"<{ref}>"
        return f"<{ref}>"

    if isinstance(value, dict) and set(value) == {"Ref"}:
        return name_of(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([^}]+)\}", lambda m: name_of(m.group(1)), value["Fn::Sub"])
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "<" + ".".join(value["Fn::GetAtt"]) + ">"
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        delimiter, items = value["Fn::Join"]
        return delimiter.join(str(render(item, template)) for item in items)
    return value


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def test_cfn_lint_is_clean() -> None:
    matches = lint(TEMPLATE_PATH.read_text(), config=ManualArgs(regions=LINT_REGIONS, include_checks=["I"]))
    findings = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]
    errors = [f for m, f in zip(matches, findings, strict=True) if m.rule.id.startswith("E")]
    others = [f for m, f in zip(matches, findings, strict=True)
              if not m.rule.id.startswith("E") and m.rule.id not in ALLOWED_LINT_FINDINGS]
    assert errors == [], "\n".join(errors)
    assert others == [], "cfn-lint warnings (fix, or allow in ALLOWED_LINT_FINDINGS with a reason):\n" + "\n".join(
        others)


def test_cfn_lint_catches_a_broken_template() -> None:
    broken = TEMPLATE_PATH.read_text().replace("HealthCheckPath: /_stcore/health",
                                               "HealthCheckPath: /_stcore/health\n      NoSuchProperty: 1")
    assert any(m.rule.id.startswith("E") for m in lint(broken, regions=["us-east-1"]))


def test_template_fits_cloudformation_deploy_without_an_s3_bucket() -> None:
    assert len(TEMPLATE_PATH.read_bytes()) < 51_200


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    assert template_violations(template) == []


def test_walker_sees_every_policy_of_the_template(template: dict[str, Any]) -> None:
    owners = {found.where.split("/")[0].split("[")[0] for found in iter_policy_statements(template)}
    assert owners == {"JobRole", "CrawlerRole", "TaskRole", "TaskExecutionRole", "TaskDemoReplayPolicy",
                      "LakeBucketPolicy", "AccessLogBucketPolicy"}


def test_no_account_ids_or_hard_coded_arns(template: dict[str, Any]) -> None:
    text = TEMPLATE_PATH.read_text()
    assert not re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", text), "a 12-digit account id in the template"
    assert "arn:aws" not in text.lower(), "a hard-coded partition: use ${AWS::Partition}"
    for section in ("Resources", "Outputs"):
        for value in _strings(template[section]):
            for match in re.finditer(r"arn:", value):
                assert value[match.start():].startswith("arn:${AWS::Partition}:"), value
    for name, bucket in _resources(template, "AWS::S3::Bucket").items():
        assert "BucketName" not in bucket["Properties"], f"{name}: let CloudFormation name the bucket"


def test_every_scoped_action_supports_resource_level_permissions(template: dict[str, Any]) -> None:
    # A statement naming ARNs never matches an action that only works on "*": the permission would silently fail.
    services = load_resource(AdditionalSpecs, "Policies.json")
    for found in iter_policy_statements(template):
        statement = found.statement
        if statement.get("Effect") != "Allow" or "Principal" in statement:
            continue
        scoped = "*" not in _as_list(statement.get("Resource"))
        for action in _as_list(statement.get("Action")):
            service, _, name = action.partition(":")
            known = services[service]["Actions"]
            assert name.lower() in known, f"{found.where}: unknown action {action}"
            if scoped:
                assert known[name.lower()].get("Resources"), (
                    f"{found.where}: {action} has no resource-level permissions; grant it on \"*\" if read-only")


# ---------------------------------------------------------------------------------------------- stream, lake

def test_stream_is_encrypted_and_mode_is_parameterised(template: dict[str, Any]) -> None:
    stream = _one(template, "AWS::Kinesis::Stream")
    assert stream["Name"] == {"Ref": "StreamName"}
    assert _default(template, "StreamName") == "mobile_coverage_logs"
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert stream["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    assert stream["ShardCount"] == {"Fn::If": ["IsProvisioned", {"Ref": "ShardCount"}, {"Ref": "AWS::NoValue"}]}
    assert template["Conditions"]["IsProvisioned"] == {"Fn::Equals": [{"Ref": "StreamMode"}, "PROVISIONED"]}


def _bucket(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = template["Resources"][logical_id]
    assert resource["Type"] == "AWS::S3::Bucket"
    return dict(resource["Properties"])


def test_the_buckets_are_the_lake_and_the_access_logs(template: dict[str, Any]) -> None:
    assert set(_resources(template, "AWS::S3::Bucket")) == {"LakeBucket", "AccessLogBucket"}


def test_every_bucket_blocks_public_access_and_is_encrypted(template: dict[str, Any]) -> None:
    for name, resource in _resources(template, "AWS::S3::Bucket").items():
        bucket = resource["Properties"]
        assert bucket["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, name
        rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] in (["AES256"], ["aws:kms"]), name
        assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, name


def test_every_bucket_policy_enforces_tls(template: dict[str, Any]) -> None:
    policies = {res["Properties"]["Bucket"]["Ref"]: res["Properties"]
                for res in _resources(template, "AWS::S3::BucketPolicy").values()}
    assert set(policies) == set(_resources(template, "AWS::S3::Bucket")), "every bucket needs its TLS-only policy"
    for bucket, policy in policies.items():
        tls = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
               and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert len(tls) == 1, bucket
        assert tls[0]["Principal"] == "*" and tls[0]["Action"] == "s3:*"
        assert {render(r, template) for r in tls[0]["Resource"]} == {f"<{bucket}.Arn>", f"<{bucket}.Arn>/*"}


def _rule_prefix(rule: dict[str, Any], template: dict[str, Any]) -> str:
    prefix = rule.get("Prefix", rule.get("Filter", {}).get("Prefix", ""))
    return str(render(prefix, template))


def test_lifecycle_expires_athena_results_and_never_live_checkpoints(template: dict[str, Any]) -> None:
    rules = _bucket(template, "LakeBucket")["LifecycleConfiguration"]["Rules"]
    lake = _default(template, "LakePrefix")
    by_prefix = {_rule_prefix(r, template): r for r in rules}
    assert by_prefix["athena-results/"]["ExpirationInDays"] == {"Ref": "AthenaResultsRetentionDays"}
    checkpoint_key = f"{lake}/checkpoints/state/0/0/1.delta"
    covering = [r for p, r in by_prefix.items() if checkpoint_key.startswith(p)]
    assert covering, "no rule cleans up old checkpoint versions"
    for rule in covering:
        assert "ExpirationInDays" not in rule and "ExpirationDate" not in rule, (
            f"rule {rule['Id']} would expire the current checkpoint files a running job resumes from")
    assert by_prefix[f"{lake}/checkpoints/"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "CheckpointNoncurrentVersionDays"}}
    assert _bucket(template, "LakeBucket")["VersioningConfiguration"] == {"Status": "Enabled"}


def test_every_list_bucket_grant_is_limited_to_prefixes(template: dict[str, Any]) -> None:
    for found in iter_policy_statements(template):
        if "s3:ListBucket" in _as_list(found.statement.get("Action")) and found.statement["Effect"] == "Allow":
            assert "s3:prefix" in found.statement["Condition"]["StringLike"], found.where


def test_s3_object_writes_stay_under_known_prefixes(template: dict[str, Any]) -> None:
    writes = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
    allowed = {f"<LakeBucket.Arn>/lake/{prefix}/*" for prefix in ("aggregations", "quarantine", "checkpoints", "_job",
                                                                   "_audit")} | {"<LakeBucket.Arn>/athena-results/*"}
    allowed.add(f"<AccessLogBucket.Arn>/{ACCESS_LOG_PREFIX}/AWSLogs/<AWS::AccountId>/*")  # the ELB's log delivery
    for found in iter_policy_statements(template):
        statement = found.statement
        if statement["Effect"] != "Allow" or not set(_as_list(statement["Action"])) & set(writes):
            continue
        rendered = {render(r, template) for r in _as_list(statement["Resource"])}
        assert rendered <= allowed, f"{found.where}: {rendered}"


# ------------------------------------------------------------------------------------- who may do what in the lake

LAKE = "lake"  # the LakePrefix default, which render() fills in
JOB_STATE_KEYS = (f"{LAKE}/checkpoints/etl_streaming_mobile_logs/offsets/42",
                  f"{LAKE}/checkpoints/etl_streaming_mobile_logs/signal_stream_app.json",
                  f"{LAKE}/_job/status.json", f"{LAKE}/_job/app.json")
AUDIT_KEY = f"{LAKE}/_audit/dt=2024-05-01/2024-05-01T13:00:00.000000Z-0a1b2c.json"
OBJECT_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


def _iam_match(pattern: str, value: str) -> bool:
    """IAM's wildcard match: `*` is any run of characters (slashes too), `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def role_allows(template: dict[str, Any], owner: str, action: str, *, key: str | None = None,
                list_prefix: str | None = None) -> bool:
    """Return whether an Allow statement of `owner`'s policies grants `action` in the lake bucket.

    Object actions are asked on the object `key`; s3:ListBucket on the bucket, listing `list_prefix`, which a
    statement's StringLike s3:prefix condition must match. Parameters take their defaults (LakePrefix `lake`).
    A statement with any other condition cannot be judged here: the test fails rather than guess.
    """
    resource = "<LakeBucket.Arn>" if key is None else f"<LakeBucket.Arn>/{key}"
    for found in iter_policy_statements(template):
        statement = found.statement
        if not found.where.startswith(f"{owner}/") or statement.get("Effect") != "Allow":
            continue
        if not any(_iam_match(a, action) for a in _as_list(statement.get("Action"))):
            continue
        if not any(_iam_match(str(render(r, template)), resource) for r in _as_list(statement.get("Resource"))):
            continue
        condition = statement.get("Condition")
        if condition is None:
            return True
        assert set(condition) == {"StringLike"} and set(condition["StringLike"]) == {"s3:prefix"}, (
            f"{found.where}: role_allows cannot judge the condition {condition}")
        patterns = [str(render(v, template)) for v in _as_list(condition["StringLike"]["s3:prefix"])]
        if list_prefix is not None and any(_iam_match(pattern, list_prefix) for pattern in patterns):
            return True
    return False


def _table_keys(prefix: str) -> list[str]:
    """Objects of a Delta table: log entries, a log checkpoint, the log's pointer, a data file."""
    root = f"{LAKE}/{prefix}"
    return [f"{root}/_delta_log/00000000000000000007.json",
            f"{root}/_delta_log/00000000000000000100.checkpoint.parquet", f"{root}/_delta_log/_last_checkpoint",
            f"{root}/dt=2024-05-01/hr=13/part-00001-0a1b2c.c000.snappy.parquet"]


def _table_listings(prefix: str) -> list[str]:
    root = f"{LAKE}/{prefix}"
    return [f"{root}/_delta_log/", f"{root}/_delta_log/0000000000000000", f"{root}/", f"{root}/dt=2024-05-01/hr=13/"]


def test_role_allows_reads_wildcards_and_prefix_conditions() -> None:
    template = {"Parameters": {"LakePrefix": {"Default": "lake"}}, "Resources": {"R": {
        "Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"],
             "Resource": {"Fn::Sub": "${LakeBucket.Arn}/${LakePrefix}/aggregations/*"}},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": {"Fn::GetAtt": ["LakeBucket", "Arn"]},
             "Condition": {"StringLike": {"s3:prefix": [{"Fn::Sub": "${LakePrefix}/aggregations/*"}]}}},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
        ]}}]}}}}
    assert role_allows(template, "R", "s3:DeleteObject", key="lake/aggregations/t/_delta_log/1.json")
    assert not role_allows(template, "R", "s3:DeleteObject", key="lake/_audit/x.json")
    assert not role_allows(template, "R", "s3:DeleteObject", key="lake/aggregations")
    assert not role_allows(template, "R", "s3:PutObject", key="lake/aggregations/t/x")
    assert not role_allows(template, "Other", "s3:GetObject", key="lake/aggregations/t/x")
    assert role_allows(template, "R", "s3:ListBucket", list_prefix="lake/aggregations/t/_delta_log/")
    assert not role_allows(template, "R", "s3:ListBucket", list_prefix="lake/_audit/")
    assert not role_allows(template, "R", "s3:ListBucket", list_prefix="lake/")
    assert not role_allows(template, "R", "s3:ListBucket")
    conditioned = json.loads(json.dumps(template).replace('"StringLike"', '"StringEquals"'))
    with pytest.raises(AssertionError, match="cannot judge"):
        role_allows(conditioned, "R", "s3:ListBucket", list_prefix="lake/aggregations/t/")


def test_job_role_writes_compacts_and_vacuums_every_table(template: dict[str, Any]) -> None:
    for table in TABLES:
        for key in _table_keys(table.prefix):
            for action in ("s3:GetObject", *OBJECT_WRITES):
                assert role_allows(template, "JobRole", action, key=key), f"JobRole: {action} {key}"
        for prefix in _table_listings(table.prefix):
            assert role_allows(template, "JobRole", "s3:ListBucket", list_prefix=prefix), f"JobRole: list {prefix}"


def test_job_role_keeps_its_checkpoint_and_status(template: dict[str, Any]) -> None:
    for key in JOB_STATE_KEYS:
        for action in ("s3:GetObject", *OBJECT_WRITES):
            assert role_allows(template, "JobRole", action, key=key), f"JobRole: {action} {key}"
    for prefix in (f"{LAKE}/checkpoints/etl_streaming_mobile_logs/", f"{LAKE}/_job/"):
        assert role_allows(template, "JobRole", "s3:ListBucket", list_prefix=prefix)
    assert role_allows(template, "JobRole", "s3:GetObject", key="jobs/wheels/deltalake-1.6.6-py3-none-any.whl")


def test_job_role_cannot_delete_or_write_the_audit_log(template: dict[str, Any]) -> None:
    for action in ("s3:DeleteObject", "s3:PutObject", "s3:GetObject"):
        assert not role_allows(template, "JobRole", action, key=AUDIT_KEY), f"JobRole: {action} on _audit/"
    assert not role_allows(template, "JobRole", "s3:ListBucket", list_prefix=f"{LAKE}/_audit/")
    for key in (f"{LAKE}/somewhere_else/x.parquet", f"{LAKE}/_auditx/y", "jobs/job.py", "athena-results/q.csv"):
        assert not role_allows(template, "JobRole", "s3:DeleteObject", key=key), key


def test_console_reads_the_tables_delta_logs_and_data(template: dict[str, Any]) -> None:
    for table in TABLES:
        for key in _table_keys(table.prefix):
            assert role_allows(template, "TaskRole", "s3:GetObject", key=key), f"TaskRole: read {key}"
            for action in OBJECT_WRITES:
                assert not role_allows(template, "TaskRole", action, key=key), f"TaskRole: {action} {key}"
        for prefix in _table_listings(table.prefix):
            assert role_allows(template, "TaskRole", "s3:ListBucket", list_prefix=prefix), f"TaskRole: list {prefix}"
    assert role_allows(template, "TaskRole", "s3:GetObject", key=f"{LAKE}/_job/status.json")
    assert role_allows(template, "TaskRole", "s3:PutObject", key=AUDIT_KEY)
    assert not role_allows(template, "TaskRole", "s3:DeleteObject", key=AUDIT_KEY)


def test_crawlers_only_read_the_tables(template: dict[str, Any]) -> None:
    for table in TABLES:
        for key in _table_keys(table.prefix):
            assert role_allows(template, "CrawlerRole", "s3:GetObject", key=key), f"CrawlerRole: read {key}"
        for prefix in _table_listings(table.prefix):
            assert role_allows(template, "CrawlerRole", "s3:ListBucket", list_prefix=prefix)
    s3_actions = {action for found in iter_policy_statements(template) if found.where.startswith("CrawlerRole/")
                  for action in _as_list(found.statement["Action"]) if action.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    for key in (AUDIT_KEY, *JOB_STATE_KEYS):
        assert not role_allows(template, "CrawlerRole", "s3:GetObject", key=key), key


# ---------------------------------------------------------------------------------------------- job, catalog, sql

def test_streaming_job(template: dict[str, Any]) -> None:
    job = _one(template, "AWS::Glue::Job")
    assert job["Name"] == {"Ref": "JobName"} and _default(template, "JobName") == "etl_streaming_mobile_logs"
    assert job["Command"]["Name"] == "gluestreaming"
    assert render(job["Command"]["ScriptLocation"], template) == "s3://<LakeBucket>/jobs/job.py"
    assert render(job["GlueVersion"], template) == "5.0"
    assert render(job["WorkerType"], template) == "G.1X"
    assert render(job["NumberOfWorkers"], template) == "2"
    assert "Timeout" not in job, "a streaming job runs until stopped"
    assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    args = {key: render(value, template) for key, value in job["DefaultArguments"].items()}
    assert args["--extra-py-files"] == "s3://<LakeBucket>/jobs/signal_stream_job.zip"
    assert args["--stream_arn"] == "<Stream.Arn>"
    assert args["--lake_uri"] == "s3://<LakeBucket>/lake"
    assert args["--database"] == "<GlueDatabase>"
    assert (args["--trigger_seconds"], args["--watermark_minutes"]) == ("20", "10")
    assert args["--job-language"] == "python"
    assert args["--enable-metrics"] == args["--enable-continuous-cloudwatch-log"] == "true"
    assert "--reset_checkpoint" not in args, "a checkpoint reset is for one run, passed by an operator"
    assert args["--python-modules-installer-option"] == "--no-index", "pip must not reach for an index"


def _job_wheels(template: dict[str, Any]) -> list[str]:
    job = _one(template, "AWS::Glue::Job")
    modules = render(job["DefaultArguments"]["--additional-python-modules"], template).split(",")
    prefix = "s3://<LakeBucket>/jobs/wheels/"
    assert all(module.startswith(prefix) for module in modules), modules
    return [module.removeprefix(prefix) for module in modules]


def test_job_installs_deltalake_and_its_dependencies_as_the_lock_pins_them(template: dict[str, Any]) -> None:
    wheels = _job_wheels(template)
    requirements = package.job_requirements((ROOT / package.LOCK).read_text(encoding="utf-8"))
    assert {"deltalake", "arro3-core", "deprecated", "wrapt"} <= {r.name for r in requirements}
    assert package.wheel_problems(wheels, requirements) == [], (
        "the job's --additional-python-modules and requirements.lock disagree: run `make package-job` for the list")
    # deploy.sh and package.py find the same list in the template's text.
    assert sorted(package.template_wheels(TEMPLATE_PATH.read_text())) == sorted(wheels)


def test_job_wheels_check_fails_when_the_lock_moves(template: dict[str, Any]) -> None:
    wheels = _job_wheels(template)
    lock = (ROOT / package.LOCK).read_text(encoding="utf-8")
    deltalake = next(r for r in package.job_requirements(lock) if r.name == "deltalake")
    bumped = lock.replace(f"deltalake=={deltalake.version} ", "deltalake==99.0.0 ")
    assert bumped != lock
    problems = package.wheel_problems(wheels, package.job_requirements(bumped))
    assert any("deltalake" in p and "99.0.0" in p for p in problems), problems
    grown = lock + "newdep==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via deltalake\n"
    assert "no wheel of newdep==1.0" in package.wheel_problems(wheels, package.job_requirements(grown))


def test_job_logs_go_to_log_groups_the_stack_owns(template: dict[str, Any]) -> None:
    job = _one(template, "AWS::Glue::Job")
    prefix = render(job["DefaultArguments"]["--custom-logGroup-prefix"], template)
    groups = {name: render(res["Properties"]["LogGroupName"], template)
              for name, res in _resources(template, "AWS::Logs::LogGroup").items()}
    assert groups["JobErrorLogGroup"] == f"{prefix}/error"
    assert groups["JobOutputLogGroup"] == f"{prefix}/output"
    for res in _resources(template, "AWS::Logs::LogGroup").values():
        assert res["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


CRAWLER_LOG_GROUP = "/aws-glue/crawlers"  # every Glue crawler of the account and region logs here


def log_groups_without_retention(template: dict[str, Any]) -> list[str]:
    """Return the AWS::Logs::LogGroup resources, anywhere in the template, that keep their logs forever."""
    return sorted(name for name, res in _resources(template, "AWS::Logs::LogGroup").items()
                  if res.get("Properties", {}).get("RetentionInDays") in (None, ""))


def test_every_log_group_has_a_retention(template: dict[str, Any]) -> None:
    assert _resources(template, "AWS::Logs::LogGroup")
    assert log_groups_without_retention(template) == []


def test_retention_walker_finds_a_log_group_that_keeps_logs_forever(template: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(template))
    broken["Resources"]["Extra"] = {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/x"}}
    del broken["Resources"]["ServiceLogGroup"]["Properties"]["RetentionInDays"]
    assert log_groups_without_retention(broken) == ["Extra", "ServiceLogGroup"]


def _log_group_name(arn: Any, template: dict[str, Any]) -> str:
    """Return the log group an IAM resource names: `<LogicalId>` for one of the template's, else its name."""
    if isinstance(arn, dict) and set(arn) == {"Fn::GetAtt"}:
        return f"<{arn['Fn::GetAtt'][0]}>"
    text = str(render(arn, template))
    name = text.split(":log-group:", 1)[1]
    return name.removesuffix(":*")


def test_every_log_group_the_stack_writes_has_a_retention(template: dict[str, Any]) -> None:
    # Log groups the stack's roles write to: its own (with a retention, above) and, for the crawlers, the account's
    # shared /aws-glue/crawlers, which the stack cannot own; deploy.sh gives that one a retention.
    written: set[str] = set()
    for found in iter_policy_statements(template):
        if found.statement["Effect"] == "Allow" and "logs:PutLogEvents" in _as_list(found.statement["Action"]):
            written |= {_log_group_name(r, template) for r in _as_list(found.statement["Resource"])}
    console = _container(template)["LogConfiguration"]["Options"]["awslogs-group"]
    written.add(f"<{console['Ref']}>")
    owned = {f"<{name}>" for name in _resources(template, "AWS::Logs::LogGroup")}
    assert written - owned == {CRAWLER_LOG_GROUP}, "a log group outside the stack: who sets its retention?"
    text = DEPLOY_SH.read_text()
    assert f'CRAWLER_LOG_GROUP="{CRAWLER_LOG_GROUP}"' in text
    assert 'put-retention-policy --region "$REGION" --log-group-name "$CRAWLER_LOG_GROUP"' in text


def test_job_role_reads_only_its_stream(template: dict[str, Any]) -> None:
    statements = [f.statement for f in iter_policy_statements(template) if f.where.startswith("JobRole/")]
    kinesis = [s for s in statements if any(a.startswith("kinesis:") for a in _as_list(s["Action"]))]
    reads = {"kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream", "kinesis:ListShards"}
    assert reads <= {a for s in kinesis for a in s["Action"]}
    for statement in kinesis:
        assert {str(render(r, template)) for r in _as_list(statement["Resource"])} <= {
            "<Stream.Arn>", "<Stream.Arn>/consumer/*"}
        assert not any(a.startswith("kinesis:Put") for a in _as_list(statement["Action"]))


def test_one_native_delta_crawler_per_lake_table(template: dict[str, Any]) -> None:
    crawlers = {res["Properties"]["Name"]: res["Properties"]
                for res in _resources(template, "AWS::Glue::Crawler").values()}
    assert set(crawlers) == {table.crawler for table in TABLES}
    for table in TABLES:
        crawler = crawlers[table.crawler]
        assert set(crawler["Targets"]) == {"DeltaTargets"}, f"{table.crawler}: a Delta table has a Delta target only"
        (target,) = crawler["Targets"]["DeltaTargets"]
        assert [render(path, template) for path in target["DeltaTables"]] == [f"s3://<LakeBucket>/lake/{table.prefix}/"]
        assert target["CreateNativeDeltaTable"] is True, "Athena reads native Delta tables through their log"
        assert target["WriteManifest"] is False, "no symlink manifests: the crawlers only read the lake"
        assert "ConnectionName" not in target
        assert crawler["DatabaseName"] == {"Ref": "GlueDatabase"}
        assert crawler["SchemaChangePolicy"]["DeleteBehavior"] in ("LOG", "DEPRECATE_IN_DATABASE")
        assert crawler["Role"] == {"Fn::GetAtt": ["CrawlerRole", "Arn"]}


def test_console_can_run_every_crawler(template: dict[str, Any]) -> None:
    statements = [f.statement for f in iter_policy_statements(template) if f.where.startswith("TaskRole/")]
    (runs,) = [s for s in statements if "glue:StartCrawler" in _as_list(s["Action"])]
    named = {render(r, template).rsplit("/", 1)[1] for r in _as_list(runs["Resource"])}
    assert named == {f"<{logical_id}>" for logical_id in _resources(template, "AWS::Glue::Crawler")}


def test_database(template: dict[str, Any]) -> None:
    database = _one(template, "AWS::Glue::Database")
    assert render(database["DatabaseInput"]["Name"], template) == "mobile_network_aggregations"


def test_athena_workgroup(template: dict[str, Any]) -> None:
    workgroup = _one(template, "AWS::Athena::WorkGroup")
    assert render(workgroup["Name"], template) == "signal_stream"
    config = workgroup["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "BytesScannedCutoffPerQuery"}
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}, (
        "native Delta tables need Athena engine version 3")
    result = config["ResultConfiguration"]
    assert render(result["OutputLocation"], template) == "s3://<LakeBucket>/athena-results/"
    assert result["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS")


def test_console_queries_only_through_its_workgroup(template: dict[str, Any]) -> None:
    for found in iter_policy_statements(template):
        actions = _as_list(found.statement.get("Action"))
        if any(a.startswith("athena:") for a in actions):
            assert found.where.startswith("TaskRole/")
            assert [render(r, template) for r in _as_list(found.statement["Resource"])] == [
                "arn:<AWS::Partition>:athena:<AWS::Region>:<AWS::AccountId>:workgroup/<AthenaWorkGroup>"]


# ---------------------------------------------------------------------------------------------- console

def _container(template: dict[str, Any]) -> dict[str, Any]:
    containers = _one(template, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    assert len(containers) == 1
    return containers[0]


def test_task_definition_runs_on_arm64_fargate(template: dict[str, Any]) -> None:
    task = _one(template, "AWS::ECS::TaskDefinition")
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["Cpu"] == {"Ref": "TaskCpu"} and task["Memory"] == {"Ref": "TaskMemory"}
    container = _container(template)
    assert container["PortMappings"] == [{"ContainerPort": 8501, "Protocol": "tcp"}]
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs" and logs["Options"]["awslogs-group"] == {"Ref": "ServiceLogGroup"}
    assert "ImageTag" in json.dumps(container["Image"])


# What `Ref LoadBalancer` resolves to at deploy time (an ALB's ARN), for checking the settings the task gets.
SAMPLE_ALB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/signal-stream/0123456789abcdef"


def _dockerfile_writable_paths() -> tuple[set[str], dict[str, str]]:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert final_stage(instructions)
    return volume_paths(instructions), image_env(instructions)


def test_console_runs_on_a_read_only_root_with_scratch_volumes(template: dict[str, Any]) -> None:
    task = _one(template, "AWS::ECS::TaskDefinition")
    container = _container(template)
    assert container["ReadonlyRootFilesystem"] is True, "the console's code and packages must not change at run time"
    volumes = {volume["Name"]: volume for volume in task["Volumes"]}
    mounts = {mount["ContainerPath"]: mount for mount in container["MountPoints"]}
    for path, mount in mounts.items():
        volume = volumes[mount["SourceVolume"]]
        # Ephemeral task storage: a Fargate bind mount with no host path and no EFS/Docker volume behind it.
        assert set(volume) == {"Name"}, f"{path}: {volume} is not task-local scratch storage"
        assert mount.get("ReadOnly") is False, f"{path} must be writable"
    assert len({m["SourceVolume"] for m in mounts.values()}) == len(mounts), "one volume per path"
    # Exactly where the image writes: its data folder, /tmp and the app user's home, each a VOLUME in the image
    # (so Fargate copies the image's owner and content into the volume).
    paths, env = _dockerfile_writable_paths()
    assert set(mounts) == paths
    assert {env["SIGNAL_HOME"], "/tmp", env["HOME"]} <= set(mounts)
    task_env = {item["Name"] for item in container["Environment"]}
    assert not {"SIGNAL_HOME", "HOME"} & task_env, "the mounts follow the image's paths: do not move them here"


def test_read_only_check_fails_without_the_volumes(template: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(template))
    container = broken["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    container["MountPoints"] = [m for m in container["MountPoints"] if m["ContainerPath"] != "/tmp"]
    with pytest.raises(AssertionError):
        test_console_runs_on_a_read_only_root_with_scratch_volumes(broken)
    container["ReadonlyRootFilesystem"] = False
    with pytest.raises(AssertionError, match="must not change"):
        test_console_runs_on_a_read_only_root_with_scratch_volumes(broken)


def test_console_environment_is_valid_settings(template: dict[str, Any]) -> None:
    raw = {item["Name"]: item["Value"] for item in _container(template)["Environment"]}
    assert raw["SIGNAL_ALB_ARN"] == {"Ref": "LoadBalancer"}, "the console trusts only its own load balancer's header"
    assert raw["SIGNAL_OIDC_ISSUER"] == {"Ref": "OidcIssuer"}
    env = {name: SAMPLE_ALB_ARN if value == {"Ref": "LoadBalancer"} else render(value, template)
           for name, value in raw.items()}
    known = {spec.env for spec in SETTINGS}
    unknown = {name for name in env if name.startswith("SIGNAL_")} - known
    assert unknown == set(), "Settings.from_env rejects unknown SIGNAL_* names"
    assert {"SIGNAL_BACKEND", "SIGNAL_AUTH", "SIGNAL_LAKE_BUCKET", "SIGNAL_LAKE_PREFIX", "SIGNAL_ATHENA_WORKGROUP",
            "SIGNAL_STREAM_NAME", "SIGNAL_DATABASE", "SIGNAL_JOB_NAME", "SIGNAL_DEMO_MODE",
            "SIGNAL_OPERATORS"} <= set(env)
    assert (env["SIGNAL_BACKEND"], env["SIGNAL_AUTH"], env["SIGNAL_DEMO_MODE"]) == ("aws", "alb", "false")
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("SIGNAL_")})
    assert settings.backend == "aws" and settings.auth == "alb" and settings.demo_mode is False
    # The container's environment is the image's, then the task's on top: still valid, still viewer by default.
    _, image = _dockerfile_writable_paths()
    combined = {k: v for k, v in {**image, **env}.items() if k.startswith("SIGNAL_")}
    settings = Settings.from_env(combined)
    assert settings.role == "viewer" and str(settings.home) == image["SIGNAL_HOME"]


def test_demo_mode_put_records_is_conditional(template: dict[str, Any]) -> None:
    writes = {"kinesis:PutRecords", "kinesis:PutRecord"}
    found = [f for f in iter_policy_statements(template) if writes & set(_as_list(f.statement.get("Action")))]
    assert found, "demo mode needs kinesis:PutRecords somewhere"
    for item in found:
        assert item.resource_condition == "DemoModeEnabled", f"{item.where} grants stream writes unconditionally"
        assert item.statement["Resource"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert template["Conditions"]["DemoModeEnabled"] == {"Fn::Equals": [{"Ref": "DemoMode"}, "true"]}
    assert _default(template, "DemoMode") == "false"
    env = {item["Name"]: item["Value"] for item in _container(template)["Environment"]}
    assert env["SIGNAL_DEMO_MODE"] == {"Ref": "DemoMode"}


def _ingress_rules(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rules = [(name, res["Properties"])
             for name, res in _resources(template, "AWS::EC2::SecurityGroupIngress").items()]
    for name, res in _resources(template, "AWS::EC2::SecurityGroup").items():
        inline = res["Properties"].get("SecurityGroupIngress", [])
        rules += [(name, {**rule, "GroupId": {"Fn::GetAtt": [name, "GroupId"]}}) for rule in inline]
    return rules


def test_tasks_accept_8501_from_the_load_balancer_only(template: dict[str, Any]) -> None:
    to_8501 = [(name, rule) for name, rule in _ingress_rules(template)
               if int(rule["FromPort"]) <= 8501 <= int(rule["ToPort"])]
    assert len(to_8501) == 1, to_8501
    _, rule = to_8501[0]
    assert rule["GroupId"] == {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}
    assert rule.get("SourceSecurityGroupId") == {"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}, rule
    assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)
    service = _one(template, "AWS::ECS::Service")["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert service["SecurityGroups"] == [{"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}]
    assert service["AssignPublicIp"] == "DISABLED" and service["Subnets"] == {"Ref": "PrivateSubnetIds"}


def test_load_balancer_takes_https_from_the_allowed_cidr_only(template: dict[str, Any]) -> None:
    alb_rules = [rule for name, rule in _ingress_rules(template) if name == "AlbSecurityGroup"]
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in alb_rules] == [(443, 443, {"Ref": "AllowedCidr"})]
    alb = _one(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Subnets"] == {"Ref": "PublicSubnetIds"}


def test_listener_signs_in_with_oidc_then_forwards(template: dict[str, Any]) -> None:
    listener = _one(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    actions = sorted(listener["DefaultActions"], key=lambda a: a["Order"])
    assert [a["Type"] for a in actions] == ["authenticate-oidc", "forward"]
    oidc = actions[0]["AuthenticateOidcConfig"]
    assert "{{resolve:secretsmanager:" in oidc["ClientSecret"]["Fn::Sub"], "the client secret stays in Secrets Manager"
    assert oidc["OnUnauthenticatedRequest"] == "authenticate"
    assert actions[1]["TargetGroupArn"] == {"Ref": "TargetGroup"}
    group = _one(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (group["HealthCheckPath"], group["Port"], group["TargetType"]) == ("/_stcore/health", 8501, "ip")


def test_load_balancer_writes_access_logs_to_its_bucket(template: dict[str, Any]) -> None:
    resource = _resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["LoadBalancer"]
    attributes = {a["Key"]: a["Value"] for a in resource["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": "AccessLogBucket"}
    assert attributes["access_logs.s3.prefix"] == ACCESS_LOG_PREFIX
    # The ALB checks it may write (a test object) when logging is switched on: the policy must exist first.
    assert "AccessLogBucketPolicy" in _as_list(resource.get("DependsOn"))


def test_access_log_bucket_is_sse_s3_and_expires_its_logs(template: dict[str, Any]) -> None:
    bucket = _bucket(template, "AccessLogBucket")
    rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"], (
        "ALB access logs support SSE-S3 only")
    (expire,) = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expire["Status"] == "Enabled" and _rule_prefix(expire, template) == "", "every log expires"
    assert expire["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}
    assert _default(template, "AccessLogRetentionDays") == "90"
    assert template["Resources"]["AccessLogBucket"]["DeletionPolicy"] == "Retain"


def test_only_the_load_balancer_log_delivery_may_write_the_access_log_bucket(template: dict[str, Any]) -> None:
    policy = template["Resources"]["AccessLogBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "AccessLogBucket"}
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (grant,) = allows
    assert grant["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert _as_list(grant["Action"]) == ["s3:PutObject"]
    assert [render(r, template) for r in _as_list(grant["Resource"])] == [
        f"<AccessLogBucket.Arn>/{ACCESS_LOG_PREFIX}/AWSLogs/<AWS::AccountId>/*"]
    for found in iter_policy_statements(template):  # and no role of the stack writes or deletes there
        if found.where.startswith("AccessLogBucketPolicy") or found.statement["Effect"] != "Allow":
            continue
        resources = [str(render(r, template)) for r in _as_list(found.statement.get("Resource"))]
        assert not any("AccessLogBucket" in r for r in resources), found.where


def test_repository_scans_and_keeps_tags_immutable(template: dict[str, Any]) -> None:
    repo = _one(template, "AWS::ECR::Repository")
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    policy = json.loads(render(repo["LifecyclePolicy"]["LifecyclePolicyText"], template))
    assert {r["selection"]["tagStatus"] for r in policy["rules"]} == {"untagged", "any"}


def test_execution_role_pulls_from_the_stack_repository_only(template: dict[str, Any]) -> None:
    statements = [f.statement for f in iter_policy_statements(template) if f.where.startswith("TaskExecutionRole/")]
    pulls = [s for s in statements if "ecr:BatchGetImage" in _as_list(s["Action"])]
    assert [s["Resource"] for s in pulls] == [{"Fn::GetAtt": ["ConsoleRepository", "Arn"]}]


def test_outputs(template: dict[str, Any]) -> None:
    assert {"LakeBucketName", "StreamName", "LoadBalancerDnsName", "EcrRepositoryUri", "AthenaWorkGroup",
            "JobName", "DatabaseName"} <= set(template["Outputs"])


# ---------------------------------------------------------------------------------------------- deploy.sh, README

def _deploy_mapping() -> dict[str, str]:
    return dict(re.findall(r'^\s+"([A-Z0-9_]+):([A-Za-z0-9]+)"$', DEPLOY_SH.read_text(), re.MULTILINE))


def _required_on_create() -> set[str]:
    block = re.search(r"REQUIRED_ON_CREATE=\(([^)]*)\)", DEPLOY_SH.read_text())
    assert block
    return set(block.group(1).split())


def test_deploy_script_covers_every_parameter(template: dict[str, Any]) -> None:
    mapping = _deploy_mapping()
    assert set(mapping.values()) == set(template["Parameters"])
    no_default = {name for name, spec in template["Parameters"].items() if "Default" not in spec}
    assert {mapping_env for mapping_env, param in mapping.items() if param in no_default} == _required_on_create()


def test_readme_documents_every_parameter(template: dict[str, Any]) -> None:
    readme = INFRA_README.read_text()
    for parameter in template["Parameters"]:
        assert f"`{parameter}`" in readme, f"infra/README.md does not document {parameter}"


def test_deploy_script_is_strict_bash_without_credentials() -> None:
    text = DEPLOY_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert os.access(DEPLOY_SH, os.X_OK)
    subprocess.run(["bash", "-n", str(DEPLOY_SH)], check=True)
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "aws_secret_access_key", "AKIA"):
        assert secret not in text


STUB_AWS = r"""#!/usr/bin/env bash
{ printf '%s\x1f' "$@"; printf '\n'; } >> "$STUB_LOG"
case "$1 $2" in
  "sts get-caller-identity") echo 000000000000 ;;
  "configure get") exit 1 ;;
  "cloudformation describe-stacks")
    if [[ "$*" == *StackStatus* ]]; then
      [[ -n "${STUB_STACK_STATUS:-}" ]] || { echo "Stack with id x does not exist" >&2; exit 254; }
      echo "$STUB_STACK_STATUS"
    else
      key="$(printf '%s' "$*" | sed -n "s/.*OutputKey=='\([A-Za-z]*\)'.*/\1/p")"
      if [[ "$key" == LogRetentionDays ]]; then echo "${STUB_LOG_RETENTION_DAYS:-30}"; else echo "stub-$key"; fi
    fi ;;
  "cloudformation deploy"|"s3 cp") ;;
  "logs describe-log-groups")
    [[ -z "${STUB_LOGS_DENIED:-}" ]] || { echo "AccessDeniedException" >&2; exit 254; }
    printf '%s\n' "${STUB_CRAWLER_GROUP:-None}" ;;
  "logs create-log-group"|"logs put-retention-policy") ;;
  *) echo "unexpected aws call: $*" >&2; exit 99 ;;
esac
"""
# package-job: the zip, the script, and the wheels named in $STUB_WHEELS (the template's, unless a test says otherwise).
STUB_MAKE = r"""#!/usr/bin/env bash
{ printf '%s\x1f' make "$@"; printf '\n'; } >> "$STUB_LOG"
if [[ "$1" == package-job ]]; then
  mkdir -p dist/wheels && echo zip > dist/signal_stream_job.zip && echo py > dist/job.py
  for wheel in $STUB_WHEELS; do echo whl > "dist/wheels/$wheel"; done
fi
"""
TEMPLATE_WHEELS = package.template_wheels(TEMPLATE_PATH.read_text())
FIRST_DEPLOY = {
    "VPC_ID": "vpc-1", "PUBLIC_SUBNET_IDS": "subnet-a,subnet-b", "PRIVATE_SUBNET_IDS": "subnet-c,subnet-d",
    "CERTIFICATE_ARN": "cert", "OIDC_ISSUER": "https://idp", "OIDC_AUTHORIZATION_ENDPOINT": "https://idp/auth",
    "OIDC_TOKEN_ENDPOINT": "https://idp/token", "OIDC_USER_INFO_ENDPOINT": "https://idp/userinfo",
    "OIDC_CLIENT_ID": "client", "OIDC_CLIENT_SECRET_ARN": "secret",
}


@dataclass
class DeployRun:
    """One run of deploy.sh against the stubs: its result and the commands it called."""

    result: subprocess.CompletedProcess[str]
    calls: list[list[str]]

    def called(self, *prefix: str) -> list[list[str]]:
        return [call for call in self.calls if call[:len(prefix)] == list(prefix)]


@pytest.fixture
def run_deploy(tmp_path: Path) -> Callable[..., DeployRun]:
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    for source in (DEPLOY_SH, TEMPLATE_PATH):
        target = repo / "infra" / source.name
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in (("aws", STUB_AWS), ("make", STUB_MAKE)):
        (stubs / name).write_text(body)
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"

    def run(env: dict[str, str], region: str | None = "eu-west-1") -> DeployRun:
        log.write_text("")
        full_env = {"PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "STUB_LOG": str(log),
                    "STUB_WHEELS": " ".join(TEMPLATE_WHEELS), **({"AWS_REGION": region} if region else {}), **env}
        result = subprocess.run([str(repo / "infra" / "deploy.sh")], env=full_env, capture_output=True, text=True,
                                timeout=60, check=False)
        calls = [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]
        return DeployRun(result, calls)

    return run


def test_deploy_lists_every_missing_variable_before_doing_anything(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({"VPC_ID": "vpc-1"})
    assert run.result.returncode == 2
    for name in set(FIRST_DEPLOY) - {"VPC_ID"}:
        assert name in run.result.stderr
    assert "VPC_ID" not in run.result.stderr.split("variables:")[1]
    assert run.called("make") == [] and run.called("cloudformation", "deploy") == []


def test_deploy_needs_a_region(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy(FIRST_DEPLOY, region=None)
    assert run.result.returncode == 2 and "AWS_REGION" in run.result.stderr


def test_first_deploy_builds_deploys_uploads_and_prints_next_steps(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({**FIRST_DEPLOY, "OPERATORS": "a@example.com,b@example.com", "OIDC_SCOPE": "openid email groups"})
    assert run.result.returncode == 0, run.result.stderr
    order = [call[:2] for call in run.calls if call[:2] in (["make", "package-job"], ["cloudformation", "deploy"],
                                                             ["s3", "cp"])]
    uploads_expected = [["s3", "cp"]] * (2 + len(TEMPLATE_WHEELS))
    assert order == [["make", "package-job"], ["cloudformation", "deploy"], *uploads_expected]
    (deploy,) = run.called("cloudformation", "deploy")
    assert deploy[deploy.index("--template-file") + 1] == "infra/template.yaml"
    assert deploy[deploy.index("--capabilities") + 1] == "CAPABILITY_NAMED_IAM"
    overrides = set(deploy[deploy.index("--parameter-overrides") + 1:])
    assert {"VpcId=vpc-1", "PublicSubnetIds=subnet-a,subnet-b", "OidcClientSecretArn=secret",
            "Operators=a@example.com,b@example.com", "OidcScope=openid email groups"} <= overrides
    assert not any(o.startswith("ImageTag=") for o in overrides), "an unset IMAGE_TAG keeps the template default"
    uploads = {(call[2], call[3]) for call in run.called("s3", "cp")}
    assert uploads == {("dist/signal_stream_job.zip", "s3://stub-LakeBucketName/jobs/signal_stream_job.zip"),
                       ("dist/job.py", "s3://stub-LakeBucketName/jobs/job.py"),
                       *((f"dist/wheels/{w}", f"s3://stub-LakeBucketName/jobs/wheels/{w}") for w in TEMPLATE_WHEELS)}
    assert "docker buildx build --platform linux/arm64 -t stub-EcrRepositoryUri:" in run.result.stdout
    assert "aws glue start-job-run --job-name stub-JobName" in run.result.stdout


def test_update_keeps_unset_parameters_and_sets_the_image(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({"STUB_STACK_STATUS": "CREATE_COMPLETE", "IMAGE_TAG": "abc123"})
    assert run.result.returncode == 0, run.result.stderr
    (deploy,) = run.called("cloudformation", "deploy")
    assert deploy[deploy.index("--parameter-overrides") + 1:] == ["ImageTag=abc123"]


def test_deploy_refuses_a_stack_that_failed_to_create(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({**FIRST_DEPLOY, "STUB_STACK_STATUS": "ROLLBACK_COMPLETE"})
    assert run.result.returncode == 2 and "delete-stack" in run.result.stderr
    assert run.called("cloudformation", "deploy") == []


def _crawler_log_calls(run: DeployRun) -> list[list[str]]:
    return [call[1:2] + call[call.index("--log-group-name"):] for call in run.called("logs")
            if call[1] != "describe-log-groups"]


def test_deploy_gives_a_new_crawler_log_group_a_retention(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy(FIRST_DEPLOY)  # the group does not exist yet: no crawler of this account ran in the region
    assert run.result.returncode == 0, run.result.stderr
    assert _crawler_log_calls(run) == [
        ["create-log-group", "--log-group-name", CRAWLER_LOG_GROUP],
        ["put-retention-policy", "--log-group-name", CRAWLER_LOG_GROUP, "--retention-in-days", "30"]]
    assert "now expire after 30 days" in run.result.stdout


def test_deploy_sets_the_retention_of_a_crawler_log_group_that_keeps_logs_forever(
        run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({"STUB_STACK_STATUS": "UPDATE_COMPLETE", "STUB_LOG_RETENTION_DAYS": "90",
                      "STUB_CRAWLER_GROUP": f"{CRAWLER_LOG_GROUP}\tNone"})  # the stack's LogRetentionDays: 90
    assert run.result.returncode == 0, run.result.stderr
    assert _crawler_log_calls(run) == [
        ["put-retention-policy", "--log-group-name", CRAWLER_LOG_GROUP, "--retention-in-days", "90"]]


def test_deploy_keeps_a_retention_someone_chose_for_the_crawler_logs(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({"STUB_STACK_STATUS": "UPDATE_COMPLETE", "STUB_CRAWLER_GROUP": f"{CRAWLER_LOG_GROUP}\t365"})
    assert run.result.returncode == 0, run.result.stderr
    assert _crawler_log_calls(run) == []
    assert "keep their retention of 365 days" in run.result.stdout


def test_deploy_warns_when_it_cannot_set_the_crawler_log_retention(run_deploy: Callable[..., DeployRun]) -> None:
    run = run_deploy({**FIRST_DEPLOY, "STUB_LOGS_DENIED": "1"})
    assert run.result.returncode == 0, "the stack is deployed; the retention is a follow-up step"
    assert f"aws logs put-retention-policy --log-group-name {CRAWLER_LOG_GROUP}" in run.result.stderr
    assert _crawler_log_calls(run) == []


@pytest.mark.parametrize("wheels", [
    pytest.param([], id="none"),
    pytest.param(TEMPLATE_WHEELS[1:], id="one-missing"),
    pytest.param([*TEMPLATE_WHEELS, "extra-1.0-py3-none-any.whl"], id="one-extra"),
    pytest.param([w.replace("deltalake-", "deltalake-0.") for w in TEMPLATE_WHEELS], id="other-version"),
])
def test_deploy_refuses_wheels_the_template_does_not_install(run_deploy: Callable[..., DeployRun],
                                                               wheels: list[str]) -> None:
    run = run_deploy({**FIRST_DEPLOY, "STUB_WHEELS": " ".join(wheels)})
    assert run.result.returncode == 2, run.result.stderr
    assert "are not the ones infra/template.yaml has the job install" in run.result.stderr
    assert "make package-job" in run.result.stderr
    assert run.called("cloudformation", "deploy") == [] and run.called("s3", "cp") == []
