FROM python:3.11-slim

# The image is production: settings refuse to start without their secrets.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HUB_ENV=production
WORKDIR /app

COPY pyproject.toml README.md ./
COPY integration_hub integration_hub
COPY canonical canonical
COPY connectors connectors
COPY manage.py ./
RUN pip install --no-cache-dir . && useradd --create-home hub \
    && mkdir -p /app/var && chown -R hub /app/var
# Static files (admin, API docs) served by WhiteNoise from hashed, compressed copies.
RUN HUB_ENV=production HUB_VAR_DIR=/tmp/build-var HUB_STATIC_ROOT=/app/static SECRET_KEY=build DATABASE_URL=sqlite:////tmp/build.db \
    CELERY_BROKER_URL=memory:// HUB_ENCRYPTION_KEYS=build python manage.py collectstatic --no-input -v 0
ENV HUB_STATIC_ROOT=/app/static
USER hub

EXPOSE 8000
# The same command as the compose file's web service (a test keeps them equal).
CMD ["gunicorn", "integration_hub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--timeout", "30"]
