"""The SignCLIP service on Ray Serve, from the command line (see :mod:`signclip.service` for the app).

    signclip serve --model default=models/e7.2 --host 127.0.0.1 --port 8000
    signclip serve --model default=s3://bucket/models/e7.2 --address ray://head:10001
    signclip serve --config cluster/serve.yaml          # the models, limits and scaling of the Serve config
    signclip serve --model default=models/e7.2 --index asl=runs/emb    # + dictionary search and the page at /
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from typing import Any

from signclip.api.settings import LAYOUTS, ServiceSettings, parse_models
from signclip.jobs import contract
from signclip.jobs.submit import parse_env
from signclip.service import APP_NAME, MODEL_DEPLOYMENTS, SERVE_MODES, make_app, read_serve_config, use_serve_mode

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="signclip serve", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR|URL",
                        help="a model to serve (repeatable), a directory or s3://...; overrides the config's models")
    parser.add_argument("--index", action="append", default=[], metavar="NAME=DIR|URL",
                        help="an embedding directory (signclip embed) to search, as /v1/search and the page at / "
                             "(repeatable); its queries are embedded with the model its embeddings name")
    parser.add_argument("--index-model", action="append", default=[], metavar="NAME=DIR|URL",
                        help="the model of index NAME when it is not where its embeddings say (moved, another node)")
    parser.add_argument("--search-mode", choices=("auto", "exact", "approximate"), default=None,
                        help="exact search, approximate (FAISS HNSW), or auto: approximate for large indexes")
    parser.add_argument("--config", help="a Serve config YAML (cluster/serve.yaml): models, limits, scaling")
    parser.add_argument("--app-name", default=None, help="which application of --config (default: the first)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, local only)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    contract.add_address(parser, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--proxy-location", choices=("HeadOnly", "EveryNode", "Disabled"), default=None,
                        help="where Serve runs HTTP proxies (default: the config's, else HeadOnly; EveryNode "
                             "behind a load balancer on a real cluster)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V|K|PATTERN",
                        help="environment variable for the replicas on a cluster (as `signclip submit --env`), "
                             "e.g. 'AWS_*' when the nodes have no S3 credentials of their own")
    parser.add_argument("--num-cpus", type=contract.positive_int, default=None,
                        help="CPUs of the local Ray (default: all)")
    parser.add_argument("--layout", choices=LAYOUTS, default=None,
                        help="where the models run: in the HTTP gateway's replicas (combined, the default: no hop "
                             "per request) or in their own text and pose deployments (split: large models on CPUs)")
    parser.add_argument("--serve-mode", choices=tuple(SERVE_MODES), default="fast",
                        help="Ray Serve's data plane for the local Ray this starts: fast (HAProxy ingress and "
                             "direct gRPC between replicas, the default) or default (Serve's Python proxy); on a "
                             "cluster the nodes' environment decides (see cluster/README.md)")
    parser.add_argument("--gpus", type=float, default=None, metavar="N",
                        help="GPUs per model replica (the Gateway's, or the embedders' with --layout split); "
                             "its models then run on its GPU")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="inference precision")
    parser.add_argument("--no-video", action="store_true", help="do not deploy video extraction")
    parser.add_argument("--cors-origin", action="append", default=[], help="an allowed browser origin (repeatable)")
    return parser.parse_args(argv)


def with_gpus(options: dict[str, dict[str, Any]], settings: ServiceSettings, gpus: float | None
              ) -> dict[str, dict[str, Any]]:
    """``options`` with ``gpus`` GPUs for each replica that holds models (the Gateway's, or the embedders' in
    the split layout)."""
    if not gpus:
        return options
    out = {name: dict(o) for name, o in options.items()}
    for name in ("Gateway",) if settings.layout == "combined" else MODEL_DEPLOYMENTS:
        chosen = out.setdefault(name, {})
        chosen["ray_actor_options"] = {**chosen.get("ray_actor_options", {}), "num_gpus": gpus}
    return out


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_about_local_paths(settings: ServiceSettings) -> None:
    """On a cluster every replica reads its models and indexes itself, from its own node's disk for a path."""
    from signclip.io import storage

    for kind, locations in (("model", settings.models), ("index", settings.indexes),
                            ("index model", settings.index_models)):
        for name, location in locations.items():
            if not storage.is_remote(location):
                log.warning("%s %s=%s is a local path: every replica reads it from its own node, where it must "
                            "exist; on nodes that share no disk use s3://...", kind, name, location)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app_args, options, http = read_serve_config(args.config, args.app_name) if args.config else ({}, {}, {})
        config_proxy = http.pop("proxy_location", None)
        if args.model:
            app_args["models"] = parse_models(args.model)
        if args.index:
            app_args["indexes"] = parse_models(args.index, "index")
        if args.index_model:
            app_args["index_models"] = parse_models(args.index_model, "index")
        if args.search_mode:
            app_args["search_mode"] = args.search_mode
        if args.layout:
            app_args["layout"] = args.layout
        if args.precision:
            app_args["precision"] = args.precision
        if args.no_video:
            app_args["enable_video"] = False
        if args.cors_origin:
            app_args["cors_origins"] = args.cors_origin
        settings = ServiceSettings.from_mapping(app_args)
        app = make_app(settings, with_gpus(options, settings, args.gpus))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.address:
        warn_about_local_paths(settings)
    host = args.host or http.get("host") or "127.0.0.1"
    port = args.port or int(http.get("port") or 8000)
    if not _is_loopback(host) and not settings.api_token():
        log.warning("binding %s without a token: set %s to require one", host, settings.api_token_env)
    try:
        env = parse_env(args.env, os.environ)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import ray
    from ray import serve

    stopping = threading.Event()

    def stop(received: int, _frame: object) -> None:
        log.info("%s: shutting the service down", signal.Signals(received).name)
        stopping.set()

    def trap_stop_signals() -> None:
        # ray.init installs a C-level SIGTERM handler of its own, which ends the process without shutting the
        # app down; a Python handler (set again after Ray starts) catches the signal on whichever thread it lands
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)

    trap_stop_signals()
    if args.address is None:
        use_serve_mode(args.serve_mode)
    try:
        ray.init(address=args.address, num_cpus=args.num_cpus if args.address is None else None,
                 runtime_env={"env_vars": env} if env else None)
        trap_stop_signals()
        serve.start(http_options={"host": host, "port": port},
                    proxy_location=args.proxy_location or config_proxy or "HeadOnly")
        serve.run(app, name=args.app_name or APP_NAME, route_prefix="/")
        trap_stop_signals()
        if not stopping.is_set():
            log.info("serving %s on http://%s:%d (Ctrl-C or SIGTERM to stop)", sorted(settings.models), host, port)
            if settings.indexes:
                log.info("dictionary page over %s: http://%s:%d/", sorted(settings.indexes), host, port)
        while not stopping.wait(0.5):
            pass
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    contract.command_line(main)
