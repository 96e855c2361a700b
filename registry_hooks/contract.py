"""The names the client side writes and the server side reads, spelled once.

An evaluation, a drift check or a pipeline step (``projects/``, or anyone's evaluator through
``registry_hooks.evidence.log_evidence``) leaves tags, artifacts and dataset-input tags on MLflow
runs; the gate (``plugins/``, ``registry_hooks``) finds runs by those tags and judges what those
artifacts hold. A name spelled twice can drift apart silently — the writer tags ``gatekeeper.drift``
and the reader searches ``gatekeeper.drifts``, and every promotion is refused for "no drift report"
— so both sides import the names from here, and ``docs/evidence-format.md`` documents exactly
these (``tests/unit/test_contract.py`` holds the two together).

Plain constants and one rule on URIs, nothing imported: ``plugins.run_context`` is loaded while
MLflow itself is still importing, and the server imports this on start-up.
"""

from __future__ import annotations

# -- the namespace ---------------------------------------------------------------------------------
TAG_PREFIX = "gatekeeper."  # reserved on model versions: only the gate writes these
ARTIFACT_DIR = "gatekeeper"  # a run's gate-facing artifacts
STORE_URI_PREFIX = "gatekeeper:"  # gatekeeper:<database uri>, the gated registry store
API_PREFIX = "/gatekeeper/api"  # the gate's own routes on a gated server
POLICY_ENV = "GATEKEEPER_POLICY"  # the policy file the gate (and a local preview) judges with

# -- evidence: an evaluation run (docs/evidence-format.md) ----------------------------------------
EVIDENCE_FORMAT = "gatekeeper.evidence/1"
EVIDENCE_MANIFEST_PATH = f"{ARTIFACT_DIR}/evidence.json"
EVIDENCE_OUTCOMES_PATH = f"{ARTIFACT_DIR}/outcomes.arrow"
TAG_EVIDENCE = "gatekeeper.evidence"  # "1" on an evidence run
TAG_CANDIDATE_NAME = "gatekeeper.candidate.name"  # also on drift runs
TAG_CANDIDATE_VERSION = "gatekeeper.candidate.version"  # also on drift and retrain runs
TAG_BASELINE_VERSION = "gatekeeper.baseline.version"
NO_BASELINE = "none"  # TAG_BASELINE_VERSION of first-release evidence
TAG_DATA_HASH = "gatekeeper.data.hash"
TAG_DATA_NAME = "gatekeeper.data.name"
TAG_DATA_SOURCE = "gatekeeper.data.source"  # where evaluate read the data (for people)
TAG_DATA_REFERENCE = "gatekeeper.data.reference"  # the data argument as given (for people)
EVIDENCE_MAX_ROWS_ENV = "GATEKEEPER_EVIDENCE_MAX_ROWS"  # rows of one evidence file a server worker judges (registry_hooks.outcomes_file)

# -- dataset-input tags: the full identity of a table a run logged --------------------------------
INPUT_TAG_CONTENT_HASH = "gatekeeper.content_hash"  # full SHA-256; MLflow's digest has 8 hex chars
INPUT_TAG_N_ROWS = "gatekeeper.n_rows"
INPUT_TAG_SOURCE = "gatekeeper.source"  # this run's source (MLflow keeps the first logger's)

# -- drift: a drift run (registry_hooks/drift_summary.py) -----------------------------------------
DRIFT_FORMAT = "gatekeeper.drift/1"
DRIFT_SUMMARY_PATH = f"{ARTIFACT_DIR}/drift.json"
DRIFT_REPORT_PATH = f"{ARTIFACT_DIR}/drift_report.html"
TAG_DRIFT = "gatekeeper.drift"  # "1" on a drift run

# -- pipeline runs: the run-context provider (plugins/run_context.py) and retrain -----------------
STEP_ENV = "GATEKEEPER_PIPELINE_STEP"  # set by the pipeline, read by the provider in every process
DATASET_ENV = "GATEKEEPER_DATASET_VERSION"
TAG_PIPELINE_STEP = "gatekeeper.pipeline.step"
TAG_DATASET_VERSION = "gatekeeper.dataset.version"
TAG_GIT_COMMIT = "gatekeeper.git.commit"
TAG_VERDICT = "gatekeeper.verdict"  # the gate's verdict: on a retrain run, and (by the store) on the version
TAG_TUNE_BEST_PARAMS = "gatekeeper.tune.best_params"

# -- a model version's decision: mirrored by the store after every decision (the audit log is the
#    record; these let the MLflow UI and ``MlflowClient`` show the last one on the version) ----------
TAG_DECISION_ID = "gatekeeper.decision_id"
TAG_ACTION = "gatekeeper.action"
TAG_TARGET = "gatekeeper.target"
TAG_DECISION_BASELINE = "gatekeeper.baseline_version"
TAG_DECIDED_AT = "gatekeeper.decided_at"
TAG_ACTOR = "gatekeeper.actor"
TAG_REASON = "gatekeeper.reason"
TAG_EVIDENCE_RUN_IDS = "gatekeeper.evidence_run_ids"
TAG_POLICY_HASH = "gatekeeper.policy_hash"
TAG_DECISION_URL = "gatekeeper.decision_url"  # the decision's page on the server: DECISION_PAGE?id=N
DECISION_PAGE = "/gatekeeper/decision"  # plugins/pages serves it; the store writes it on each version

# -- the gate's own tables (registry_hooks/audit: one Alembic chain) --------------------------------
DECISIONS_TABLE = "gatekeeper_decisions"  # the append-only, hash-chained audit log
AUDIT_HEADS_TABLE = "gatekeeper_audit_heads"  # the signed head of each model's audit chain
EVAL_SETS_TABLE = "gatekeeper_eval_sets"  # registered evaluation-set versions (append-only)
VERIFICATIONS_TABLE = "gatekeeper_verifications"  # re-scoring requests and their signed results
EVIDENCE_SEEN_TABLE = "gatekeeper_evidence_seen"  # every evidence run the gate has seen (append-only)
FEEDBACK_TABLE = "gatekeeper_feedback"  # labels and flags on logged predictions, as revisions (append-only)
AUTOPILOT_LEASE_TABLE = "gatekeeper_autopilot_lease"  # one autopilot per model: holder, generation, expiry
OUTBOX_TABLE = "gatekeeper_outbox"  # decision notifications waiting for (or done with) delivery
SECRET_TABLE = "gatekeeper_secret"  # the generated server secret, when none is configured
AUDIT_VERSION_TABLE = "alembic_version_gatekeeper"  # beside MLflow's alembic_version and basic-auth's

# -- trusted evidence: registered sets, verification, the server secret -----------------------------
SET_DATA_PREFIX = "set:"  # evaluate's data=set:NAME[@VERSION]: a registered evaluation set
SECRET_ENV = "GATEKEEPER_SECRET"  # keys the verification sample, its signatures and the audit chain
VERIFIER_ENV = "GATEKEEPER_VERIFIER"  # "spawn" (default: the server starts a verifier process) or "external"
VERIFIER_MODULE = "projects.verify"  # the verifier program: `python -m projects.verify`
VERIFIER_TIMEOUT_ENV = "GATEKEEPER_VERIFIER_TIMEOUT"  # seconds a request may wait unclaimed before "verifier down"

_SERVER_SCHEMES = ("http://", "https://", "databricks")


def is_server_uri(tracking_uri: str) -> bool:
    """A tracking URI that names a server (talk to the gate over REST), not a database (open the
    gated store in process). One rule for the client and ``retrain``: they must agree, or retrain
    would gate a registry in process that the client then calls over HTTP, or the reverse."""
    return tracking_uri.startswith(_SERVER_SCHEMES)
