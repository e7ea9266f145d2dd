"""`localroute ask --stream` without --role: the routed pipeline, printed as it is written.

Reasoning and the notes of tool rounds go to stderr, dimmed; the answer to stdout, plain; the
validation verdict to stderr at the end. The run is the server's streaming one
(server/stream_steps.py), so the terminal sees what an OpenAI client of `serve` sees.
"""

from __future__ import annotations

import asyncio
import sys

from localroute.cli.common import err, printable
from localroute.config.modes import StreamPolicy
from localroute.orchestrator.machine import Orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.server.stream_steps import Channel, streaming_run


async def stream_ask(orchestrator: Orchestrator, ctx: ExecutionContext,
                     policy: StreamPolicy | None) -> ExecutionContext:
    channel = Channel()
    run = streaming_run(orchestrator, ctx.mode, channel, requested=policy)
    task = asyncio.ensure_future(run.orchestrator.run(ctx))
    task.add_done_callback(lambda _: channel.close())
    wrote = False
    try:
        while (piece := await channel.get()) is not None:
            if piece.kind == "content":
                sys.stdout.write(printable(piece.text))
                sys.stdout.flush()
                wrote = True
            elif piece.kind == "reasoning":
                err.print(piece.text, end="", style="dim", highlight=False, markup=False)
        ctx = await task
    finally:
        task.cancel()
    if wrote:
        sys.stdout.write("\n")
    elif ctx.reply is not None:  # a tool-only answer, or a buffered one: nothing streamed
        sys.stdout.write(printable(ctx.reply) + "\n")
    verdict = ctx.validation
    if ctx.validation_failures and verdict == "unvalidated":
        verdict += ": " + "; ".join(ctx.validation_failures)
    err.print(f"validation: {verdict}", style="dim" if verdict in ("passed", "skipped")
              else "yellow", highlight=False, markup=False)
    return ctx
