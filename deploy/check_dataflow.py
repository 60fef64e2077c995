"""Translate the labeling job into a Dataflow job without submitting it (Beam's ``--dry_run``), offline.

What ``--runner dataflow`` would send, checked before a project exists: the ``dataflow`` option set (its placeholder
project and buckets replaced), the GPU worker options, and every transform of the job as the Dataflow runner
translates it, with the workers staging under the ``gs://`` temp location. Needs Beam's Google Cloud extra, which
``make dataflow-check`` installs (``deploy/requirements-gcp.lock``) before running this.

    .venv/bin/python deploy/check_dataflow.py
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2

import undertone  # noqa: F401 - offline flags and memory settings, as for a run
from transforms.pipeline import PipelineConfig, build, labeling_tasks, runner_options
from transforms.sinks import remote_staging

PLACEHOLDERS = ["--project=undertone-check", "--temp_location=gs://undertone-check/tmp",
                "--staging_location=gs://undertone-check/staging", "--dry_run=True"]
"""The option set's YOUR_PROJECT and YOUR_BUCKET replaced (later flags win), and no submission."""


def main() -> int:
    options = PipelineOptions(runner_options("dataflow") + PLACEHOLDERS)
    config = PipelineConfig(inputs=("gs://undertone-check/in/**",), output="out", runner="dataflow", device="cuda")
    bundle, tasks = labeling_tasks(config.model_dir, config.tasks, config.zero_shot)
    staging = remote_staging(config.run_id, options.view_as(GoogleCloudOptions).temp_location)
    if staging is None:
        raise SystemExit("the dataflow option set has no gs:// temp_location: its workers could not stage files")
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, ["gs://undertone-check/in/2026-11-20/inbox.mbox"], bundle, tasks, staging)
    job = pipeline.run().job
    images = sorted({_container_image(environment)
                     for environment in job.proto_pipeline.components.environments.values()})
    expected = options.view_as(WorkerOptions).sdk_container_image
    service_options = options.view_as(GoogleCloudOptions).dataflow_service_options
    summary = {"transforms": len(job.proto_pipeline.components.transforms), "worker_images": images,
               "worker_staging": staging, "service_options": service_options}
    print(json.dumps(summary, indent=2))
    if images != [expected]:
        print(f"workers would not run {expected}: {images}", file=sys.stderr)
        return 1
    return 0


def _container_image(environment: beam_runner_api_pb2.Environment) -> str:
    """The Docker image of a job environment (Dataflow runs Docker environments only)."""
    payload = beam_runner_api_pb2.DockerPayload()
    payload.ParseFromString(environment.payload)
    return payload.container_image


if __name__ == "__main__":
    sys.exit(main())
