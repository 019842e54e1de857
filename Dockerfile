# One image for every Tandem service; the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coordinator coordinator
COPY bank_node bank_node
COPY telco_node telco_node
COPY psi psi
COPY protocols protocols
COPY node node
COPY demo demo
RUN pip install --no-cache-dir .
RUN useradd --create-home tandem && mkdir -p /state && chown tandem /state
USER tandem
