FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY integration_hub integration_hub
COPY canonical canonical
COPY connectors connectors
COPY manage.py ./
RUN pip install --no-cache-dir . && useradd --create-home hub
USER hub

EXPOSE 8000
CMD ["gunicorn", "integration_hub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
