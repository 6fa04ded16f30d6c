# syntax=docker/dockerfile:1
# The one image for every role, the migrate Job and the reconcile CronJob (k8s/).
#   docker build -t ghcr.io/settlement/settlement:0.1.0 .
# Python matches requires-python in pyproject.toml; every dependency ships manylinux
# wheels, so neither stage needs a compiler.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY settlement ./settlement
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && python -m venv /opt/settlement/venv \
 && /opt/settlement/venv/bin/pip install --no-cache-dir /dist/settlement-*.whl

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/settlement/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/settlement/venv /opt/settlement/venv
# The XSD validator looks for schemas/iso20022 in the directories above the installed
# package (settlement/iso20022/xsd.py): /opt/settlement is one of them.
COPY schemas/iso20022 /opt/settlement/schemas/iso20022
RUN groupadd --system --gid 10001 settlement \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin settlement
# Numeric, so Kubernetes can check runAsNonRoot without resolving names.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["settlement"]
CMD ["--help"]
