"""Tools concern of localroute: the registry and the built-in read-only tools.

Stage 1 answers some requests with a tool alone (TOOL_ONLY_EXECUTION): it picks the tool, fills
its arguments with `arguments_from_query`, and replies with `ToolResult.text`. In the model tool
loop the same registry offers `openai_schemas(mode)` and runs calls through `invoke`, which never
raises.
"""

from localroute.tools.arguments import arguments_from_query
from localroute.tools.base import (
    GOVERNANCE_MODES,
    SideEffect,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
)
from localroute.tools.registry import (
    ToolRegistry,
    UnknownToolError,
    builtin_tools,
    default_registry,
)

__all__ = [
    "GOVERNANCE_MODES",
    "SideEffect",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "UnknownToolError",
    "arguments_from_query",
    "builtin_tools",
    "default_registry",
]
