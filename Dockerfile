# One image for every Tandem service; the command picks the role (deploy/*/compose.yml, docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
# ssh-keygen creates each SuperNode's authentication key (the supernode-key init step).
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*
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
# /state is private to the service's user: the coordinator refuses a state directory others can read.
RUN useradd --create-home tandem && mkdir -p /state && chown tandem /state && chmod 700 /state
USER tandem
