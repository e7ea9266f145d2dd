"""The `time` tool: current local date and time, or in a named IANA time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import Tool, ToolContext, ToolError, ToolResult


class TimeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="IANA time zone such as 'Europe/Paris' or 'UTC'. Default: the machine's.",
    )


class TimeTool(Tool[TimeArgs]):
    name = "time"
    description = "The current date, time, weekday and time zone."
    Args = TimeArgs

    async def run(self, args: TimeArgs, ctx: ToolContext) -> ToolResult:
        if args.timezone is None:
            now = datetime.now().astimezone()
        else:
            try:
                now = datetime.now(ZoneInfo(args.timezone))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ToolError(
                    f"unknown time zone {args.timezone!r}; use an IANA name such as "
                    "'Europe/Paris', 'America/New_York' or 'UTC'"
                ) from exc
        offset = now.strftime("%z")
        offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        zone = args.timezone or now.tzname() or "local"
        data = {
            "iso": now.isoformat(timespec="seconds"),
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"),
            "weekday": now.strftime("%A"),
            "timezone": zone,
            "utc_offset": offset,
            "unix": int(now.timestamp()),
        }
        where = f" in {args.timezone}" if args.timezone else ""
        text = f"It is {now:%A, %d %B %Y, %H:%M:%S}{where} ({now.tzname()}, {offset})."
        return self.result(data, text)
