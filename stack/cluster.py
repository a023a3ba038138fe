"""The production topology on one machine (`make cluster`): nginx in front of the gateways and
of the action servers, several Rasa servers, on PostgreSQL and Redis.

```
Twilio ──> nginx :BALANCER_PORT ──> gateway :GATEWAY_PORT, :GATEWAY_PORT+1, ...
                                       │ RasaClient: a patient's own Rasa, the next if it is down
                                       v
                                     Rasa :RASA_PORT, :RASA_PORT+1, ... (RASA_SERVERS elsewhere)
                                       │ ACTION_SERVER_URL
                                       v
           nginx :ACTION_BALANCER_PORT ──> action server :ACTION_SERVER_PORT, +1, ...
gateways, Rasa, action servers ──> PostgreSQL (DATABASE_URL: booking; TRACKER_STORE_URL)
Rasa ──> Redis (REDIS_URL: the lock store, one message at a time per conversation)
```

Rasa reaches the action servers through nginx rather than a list: Rasa 3.6 takes one action
endpoint URL, and nginx moves calls off a dead server (connection refused) without Rasa knowing.
An action call that reached a server which then died is not re-sent by nginx (POST, not
idempotent): Rasa reports the action failed, the channel answers 503 with the turn rewound,
and the gateway's inbox delivers the message again.

Twilio's webhooks may go to any gateway, and again to another one: every webhook is idempotent
(stored once per MessageSid or CallSid), so nginx retries a webhook on the next gateway when
the first fails in any way, POSTs included (`non_idempotent`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from booking.settings import PROJECT_ROOT, Settings
from stack.supervisor import Service, Supervisor, rasa_endpoints, with_backend_tokens

NGINX_CONFIG = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    # Webhooks are small: nothing is buffered to disk, so no temp files to own.
    client_body_buffer_size 64k;
    proxy_max_temp_file_size 0;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream gateways {{
{gateways}
        keepalive 32;
    }}
    upstream action_servers {{
{action_servers}
        keepalive 16;
    }}

    server {{
        listen {balancer_host}:{balancer_port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            # Webhooks are idempotent (MessageSid, CallSid): safe to send to the next gateway.
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries {gateway_count};
        }}
    }}
    server {{
        listen 127.0.0.1:{action_balancer_port};
        location / {{
            proxy_pass http://action_servers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            # Only a call that never reached a server goes to the next (POSTs are not retried).
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_config(settings: Settings, directory: Path) -> Path:
    """nginx.conf for this node, with every path (pid, log, temp) under `directory`."""
    def servers(host: str, first_port: int, count: int) -> str:
        # A dead one is passed over for a few seconds, then tried again.
        return "\n".join(f"        server {host}:{first_port + index} max_fails=1 "
                         "fail_timeout=3s;" for index in range(count))

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(NGINX_CONFIG.format(
        dir=directory, balancer_host=settings.balancer_host,
        balancer_port=settings.balancer_port,
        action_balancer_port=settings.action_balancer_port,
        gateways=servers(settings.gateway_host, settings.gateway_port,
                         settings.gateway_processes),
        gateway_count=settings.gateway_processes,
        action_servers=servers(settings.action_server_host, settings.action_server_port,
                               settings.action_server_processes)))
    return path


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("no nginx here (Debian: apt-get install nginx)")
    return found


def cluster_services(settings: Settings, *, model: Path, run_dir: Path) -> list[Service]:
    """Every process of the topology on this node, each its own process group (so one can be
    killed alone), in the order they are started. `settings` must carry the backend tokens
    and ACTION_SERVER_URL naming the action balancer."""
    python = sys.executable
    rasa = str(Path(python).parent / "rasa")
    endpoints = rasa_endpoints(settings, run_dir)
    status = urlencode({"token": settings.rasa_token})
    nginx_dir = run_dir / "nginx"
    config = nginx_config(settings, nginx_dir)
    actions = [
        Service(f"action server {index + 1}", [python, "-m", "stack.action_server"],
                f"http://{settings.action_server_host}:{port}/health",
                env={"ACTION_SERVER_PORT": str(port)})
        for index, port in enumerate(range(settings.action_server_port,
                                           settings.action_server_port
                                           + settings.action_server_processes))]
    rasas = [
        Service(f"rasa {index + 1}",
                [rasa, "run", "--enable-api", "--interface", settings.rasa_host,
                 "--port", str(port), f"--auth-token={settings.rasa_token}",
                 "--model", str(model), "--credentials", str(PROJECT_ROOT / "credentials.yml"),
                 "--endpoints", str(endpoints)],
                f"http://{settings.rasa_host}:{port}/status?{status}")
        for index, port in enumerate(range(settings.rasa_port,
                                           settings.rasa_port + settings.rasa_processes))]
    gateways = [
        Service(f"gateway {index + 1}",
                [python, "-m", "uvicorn", "booking.gateway.app:create_app", "--factory",
                 "--host", settings.gateway_host, "--port", str(port), "--no-access-log"],
                f"http://{settings.gateway_host}:{port}/health")
        for index, port in enumerate(range(settings.gateway_port,
                                           settings.gateway_port + settings.gateway_processes))]
    balancer = Service(
        "nginx", [nginx_binary(), "-p", str(nginx_dir), "-e", str(nginx_dir / "error.log"),
                  "-c", str(config), "-g", "daemon off;"],
        f"http://{settings.balancer_host}:{settings.balancer_port}/health")
    return [*actions, balancer, *rasas, *gateways]


def action_balancer_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.action_balancer_port}/webhook"


# The topology's shape unless the environment says otherwise: two of each.
CLUSTER_DEFAULTS = {"GATEWAY_PROCESSES": "2", "RASA_PROCESSES": "2",
                    "ACTION_SERVER_PROCESSES": "2"}


def cluster_environment(env: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings and children's environment of a cluster run: two of each unless set, Rasa
    calling actions through nginx, Twilio signing the balancer's URL, the backend tokens."""
    env = {**CLUSTER_DEFAULTS, **env}
    first = Settings(**{key.lower(): value for key, value in env.items()
                        if key.lower() in Settings.__fields__})
    balancer = f"http://{first.balancer_host}:{first.balancer_port}"
    env.setdefault("ACTION_SERVER_URL", action_balancer_url(first))
    env.setdefault("GATEWAY_PUBLIC_URL", balancer)
    env.setdefault("CONSOLE_PUBLIC_URL", balancer)
    return with_backend_tokens(env)


def prepare_database(env: dict[str, str]) -> None:
    """The schema and the clinics, as the gateways expect them."""
    ringback = str(Path(sys.executable).parent / "ringback")
    for command in (["migrate"], ["load-clinics"]):
        subprocess.run([ringback, *command], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def start_cluster(env: dict[str, str], *, model: Path, run_dir: Path,
                  stop_on_signals: bool = True) -> tuple[Settings, dict[str, str], Supervisor]:
    """Start every process of the topology and wait until each is healthy; the supervisor is
    None if a signal stopped the start."""
    settings, env = cluster_environment(env)
    if settings.database_url.startswith("sqlite") or not settings.redis_url:
        raise ValueError("a cluster needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
    prepare_database(env)
    supervisor = Supervisor(cluster_services(settings, model=model, run_dir=run_dir),
                            env=env, log_dir=run_dir / "logs")
    started = supervisor.start(stop_on_signals=stop_on_signals)
    return settings, env, supervisor if started else None
