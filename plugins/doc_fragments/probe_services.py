# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service list shared by cmx_wait_healthy and cmx_health (spec: probes.MODULE_SERVICE_OPTIONS)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  services:
    description:
      - The services to probe, each under its O(services[].name).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name used in results and messages.
        type: str
        required: true
      type:
        description: Probe type.
        type: str
        required: true
        choices: [postgres, redis, s3, http, tcp]
      dsn:
        description: PostgreSQL URL or key=value DSN. Discrete options below override its parts.
        type: str
      url:
        description:
          - V(redis) C(redis://[:password@]host:port/db) or C(rediss://...) (TLS); V(http) the URL to GET;
            V(s3) alias of O(services[].endpoint).
        type: str
      host:
        description: Host (postgres, redis, tcp).
        type: str
      port:
        description: Port (postgres, redis, tcp).
        type: int
      user:
        description: PostgreSQL user, or Redis ACL user name.
        type: str
      password:
        description: PostgreSQL or Redis password.
        type: str
      dbname:
        description: PostgreSQL database.
        type: str
      sslmode:
        description: PostgreSQL sslmode (applied only when the DSN sets none).
        type: str
        default: disable
      sslrootcert:
        description: CA file for O(services[].sslmode=verify-full) (the stack's CA when cmx_tls_enabled).
        type: path
      tls:
        description:
          - Redis over TLS. Unset follows the URL scheme (C(rediss://) is TLS, C(redis://) is not);
            V(true)/V(false) overrides it.
        type: bool
      ca_file:
        description:
          - PEM CA file the server certificate (chain and host name) is verified against, for Redis
            over TLS, https S3 and https HTTP; unset uses the system's trusted CAs.
          - For V(postgres) an alias of O(services[].sslrootcert) (used when that is unset).
        type: path
      addressing:
        description:
          - S3 request addressing. V(path) sends C(<endpoint>/<bucket>); V(virtual) sends
            C(https://<bucket>.<endpoint host>/) (AWS S3 virtual-hosted style), signed for that host.
        type: str
        default: path
        choices: [path, virtual]
      endpoint:
        description: S3 endpoint, C(http://host:port) or C(https://s3.<region>.amazonaws.com).
        type: str
      health_path:
        description:
          - S3 engine health path (SeaweedFS C(/healthz), MinIO C(/minio/health/live)); empty skips it
            and only the signed bucket C(HEAD) is done (managed S3 has no health endpoint).
        type: str
        default: /healthz
      bucket:
        description: S3 bucket for the signed C(HEAD); needs the keys.
        type: str
      access_key:
        description: S3 access key.
        type: str
      secret_key:
        description: S3 secret key.
        type: str
      region:
        description: S3 signing region.
        type: str
        default: us-east-1
      expected_status:
        description: Accepted HTTP status codes (http).
        type: list
        elements: int
        default: [200]
      method:
        description: HTTP method (http).
        type: str
        default: GET
        choices: [GET, HEAD]
      headers:
        description: Extra HTTP request headers (http), e.g. a Supabase C(apikey).
        type: dict
      container:
        description: Container whose log tail is shown when this service never comes up.
        type: str
"""
