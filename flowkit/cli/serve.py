"""``flowkit serve``: a registered model behind HTTP (over :func:`flowkit.ml.serve.serve`).

::

    flowkit serve churn@production                       # http://127.0.0.1:8000
    flowkit serve churn@production --port 9000 --poll-interval 5
    FLOWKIT_SERVE_TOKEN=s3cret flowkit serve churn@production --host 0.0.0.0
"""

from __future__ import annotations

import click

__all__ = ["serve"]


@click.command()
@click.argument("model_uri", metavar="NAME[@ALIAS|:VERSION]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; another than loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="The port (0: any free one, printed at start).")
@click.option("--token", envvar="FLOWKIT_SERVE_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on /predict and /model (default: $FLOWKIT_SERVE_TOKEN).")
@click.option("--allow-anonymous", is_flag=True, help="Serve a non-loopback --host without a token anyway.")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between checks of where the alias points.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001), default=10.0, show_default=True,
              help="Larger request bodies get a 413.")
@click.option("--access-log", is_flag=True, help="Log a line per request (the prediction log is kept either way).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
def serve(model_uri: str, host: str, port: int, token: str | None, allow_anonymous: bool, poll_interval: float,
          max_body_mb: float, access_log: bool, log_level: str) -> None:
    """Serve a registered model over HTTP until stopped: POST /predict, GET /health, GET /model.

    The service follows the alias (churn@production) as it moves, without a restart, and
    appends every answer to the prediction log in the store (fk.registry.predictions reads it).
    """
    from flowkit.cli import _home, err_console
    from flowkit.cli.params import UsageProblem
    from flowkit.errors import ModelNotFoundError
    from flowkit.ml import registry
    from flowkit.store import Store

    try:
        from flowkit.ml.serve import serve as run
    except ImportError as exc:
        raise UsageProblem(f"flowkit serve needs Starlette and uvicorn ({exc}): pip install 'flowkit[serve]'") from None

    store = Store.open(_home())
    try:
        registry.get(model_uri, store=store)
    except ModelNotFoundError as exc:  # start anyway: 503 until it resolves
        err_console.print(f"[yellow]warning:[/] {exc}; answering 503 until it resolves", soft_wrap=True)
    run(model_uri, host=host, port=port, token=token, store=store, poll_interval=poll_interval,
        max_body_bytes=int(max_body_mb * 2**20), allow_anonymous=allow_anonymous, access_log=access_log,
        log_level=log_level)
