# Fillmore image: one image for web, worker, beat, marketdata and the one-shot migrate service
# (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=tradingsite.settings \
    FILLMORE_VAR_DIR=/app/var

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# (The package directories are still empty here, so this installs the dependencies only.)
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .
RUN pip install --no-deps . \
    && mkdir -p /app/var \
    && python manage.py collectstatic --noinput \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin fillmore \
    && chown -R fillmore /app/var

USER fillmore
EXPOSE 8000
CMD ["python", "-m", "gunicorn", "-c", "python:tradingsite.gunicorn_conf", "-b", "0.0.0.0:8000", "tradingsite.wsgi:application"]
