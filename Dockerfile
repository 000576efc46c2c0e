# Recruitmail: one image for the API, the worker, the inbound SMTP receiver and the migrations.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RECRUITMAIL_ENVIRONMENT=production

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY providers ./providers
COPY worker ./worker
COPY core ./core
RUN pip install --require-hashes -r requirements.lock \
    && pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app recruitmail \
    && mkdir -p /app/.recruitmail && chown recruitmail /app/.recruitmail

USER recruitmail
EXPOSE 8000 2525
ENTRYPOINT ["recruitmail"]
CMD ["api"]
