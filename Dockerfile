# The OdooOps daemon: `odooops` in a virtual environment, run as the non-root user odooops.
#
#   docker build -t odooops/daemon:0.1.0 .          # anywhere with the package index
#   bash scripts/build-daemon-image.sh              # offline: host wheels, local base if needed
#
#   docker run -d --name odooops \
#     -v odooops-data:/var/lib/odooops \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e ODOOOPS_PG_ADMIN_PASSWORD \
#     odooops/daemon:0.1.0 daemon --state-repo https://git.example.com/acme/odooops-state.git
#
# The daemon drives the Docker engine through its socket, so the container needs the socket's
# group (--group-add). git is not installed: pygit2's wheel bundles libgit2.
#
# Stages: `requirements` (runtime requirement names from pyproject.toml), `deps` (a venv with
# the locked dependencies), `app` (the project, installed non-editable), `venv` (the deps venv
# without pip/setuptools) and the final image. Dependencies are installed before the source is
# copied, so editing the source reuses the dependency layers, in the build cache and in the
# final image alike (the project is a layer of its own, about 1 MB).
#
# Wheels: when build/wheels holds *.whl (scripts/build-daemon-image.sh makes them from
# requirements.lock on the host, for CPython 3.11 on Linux x86_64) pip installs from them only,
# with no network; otherwise from the package index. The versions are those of
# requirements.lock either way (used as constraints: the test-only pins are not installed).
# Building for another Python (BASE=python:3.12-slim) needs build/wheels removed first.

ARG BASE=python:3.11-slim

# ---------------------------------------------------------------------------- requirements
FROM ${BASE} AS requirements
COPY pyproject.toml /tmp/pyproject.toml
# Only [project].dependencies: a version bump yields identical bytes, so `deps` stays cached.
RUN python3 -c 'import tomllib; print(*tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
      > /tmp/runtime.in

# ---------------------------------------------------------------------------- deps
FROM ${BASE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/odooops
# build/wheel[s]: a glob, so a context without build/wheels builds too (requirements.lock
# always matches). The wheels land beside the lock in /wheels.
COPY requirements.lock build/wheel[s] /wheels/
COPY --from=requirements /tmp/runtime.in /wheels/runtime.in
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then echo "--no-index --find-links /wheels"; fi \
      > /wheels/pip-source; \
    /opt/odooops/bin/pip install $(cat /wheels/pip-source) \
      -r /wheels/runtime.in -c /wheels/requirements.lock; \
    /opt/odooops/bin/pip check

# ---------------------------------------------------------------------------- app
FROM deps AS app
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas/
COPY reconciler /src/reconciler/
COPY webhooks /src/webhooks/
# Non-editable install (setuptools comes from /wheels or the index, in pip's isolated build
# environment), then the files of the distribution are staged under /staging for the final
# image, as listed by its RECORD (package, dist-info, bin/odooops).
#
# reconciler/schemas is a link to schemas/ (copied above, so it resolves); the wheel build
# follows it, and the check below proves every schema loads from the installed package.
RUN set -eu; \
    /opt/odooops/bin/pip install $(cat /wheels/pip-source) --no-deps /src; \
    mkdir /staging; \
    /opt/odooops/bin/python -c 'import importlib.metadata as m; print(*(f.locate() for f in m.files("odooops")), sep="\n")' \
      | xargs -d '\n' realpath -s | xargs -d '\n' cp -a --parents -t /staging; \
    /opt/odooops/bin/python -c 'from reconciler.core import validation as v; v._registry(); missing = [n for n in v.SCHEMA_NAMES if not (v.SCHEMA_DIR / f"{n}.schema.json").is_file()]; assert not missing, missing'; \
    test -x /staging/opt/odooops/bin/odooops; \
    /opt/odooops/bin/odooops --help >/dev/null

# ---------------------------------------------------------------------------- venv
FROM deps AS venv
# pip and setuptools are build tools: not shipped.
RUN /opt/odooops/bin/python -m pip uninstall -q -y pip setuptools

# ---------------------------------------------------------------------------- final
FROM ${BASE}
ENV PATH=/opt/odooops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ODOOOPS_DATA_DIR=/var/lib/odooops
# The PostgreSQL client tools copy, back up and restore databases; a base that lacks them
# (the official python image) gets Debian's package.
RUN set -eu; \
    if ! command -v pg_dump >/dev/null 2>&1; then \
      apt-get update -q; \
      apt-get install -y -q --no-install-recommends postgresql-client; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    pg_dump --version
# Written directly: useradd is not in every base (a bare Debian has no passwd package).
RUN set -eu; \
    echo 'odooops:x:10001:10001:OdooOps daemon:/var/lib/odooops:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'odooops:x:10001:' >> /etc/group; \
    mkdir -p /var/lib/odooops; \
    chown 10001:10001 /var/lib/odooops; \
    chmod 0750 /var/lib/odooops
COPY --from=venv /opt/odooops /opt/odooops
COPY --from=app /staging/ /
USER 10001:10001
WORKDIR /var/lib/odooops
VOLUME ["/var/lib/odooops"]
ENTRYPOINT ["odooops"]
CMD ["daemon", "--help"]

# Last, so that a new version or revision only changes metadata.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="OdooOps daemon" \
      org.opencontainers.image.description="A self-hosted GitOps reconciler for Odoo 19 Community Edition" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="LGPL-3.0-or-later" \
      org.opencontainers.image.vendor="OdooOps"
