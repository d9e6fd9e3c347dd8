# syntax=docker/dockerfile:1
# The gateway's image: the package installed (not editable) from the set the tests ran with
# (constraints.txt), run as the unprivileged user guanjia. No secret is baked in: tokens and
# passwords come from the environment at run time (docker-compose.yml and .env). The site
# file is mounted at /etc/guanjia/site.yaml, the data volume at /var/lib/guanjia.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY core core
COPY gateway gateway
COPY drivers drivers
COPY rules rules
COPY simulator simulator
COPY accounts accounts
COPY config config
# The wheel (the package with its shipped data), built with the pinned build backend
# (PIP_CONSTRAINT reaches pip's isolated build), then installed into a venv as constraints.txt
# says every install should be.
RUN PIP_CONSTRAINT=/src/constraints.txt python -m pip wheel --no-deps --wheel-dir /wheels /src \
 && python -m venv /opt/guanjia \
 && /opt/guanjia/bin/pip install --constraint /src/constraints.txt /wheels/guanjia-*.whl

FROM ${PYTHON_IMAGE}
ARG GUANJIA_UID=10001
# dialout: the RS-485 adapters passed through from the host (/dev/ttyUSB*).
RUN groupadd --system --gid "${GUANJIA_UID}" guanjia \
 && useradd --system --uid "${GUANJIA_UID}" --gid guanjia --groups dialout \
      --home-dir /var/lib/guanjia --no-create-home --shell /usr/sbin/nologin guanjia \
 && install -d -o guanjia -g guanjia -m 0750 /var/lib/guanjia \
 && install -d -m 0755 /etc/guanjia
COPY --from=build /opt/guanjia /opt/guanjia
# The virtual building's site for docker-compose.demo.yml; its camera password is public.
COPY config/demo-site.yaml config/demo-camera.secret /opt/guanjia/demo/
ENV PATH=/opt/guanjia/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER guanjia
WORKDIR /var/lib/guanjia
# The health endpoint; see HEALTHCHECK.
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "gateway.healthcheck"]
ENTRYPOINT ["guanjia"]
CMD ["run", "/etc/guanjia/site.yaml"]
