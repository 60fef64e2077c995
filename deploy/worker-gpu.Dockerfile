# syntax=docker/dockerfile:1.7
# GPU worker image: the Beam SDK harness for Dataflow (`sdk_container_image` in deploy/runners/dataflow.yaml)
# and the image of the Prefect GPU work pool (deploy/k8s-gpu-job-template.json). CUDA build of torch==2.13.0;
# the CUDA runtime comes with the torch wheels, the driver from the host (Dataflow/GKE install it).
# Build from the repository root:
#   docker build -f deploy/worker-gpu.Dockerfile -t REGION-docker.pkg.dev/YOUR_PROJECT/undertone/worker-gpu:latest .
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam

FROM python:3.11-slim-bookworm
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ARROW_DEFAULT_MEMORY_POOL=system \
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 LRU_CACHE_CAPACITY=16 DO_NOT_TRACK=1
# Beam's boot binary starts the SDK harness inside Dataflow/Flink workers.
COPY --from=beam /opt/apache/beam /opt/apache/beam
WORKDIR /opt/undertone
COPY requirements.lock pyproject.toml README.md ./
COPY deploy/requirements-gcp.lock deploy/
# Beam's Google Cloud extra (deploy/requirements-gcp.lock): Dataflow workers read gs:// inputs and stage there.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && grep -v '^torch==' requirements.lock > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -r deploy/requirements-gcp.lock
COPY undertone/ undertone/
COPY flows/ flows/
COPY transforms/ transforms/
COPY schemas/ schemas/
COPY models/ models/
COPY deploy/ deploy/
# Editable, so the packages run from /opt/undertone with their data beside them: the model bundles and registry
# a worker loads the run's bundle version from (the launcher's own path does not exist here), and the runner sets.
RUN pip install --no-deps -e . && python -c "import torch, apache_beam, prefect, transformers, models.registry as r; \
    assert r.default_model_dir().is_dir()"
# Dataflow starts the harness through this entrypoint; the Prefect Kubernetes job overrides the command.
ENTRYPOINT ["/opt/apache/beam/boot"]
