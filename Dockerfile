# dbmesh container: `docker compose up` builds it; config is mounted at /conf.
# Stage 1 compiles the Cython wire layer and collects wheels; stage 2 carries no compiler.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY dbmesh ./dbmesh
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY scripts/docker-entrypoint.py /usr/local/bin/dbmesh-entrypoint
# MySQL, PostgreSQL, admin (HTTP /metrics), as in rules/single-mysql.
EXPOSE 3307 5433 9797
# SIGTERM is dbmesh's graceful-shutdown signal; the entrypoint execs, so dbmesh is PID 1 and gets it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dbmesh-entrypoint"]
CMD ["dbmesh", "serve", "--config", "/conf"]
