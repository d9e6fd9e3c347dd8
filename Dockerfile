FROM python:3.11-slim
WORKDIR /opt/guanjia
COPY pyproject.toml README.md ./
COPY core core
COPY gateway gateway
COPY drivers drivers
COPY rules rules
COPY simulator simulator
COPY config config
# Editable: profiles and the demo site are data read from the source tree.
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
CMD ["guanjia", "--help"]
