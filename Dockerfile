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
    && mkdir -p /app/var/static && chown -R hub /app/var
USER hub

EXPOSE 8000
# The same command as the compose file's web service (a test keeps them equal).
CMD ["gunicorn", "integration_hub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--timeout", "30"]
