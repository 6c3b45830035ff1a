"""``flowkit ui``: the web view over the store (over :func:`flowkit.ui.app.serve`).

::

    flowkit ui                                   # http://127.0.0.1:8765/
    flowkit ui --port 9000 --home /data/flowkit
    FLOWKIT_UI_TOKEN=s3cret flowkit ui --host 0.0.0.0   # open http://host:8765/?token=s3cret
"""

from __future__ import annotations

import click

__all__ = ["ui"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; another than loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The port (0: any free one, printed at start).")
@click.option("--home", type=click.Path(file_okay=False), help="The store folder (default: the flowkit --home, "
                                                                 "$FLOWKIT_HOME, else ./.flowkit).")
@click.option("--token", envvar="FLOWKIT_UI_TOKEN", metavar="TOKEN",
              help="Require this token on every request: ?token=, then a cookie, or 'Authorization: Bearer' "
                   "(default: $FLOWKIT_UI_TOKEN).")
@click.option("--access-log", is_flag=True, help="Log a line per request.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
def ui(host: str, port: int, home: str | None, token: str | None, access_log: bool, log_level: str) -> None:
    """Serve a read-only web view of runs, models and artifacts until stopped (Ctrl-C or SIGTERM)."""
    from flowkit.cli import _home
    from flowkit.cli.params import UsageProblem
    from flowkit.store import Store

    try:
        from flowkit.ui.app import serve
    except ImportError as exc:
        raise UsageProblem(f"flowkit ui needs Starlette, uvicorn and Jinja2 ({exc}): pip install 'flowkit[ui]'") from None
    serve(host=host, port=port, token=token, store=Store.open(home or _home()), access_log=access_log,
          log_level=log_level)
